"""The GA4 mapping: the one name rule, values, identity, sessions, event shapes, and the
requests a chunk becomes, each within every documented Measurement Protocol limit."""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mysoulmate.analytics.models import ANONYMOUS_PREFIX, QueuedMessage
from mysoulmate.providers.ga4_mapping import (
    Kind,
    client_id_for,
    clip,
    event_for,
    ga4_name,
    ga4_session_id,
    is_reserved,
    param_value,
    plan_requests,
    user_id_for,
    utf16_length,
)

NOW = datetime(2026, 1, 31, 12, tzinfo=UTC)
EARLIER = NOW - timedelta(hours=1)
NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
_ids = itertools.count(1)


def message(
    type_: str = "track",
    user: str = "u1",
    *,
    event: str | None = "Clicked",
    at: datetime = EARLIER,
    anonymous_id: str | None = None,
    session: str | None = "s_abc",
    name: str | None = None,
    context: dict[str, Any] | None = None,
    traits: dict[str, Any] | None = None,
    props: dict[str, Any] | None = None,
    **properties: Any,
) -> QueuedMessage:
    return QueuedMessage.model_validate(
        {
            "type": type_,
            "messageId": f"m-{next(_ids):06d}",
            "userId": user,
            "anonymousId": anonymous_id,
            "event": event if type_ == "track" else None,
            "name": name,
            "timestamp": at,
            "receivedAt": at,
            "sessionId": session,
            "properties": {**(props or {}), **properties},
            "traits": traits or {},
            "context": context or {},
        }
    )


def visitor(anonymous_id: str, **kwargs: Any) -> QueuedMessage:
    return message(user=ANONYMOUS_PREFIX + anonymous_id, anonymous_id=anonymous_id, **kwargs)


def bodies(messages: list[QueuedMessage]) -> list[dict[str, Any]]:
    return [json.loads(r.body) for r in plan_requests(messages, NOW).requests]


# ----------------------------------------------------------------------------- limits


def assert_valid_request(body: dict[str, Any], raw: bytes) -> None:
    """Every documented limit of one Measurement Protocol request."""
    assert len(raw) < 130_000  # "smaller than 130kB", whichever kB is meant
    assert isinstance(body["client_id"], str)
    assert body["client_id"]
    assert not str(body.get("user_id", "")).startswith(ANONYMOUS_PREFIX)
    assert 1 <= len(body["events"]) <= 25
    properties = body.get("user_properties", {})
    assert len(properties) <= 25
    for name, entry in properties.items():
        assert NAME.match(name)
        assert len(name) <= 24
        assert not is_reserved(name, "user_property")
        value = entry["value"]
        assert isinstance(value, int | float) or utf16_length(value) <= 36
    for event in body["events"]:
        assert NAME.match(event["name"])
        assert len(event["name"]) <= 40
        own_views = event["name"] in ("page_view", "screen_view")
        assert own_views or not is_reserved(event["name"], "event")
        params = event["params"]
        assert len(params) <= 25
        assert params["engagement_time_msec"] == 1
        for name, value in params.items():
            assert NAME.match(name)
            assert len(name) <= 40
            if name not in ("session_id", "engagement_time_msec"):
                assert not is_reserved(name, "param"), name
            assert isinstance(value, str | int | float)
            assert not isinstance(value, bool)
            assert isinstance(value, int | float) or utf16_length(value) <= 100
        assert isinstance(event["timestamp_micros"], int)
        assert event["timestamp_micros"] <= int(NOW.timestamp()) * 1_000_000


# ----------------------------------------------------------------------------- the name rule


@pytest.mark.parametrize(
    ("raw", "kind", "expected"),
    [
        ("signup", "event", "signup"),
        ("Order Completed", "event", "order_completed"),
        ("  Sign-Up!! (v2) ", "event", "sign_up_v2"),
        ("checkout.step/3", "param", "checkout_step_3"),
        ("123abc", "event", "abc"),
        ("__private", "param", "private"),
        ("café crème", "event", "caf_cr_me"),
        ("session_start", "event", "x_session_start"),
        ("page_view", "event", "x_page_view"),
        ("Firebase Thing", "event", "x_firebase_thing"),
        ("ga_source", "param", "x_ga_source"),
        ("google_id", "user_property", "x_google_id"),
        ("session_id", "param", "x_session_id"),
        ("session_id", "event", "session_id"),
        ("User ID", "user_property", "x_user_id"),
        ("query_id_x", "event", "x_query_id_x"),
        ("a" * 50, "event", "a" * 40),
        ("b" * 30, "user_property", "b" * 24),
        # truncation to 24 lands on a reserved name: prefixed, then truncated again
        ("first_open_after_install_time", "user_property", "x_first_open_after_insta"),
        ("x" * 39 + " tail", "event", "x" * 39),  # no trailing underscore after a cut
    ],
)
def test_the_name_rule(raw: str, kind: Kind, expected: str) -> None:
    assert ga4_name(raw, kind) == expected


