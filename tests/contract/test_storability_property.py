"""Accepted means storable: whatever the API accepts, every backend stores and reads back.

Hypothesis generates hostile requests (NUL, lone surrogates, control characters, deep
nesting, huge and non-finite numbers, timestamps from year 1 to 9999 with any skew); each
one the API's own validation accepts must be written by the store (SQLite, PostgreSQL,
DynamoDB on moto) and read back with the same properties.
"""

from __future__ import annotations

import itertools
import os
from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mysoulmate.analytics.client_models import TrackRequest
from mysoulmate.analytics.normalize import queued_message
from mysoulmate.analytics.ports import EventStore
from mysoulmate.core.errors import ApiError
from mysoulmate.core.principal import Principal
from pydantic import ValidationError

NOW = datetime(2026, 1, 31, 12, tzinfo=UTC)
CALLER = Principal(subject="prop-user", roles=frozenset())
_ids = itertools.count()

# Every code point, the surrogates and NUL included: what a JSON client can send.
hostile_text = st.text(
    alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF, categories=None), max_size=20
)
# Half the time a name the API accepts, so most examples reach the stores.
event_names = st.one_of(
    hostile_text,
    st.text(alphabet=st.characters(exclude_categories=("Cs", "Cc")), min_size=1, max_size=20),
)
numbers = st.one_of(
    st.integers(min_value=-(10**45), max_value=10**45),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
)
json_values = st.recursive(
    st.one_of(hostile_text, numbers),
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(hostile_text, children, max_size=3)
    ),
    max_leaves=40,
)


def deep(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"n": value}
    return value


properties = st.one_of(
    st.dictionaries(hostile_text, json_values, max_size=5),
    st.integers(min_value=28, max_value=40).map(lambda d: {"deep": deep(d)}),
)
timestamps = st.one_of(
    st.none(),
    st.datetimes(
        min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
    ).map(lambda moment: moment.isoformat()),
)


def accepted(body: dict[str, Any]) -> Any:
    """The queued message the API would build, or None where it answers 4xx."""
    try:
        request = TrackRequest.model_validate(body)
        return queued_message(request, CALLER, NOW, "prop", 3600)
    except (ValidationError, ApiError):
        return None


def same(a: Any, b: Any) -> bool:
    """Equal as JSON values: a backend may read a float back as the integer its shortest
    decimal spells (1.0 as 1, 1.074308995519837e+17 as 107430899551983700), the same double."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, int | float) and isinstance(b, int | float) and float(a) == float(b)
    if isinstance(a, int) and isinstance(b, int):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


@settings(
    max_examples=150,
    deadline=None,
    # CI replays the same examples every run; locally each run explores new ones.
    derandomize=os.environ.get("CI") == "true",
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    event=event_names,
    props=properties,
    context=st.dictionaries(hostile_text, json_values, max_size=3),
    anonymous=st.one_of(st.none(), hostile_text),
    timestamp=timestamps,
    sent_at=timestamps,
)
def test_accepted_by_the_api_means_stored_by_every_backend(
    store: EventStore,
    event: str,
    props: dict[str, Any],
    context: dict[str, Any],
    anonymous: str | None,
    timestamp: str | None,
    sent_at: str | None,
) -> None:
    body: dict[str, Any] = {"event": event, "properties": props, "context": context}
    for name, value in (("anonymousId", anonymous), ("timestamp", timestamp), ("sentAt", sent_at)):
        if value is not None:
            body[name] = value
    message = accepted(body)
    if message is None:
        return
    message = message.model_copy(update={"messageId": f"prop-{next(_ids)}"})
    result = store.insert_events([message])
    assert not result.failed, result.failed
    assert result.written == 1
    at = message.timestamp
    page = store.list_events("prop-user", 100, None, start=at, end=at, event=message.event)
    stored = next(e for e in page.events if e.messageId == message.messageId)
    assert stored.timestamp == message.timestamp
    assert same(stored.properties, message.properties)
