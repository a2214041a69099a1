"""Identify merging: event-time ordering, set-once traits, redelivery safety."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from mysoulmate.analytics.models import QueuedMessage
from mysoulmate.analytics.profiles import merge_identify

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def identify(
    at: datetime,
    traits: dict[str, object],
    once: dict[str, object] | None = None,
    anon: str | None = None,
) -> QueuedMessage:
    return QueuedMessage(
        type="identify",
        messageId=f"m-{at.timestamp()}",
        userId="u1",
        traits=traits,
        traitsOnce=once or {},
        anonymousId=anon,
        timestamp=at,
        receivedAt=at,
    )


def test_later_values_win_by_event_time_not_arrival() -> None:
    newer = identify(T0 + timedelta(hours=1), {"plan": "pro"})
    older = identify(T0, {"plan": "free", "name": "Ann"})
    profile = merge_identify(merge_identify(None, newer), older)
    assert profile.traits == {"plan": "pro", "name": "Ann"}


def test_set_once_traits_only_fill_gaps() -> None:
    first = identify(T0, {}, once={"firstPlatform": "ios"})
    second = identify(T0 + timedelta(days=1), {}, once={"firstPlatform": "web", "ref": "ad"})
    profile = merge_identify(merge_identify(None, first), second)
    assert profile.traits == {"firstPlatform": "ios", "ref": "ad"}


def test_applying_the_same_identify_twice_changes_nothing() -> None:
    message = identify(T0, {"a": 1}, anon="anon-1")
    once = merge_identify(None, message)
    twice = merge_identify(once, message)
    assert twice.traits == once.traits
    assert twice.anonymousIds == ["anon-1"]
    assert twice.updatedAt == once.updatedAt
