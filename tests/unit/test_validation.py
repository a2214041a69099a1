"""What a message may hold: one set of rules for the API and the consumer."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from mysoulmate.analytics.client_models import IdentifyRequest, TrackRequest
from mysoulmate.analytics.models import QueuedMessage
from mysoulmate.analytics.normalize import queued_message
from mysoulmate.analytics.validation import MAX_NESTING, Problem, check_json
from mysoulmate.core.errors import InvalidRequestError
from mysoulmate.core.json_nesting import MAX_BODY_NESTING, NestingScanner, NestingTooDeepError
from mysoulmate.core.principal import Principal
from pydantic import ValidationError

NOW = datetime(2026, 1, 31, 12, tzinfo=UTC)
ALICE = Principal(subject="alice", roles=frozenset())


def nested(depth: int) -> dict[str, object]:
    value: dict[str, object] = {"leaf": 1}
    for _ in range(depth - 1):
        value = {"n": value}
    return value


def error_types(model: type, body: dict[str, object]) -> list[str]:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(body)  # type: ignore[attr-defined]
    return [error["type"] for error in caught.value.errors()]


def test_nesting_up_to_the_limit_is_accepted_and_one_more_is_not() -> None:
    TrackRequest.model_validate({"event": "x", "properties": nested(MAX_NESTING)})
    assert error_types(TrackRequest, {"event": "x", "properties": nested(MAX_NESTING + 1)}) == [
        "nesting_too_deep"
    ]


def test_a_thousand_levels_are_refused_without_recursion() -> None:
    deep: object = 1
    for _ in range(5000):
        deep = [deep]
    with pytest.raises(Problem) as caught:
        check_json({"a": deep})
    assert caught.value.kind == "nesting_too_deep"


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        ({"event": "sign\x00up"}, "nul_character"),
        ({"event": "x", "properties": {"k": "a\x00b"}}, "nul_character"),
        ({"event": "x", "properties": {"k\x00": 1}}, "nul_character"),
        ({"event": "x", "properties": {"k": "\ud800"}}, "lone_surrogate"),
        ({"event": "x", "context": {"k": ["\udfff"]}}, "lone_surrogate"),
        ({"event": "x", "anonymousId": "a\x00"}, "nul_character"),
        ({"event": "line\nbreak"}, "control_character"),
        ({"event": "x", "properties": {"n": float("nan")}}, "number_not_finite"),
        ({"event": "x", "properties": {"n": float("inf")}}, "number_not_finite"),
        ({"event": "x", "properties": {"revenue": 1e13}}, "revenue_out_of_range"),
        ({"event": "x", "timestamp": "0001-01-01T00:00:00+14:00"}, "timestamp_out_of_range"),
    ],
)
def test_what_no_backend_can_store_is_refused(body: dict[str, object], kind: str) -> None:
    assert kind in error_types(TrackRequest, body)


def test_traits_follow_the_same_rules() -> None:
    assert error_types(IdentifyRequest, {"traits": {"email": "a\x00"}}) == ["nul_character"]


def test_unicode_that_every_backend_stores_is_accepted() -> None:
    request = TrackRequest.model_validate(
        {
            "event": "曲を再生",
            "properties": {"emoji": "💜", "rtl": "שלום", "big": 10**45, "tiny": 2e-161},
        }
    )
    assert request.properties["emoji"] == "💜"


def test_the_consumer_refuses_what_the_api_refuses() -> None:
    body = json.dumps(
        {
            "type": "track",
            "messageId": "m1",
            "userId": "alice",
            "event": "x",
            "timestamp": "2026-01-31T12:00:00Z",
            "receivedAt": "2026-01-31T12:00:00Z",
            "properties": {"k": "a\u0000b"},
        }
    )
    with pytest.raises(ValidationError) as caught:
        QueuedMessage.model_validate_json(body)
    assert caught.value.errors()[0]["type"] == "nul_character"


@pytest.mark.parametrize(
    ("timestamp", "sent_at", "code"),
    [
        ("1999-12-31T23:59:59Z", None, "timestamp_too_old"),
        ("0999-01-01T00:00:00Z", None, "timestamp_too_old"),
        ((NOW + timedelta(hours=2)).isoformat(), None, "timestamp_in_future"),
        # A skew so large that correcting it leaves the calendar.
        ("0001-01-02T00:00:00Z", "9999-12-30T00:00:00Z", "timestamp_out_of_range"),
    ],
)
def test_event_times_outside_the_window_are_refused(
    timestamp: str, sent_at: str | None, code: str
) -> None:
    request = TrackRequest.model_validate(
        {"event": "x", "timestamp": timestamp, **({"sentAt": sent_at} if sent_at else {})}
    )
    with pytest.raises(InvalidRequestError) as caught:
        queued_message(request, ALICE, NOW, "req", 3600)
    assert caught.value.code == code


def test_a_device_clock_stuck_in_1970_is_corrected_into_the_window() -> None:
    request = TrackRequest.model_validate(
        {"event": "x", "timestamp": "1970-01-01T00:00:00Z", "sentAt": "1970-01-01T00:00:05Z"}
    )
    message = queued_message(request, ALICE, NOW, "req", 3600)
    assert message.timestamp == NOW - timedelta(seconds=5)


def feed(text: str, chunk: int, say_last: bool) -> None:
    """``text`` in chunks; ``say_last``: the last chunk is fed as such (a request body's
    final message), which may skip the scan when it cannot pass the limit."""
    scanner = NestingScanner()
    data = text.encode()
    for start in range(0, len(data), chunk):
        scanner.feed(data[start : start + chunk], last=say_last and start + chunk >= len(data))


@pytest.mark.parametrize("say_last", [False, True])
@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 1000])
def test_the_body_scanner_counts_structure_not_string_content(chunk: int, say_last: bool) -> None:
    feed(json.dumps({"text": "[" * 500 + '\\"{' * 100, "k\\": ["\\\\"]}), chunk, say_last)
    feed("[" * MAX_BODY_NESTING + "]" * MAX_BODY_NESTING, chunk, say_last)
    with pytest.raises(NestingTooDeepError):
        feed("[" * (MAX_BODY_NESTING + 1), chunk, say_last)
    with pytest.raises(NestingTooDeepError):
        feed(json.dumps({"a": "\\"}) + "[" * (MAX_BODY_NESTING + 1), chunk, say_last)
    with pytest.raises(NestingTooDeepError):  # deep at the end of a long body
        feed(
            '{"pad": "' + "x" * 3000 + '", "a": ' + "[" * MAX_BODY_NESTING + "]" * 64 + "}",
            chunk,
            say_last,
        )