def test_names_with_no_usable_character_get_a_stable_hash_name() -> None:
    japanese, chinese = ga4_name("日本語"), ga4_name("中文")
    assert japanese == "x_" + hashlib.sha256("日本語".encode()).hexdigest()[:8]
    assert chinese != japanese
    assert ga4_name("日本語") == japanese
    assert NAME.match(ga4_name("1234"))
    assert NAME.match(ga4_name("___"))


@given(raw=st.text(), kind=st.sampled_from(["event", "param", "user_property"]))
def test_every_name_the_rule_makes_is_valid_and_the_rule_is_idempotent(
    raw: str, kind: Kind
) -> None:
    name = ga4_name(raw, kind)
    assert NAME.match(name)
    assert len(name) <= (24 if kind == "user_property" else 40)
    assert not is_reserved(name, kind)
    assert ga4_name(name, kind) == name


# ----------------------------------------------------------------------------- values


def test_lengths_count_utf16_units_and_clipping_never_splits_a_character() -> None:
    assert utf16_length("a😀") == 3
    assert clip("😀" * 60, 100) == "😀" * 50
    assert clip("a" + "😀" * 60, 100) == "a" + "😀" * 49
    assert clip("short", 100) == "short"


def test_param_values() -> None:
    assert param_value(None) is None
    assert param_value(True) == "true"
    assert param_value(False) == "false"
    assert param_value(42) == 42
    assert param_value(-1.5) == -1.5
    assert param_value(2**60) == str(2**60)
    assert param_value("x" * 150) == "x" * 100
    assert param_value({"b": [1, 2]}) == '{"b":[1,2]}'
    long_list = param_value(list(range(100)))
    assert isinstance(long_list, str)
    assert len(long_list) == 100
    assert long_list.startswith("[0,1,")
    assert param_value("y" * 50, 36) == "y" * 36


# ----------------------------------------------------------------------------- identity


def test_client_id_and_user_id() -> None:
    anonymous = visitor("dev-1")
    assert client_id_for(anonymous) == "dev-1"
    assert user_id_for(anonymous) is None
    with_device = message(user="alice", anonymous_id="dev-2")
    assert client_id_for(with_device) == "dev-2"
    assert user_id_for(with_device) == "alice"
    known = message(user="alice")
    client_id = client_id_for(known)
    assert client_id == "u." + hashlib.sha256(b"alice").hexdigest()[:32]
    assert client_id == client_id_for(message(user="alice"))
    assert "alice" not in client_id


def test_session_ids_become_stable_numbers() -> None:
    assert ga4_session_id("1712345678") == 1712345678
    hashed = ga4_session_id("s_01HXYZ")
    assert hashed == ga4_session_id("s_01HXYZ") != ga4_session_id("s_01HXY0")
    assert 0 < hashed < 10**10
    assert 0 < ga4_session_id("0") < 10**10
    assert ga4_session_id("1" * 16) < 10**10  # beyond 15 digits: hashed, not sent as is


# ----------------------------------------------------------------------------- events


def test_a_track_event() -> None:
    event = event_for(message(event="Song Played", song="Hey", volume=7, muted=False), NOW)
    assert event == {
        "name": "song_played",
        "params": {
            "engagement_time_msec": 1,
            "session_id": ga4_session_id("s_abc"),
            "song": "Hey",
            "volume": 7,
            "muted": "false",
        },
        "timestamp_micros": int(EARLIER.timestamp() * 1_000_000),
    }


def test_params_are_capped_at_25_and_colliding_names_keep_the_first() -> None:
    props = {f"p{i}": i for i in range(40)}
    event = event_for(message(props=props), NOW)
    assert len(event["params"]) == 25
    assert list(event["params"])[:2] == ["engagement_time_msec", "session_id"]
    collided = event_for(message(props={"Plan Type": "gold", "plan_type": "silver"}), NOW)
    assert collided["params"]["plan_type"] == "gold"
    reserved = event_for(message(session_id="mine", gclid="g"), NOW)
    assert reserved["params"]["x_session_id"] == "mine"
    assert reserved["params"]["x_gclid"] == "g"
    assert reserved["params"]["session_id"] == ga4_session_id("s_abc")


def test_an_event_without_a_session_has_no_session_id() -> None:
    assert "session_id" not in event_for(message(session=None), NOW)["params"]


