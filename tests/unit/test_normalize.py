"""Clock-skew correction, identity rules and limits of the track/identify bodies."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from mysoulmate.analytics.client_models import TrackRequest
from mysoulmate.analytics.normalize import corrected_timestamp, effective_user_id, queued_message
from mysoulmate.core.errors import ForbiddenError, InvalidRequestError
from mysoulmate.core.principal import Principal
from pydantic import ValidationError

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
USER = Principal(subject="alice", roles=frozenset({"user"}))
ADMIN = Principal(subject="ops", roles=frozenset({"user", "admin"}))
SERVER = Principal(subject="backend", roles=frozenset({"server"}))


def test_skew_correction_uses_the_gap_between_timestamp_and_sent_at() -> None:
    # Client clock 2 h fast: event at its 14:00, sent at its 14:05, received at our 12:00.
    ts = datetime(2026, 3, 1, 14, 0, tzinfo=UTC)
    sent = datetime(2026, 3, 1, 14, 5, tzinfo=UTC)
    assert corrected_timestamp(ts, sent, NOW) == NOW - timedelta(minutes=5)


def test_missing_timestamp_means_received_time_and_missing_sent_at_keeps_timestamp() -> None:
    ts = datetime(2026, 2, 1, tzinfo=UTC)
    assert corrected_timestamp(None, None, NOW) == NOW
    assert corrected_timestamp(ts, None, NOW) == ts


def test_event_more_than_an_hour_in_the_future_is_rejected_after_correction() -> None:
    future = (NOW + timedelta(hours=2)).isoformat()
    with pytest.raises(InvalidRequestError) as info:
        queued_message(TrackRequest(event="x", timestamp=future), USER, NOW, "r", 3600)
    assert info.value.code == "timestamp_in_future"
    # The same skewed clock is fine once sentAt reveals the skew.
    sent = (NOW + timedelta(hours=2, seconds=1)).isoformat()
    message = queued_message(
        TrackRequest(event="x", timestamp=future, sentAt=sent), USER, NOW, "r", 3600
    )
    assert message.timestamp == NOW - timedelta(seconds=1)


def test_user_id_in_body_needs_admin_or_server_token() -> None:
    assert effective_user_id(None, USER) == "alice"
    assert effective_user_id("alice", USER) == "alice"
    with pytest.raises(ForbiddenError) as info:
        effective_user_id("bob", USER)
    assert info.value.code == "user_id_mismatch"
    assert effective_user_id("bob", ADMIN) == "bob"
    assert effective_user_id("bob", SERVER) == "bob"


def test_generated_message_ids_are_unique_and_given_ones_kept() -> None:
    first = queued_message(TrackRequest(event="x"), USER, NOW, "r", 3600)
    second = queued_message(TrackRequest(event="x"), USER, NOW, "r", 3600)
    assert first.messageId != second.messageId
    given = queued_message(TrackRequest(event="x", messageId="m-1"), USER, NOW, "r", 3600)
    assert given.messageId == "m-1"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "event"),
        ({"event": ""}, "event"),
        ({"event": "x" * 256}, "event"),
        ({"event": 5}, "event"),
        ({"event": "x", "properties": []}, "properties"),
        ({"event": "x", "properties": {f"k{i}": i for i in range(256)}}, "properties"),
        ({"event": "x", "properties": {"blob": "a" * (32 * 1024)}}, "properties"),
        ({"event": "x", "messageId": "m" * 101}, "messageId"),
        ({"event": "x", "timestamp": "yesterday"}, "timestamp"),
        ({"event": "x", "timestamp": 1700000000}, "timestamp"),
        ({"event": "x", "platform": "web app!"}, "platform"),
        ({"event": "x", "surprise": 1}, "surprise"),
    ],
)
def test_invalid_track_bodies_name_the_field(body: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        TrackRequest.model_validate(body)
    assert field in {str(err["loc"][0]) for err in info.value.errors()}


def test_limits_are_inclusive() -> None:
    props = {f"k{i}": i for i in range(255)}
    assert len(TrackRequest(event="e" * 255, properties=props).properties) == 255
    naive = TrackRequest(event="x", timestamp="2026-03-01T10:00:00")
    assert naive.timestamp == datetime(2026, 3, 1, 10, tzinfo=UTC)