def test_a_page_view() -> None:
    page = message(
        "page", name="Home", url="https://ex.com/?q=1", referrer="https://google.com", path="/"
    )
    event = event_for(page, NOW)
    assert event["name"] == "page_view"
    params = event["params"]
    assert params["page_title"] == "Home"
    assert params["page_location"] == "https://ex.com/?q=1"
    assert params["page_referrer"] == "https://google.com"
    assert "url" not in params
    assert "path" not in params
    assert "referrer" not in params
    titled = event_for(message("page", name="Home", title="Welcome!", path="/welcome"), NOW)
    assert titled["params"]["page_title"] == "Welcome!"
    assert titled["params"]["page_location"] == "/welcome"
    from_context = event_for(message("page", context={"page": {"url": "https://ex.com/a"}}), NOW)
    assert from_context["params"]["page_location"] == "https://ex.com/a"


def test_a_screen_view() -> None:
    event = event_for(message("screen", name="Settings", tab="audio"), NOW)
    assert event["name"] == "screen_view"
    assert event["params"]["screen_name"] == "Settings"
    assert event["params"]["tab"] == "audio"


@pytest.mark.parametrize("name", ["purchase", "Order Completed", "order completed"])
def test_a_purchase(name: str) -> None:
    order = message(event=name, revenue=19.9, currency="eur", order_id="o-1", coupon="X")
    event = event_for(order, NOW)
    assert event["name"] == "purchase"
    params = event["params"]
    assert params["value"] == 19.9
    assert params["currency"] == "EUR"
    assert params["transaction_id"] == "o-1"
    assert params["coupon"] == "X"
    assert "revenue" not in params
    assert "order_id" not in params


def test_purchase_defaults_and_any_event_with_a_numeric_revenue() -> None:
    bare = message(event="Gift Sent", revenue=0)
    event = event_for(bare, NOW)
    assert event["name"] == "purchase"
    assert event["params"]["value"] == 0
    assert event["params"]["currency"] == "USD"
    assert event["params"]["transaction_id"] == bare.messageId
    assert event_for(message(event="Gift Sent", revenue="5"), NOW)["name"] == "gift_sent"
    assert event_for(message(event="Gift Sent", revenue=True), NOW)["name"] == "gift_sent"
    no_value = event_for(message(event="purchase", currency="usdollars"), NOW)
    assert "value" not in no_value["params"]
    assert no_value["params"]["currency"] == "USD"
    totalled = event_for(message(event="Order Completed", total=30, orderId=7), NOW)
    assert totalled["params"]["value"] == 30
    assert totalled["params"]["transaction_id"] == "7"


# ----------------------------------------------------------------------------- requests


def test_unsupported_old_and_future_messages() -> None:
    plan = plan_requests(
        [
            message("group"),
            message("alias"),
            message(at=NOW - timedelta(hours=73)),
            message(at=NOW - timedelta(hours=71)),
            message(at=NOW + timedelta(minutes=5)),
        ],
        NOW,
    )
    assert plan.skipped == Counter({"unsupported": 2, "too_old": 1})
    (request,) = plan.requests
    events = json.loads(request.body)["events"]
    assert len(events) == 2
    assert len(request.keys) == 2
    assert events[1]["timestamp_micros"] == int(NOW.timestamp()) * 1_000_000  # clamped


def test_requests_are_per_person_and_device() -> None:
    plan = plan_requests(
        [message(user="a"), visitor("v1"), message(user="a"), message(user="a", anonymous_id="d")],
        NOW,
    )
    sent = [json.loads(r.body) for r in plan.requests]
    assert [len(b["events"]) for b in sent] == [2, 1, 1]
    assert sent[0]["user_id"] == "a"
    assert sent[0]["client_id"].startswith("u.")
    assert "user_id" not in sent[1]
    assert sent[1]["client_id"] == "v1"
    assert sent[2] == {**sent[2], "client_id": "d", "user_id": "a"}


def test_60_events_make_3_requests() -> None:
    plan = plan_requests([message() for _ in range(60)], NOW)
    assert [len(json.loads(r.body)["events"]) for r in plan.requests] == [25, 25, 10]
    assert sum(len(r.keys) for r in plan.requests) == 60


def test_large_events_are_split_under_the_body_limit() -> None:
    heavy = {f"p{i}": "€" * 100 for i in range(23)}  # ~7.4 kB of UTF-8 per event
    plan = plan_requests([message(props=heavy) for _ in range(25)], NOW)
    assert len(plan.requests) == 2
    for request in plan.requests:
        assert_valid_request(json.loads(request.body), request.body)
    assert sum(len(r.keys) for r in plan.requests) == 25


def test_identify_traits_ride_with_the_persons_events() -> None:
    first = message("identify", traits={"Plan": "gold", "age": 30, "bio": "z" * 80}, at=EARLIER)
    later = message("identify", traits={"plan": "platinum"}, at=EARLIER + timedelta(minutes=1))
    events = [message() for _ in range(30)]
    plan = plan_requests([*events, later, first], NOW)
    one, two = (json.loads(r.body) for r in plan.requests)
    assert one["user_properties"] == two["user_properties"]
    assert one["user_properties"]["plan"] == {
        "value": "platinum",
        "timestamp_micros": int(later.timestamp.timestamp() * 1_000_000),
    }
    assert one["user_properties"]["age"]["value"] == 30
    assert one["user_properties"]["bio"]["value"] == "z" * 36
    # the identifies count once, with the person's first request
    assert set(plan.requests[0].keys) >= {first.key, later.key}
    assert len(plan.requests[0].keys) == 27
    assert len(plan.requests[1].keys) == 5


def test_identify_without_an_event_or_usable_traits_is_skipped() -> None:
    lonely = message("identify", user="nobody", traits={"plan": "gold"})
    empty = message("identify", user="u1", traits={"gone": None})
    plan = plan_requests([lonely, empty, message(user="u1")], NOW)
    assert plan.skipped == Counter({"no_event": 1, "no_traits": 1})
    assert "user_properties" not in json.loads(plan.requests[0].body)


def test_user_properties_are_capped() -> None:
    traits = {f"Trait number {i} with a long name": "v" * 50 for i in range(30)}
    (body,) = bodies([message("identify", traits=traits), message()])
    assert len(body["user_properties"]) == 25
    assert_valid_request(body, json.dumps(body).encode())


# ----------------------------------------------------------------------------- any input

# Any text a message may hold: no NUL, no lone surrogate (not encodable in UTF-8).
text = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"))
# Long values in the costliest encodings: escaped controls (6 bytes), astral characters.
long_text = st.text(alphabet=st.sampled_from('a€\x01"😀'), min_size=90, max_size=130)
identifiers = st.text(
    alphabet=st.characters(exclude_categories=("Cs", "Cc")), min_size=1, max_size=60
)
names = st.one_of(
    text,
    st.sampled_from(["session_id", "gclid", "user_id", "ga_x", "_y", "firebase_z", "revenue"]),
)
scalars = st.one_of(
    text,
    long_text,
    st.booleans(),
    st.none(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(text, children, max_size=3)
    ),
    max_leaves=6,
)
objects = st.one_of(
    st.dictionaries(names, json_values, max_size=5),
    # more keys than GA4 takes, with distinct GA4 names
    st.tuples(long_text, st.integers(min_value=26, max_value=30)).map(
        lambda drawn: {f"key {i}": drawn[0] for i in range(drawn[1])}
    ),
)
kinds = st.sampled_from(["track", "track", "page", "screen", "identify", "group", "alias"])


@st.composite
def messages(draw: st.DrawFn) -> QueuedMessage:
    kind = draw(kinds)
    person = draw(st.sampled_from(["alice", "bob", "anon:v1"]))
    return message(
        kind,
        person,
        event=draw(st.one_of(st.sampled_from(["purchase", "Order Completed"]), identifiers)),
        at=NOW - draw(st.timedeltas(min_value=timedelta(0), max_value=timedelta(hours=80))),
        anonymous_id=person.removeprefix("anon:") if person.startswith("anon:") else None,
        session=draw(st.one_of(st.none(), identifiers)),
        name=draw(st.one_of(st.none(), text)),
        traits=draw(objects),
        props=draw(objects),
    )


@st.composite
def chunks(draw: st.DrawFn) -> list[QueuedMessage]:
    """A few arbitrary messages, and many copies of one (as a busy person sends them)."""
    chunk = draw(st.lists(messages(), max_size=8))
    template, copies = draw(messages()), draw(st.integers(min_value=0, max_value=60))
    return chunk + [template.model_copy(update={"messageId": f"c-{i}"}) for i in range(copies)]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chunk=chunks())
def test_every_request_respects_every_limit_and_every_message_is_accounted_for(
    chunk: list[QueuedMessage],
) -> None:
    plan = plan_requests(chunk, NOW)
    delivered: list[tuple[str, str]] = []
    for request in plan.requests:
        assert_valid_request(json.loads(request.body), request.body)
        delivered.extend(request.keys)
    assert len(delivered) == len(set(delivered))
    assert len(delivered) + sum(plan.skipped.values()) == len(chunk)
    assert set(plan.skipped) <= {"unsupported", "too_old", "no_event", "no_traits"}
