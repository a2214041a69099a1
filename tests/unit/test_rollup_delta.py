"""What one batch of new events adds to the daily rollups: counts, exact revenue, user sets
and first-seen days. No storage involved."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest
from mysoulmate.analytics.models import QueuedMessage
from mysoulmate.analytics.ports import ANY_EVENT
from mysoulmate.analytics.rollups import (
    SESSION_EVENTS,
    copies_delta,
    platform_of,
    revenue_of,
    rollup_delta,
)

from tests.support.messages import identify, jan, track

JAN_1, JAN_2, JAN_3 = date(2026, 1, 1), date(2026, 1, 2), date(2026, 1, 3)


def test_counts_are_per_utc_day_platform_and_event() -> None:
    delta = rollup_delta(
        [
            track("alice", "play", jan(1, 0, 0, 0)),
            track("alice", "play", jan(1, 23, 59, 59)),
            track("alice", "pause", jan(1, 10)),
            track("bob", "play", jan(1, 10), platform="ios"),
            track("dave", "play", jan(1, 10), platform=None),
            track("alice", "play", jan(2, 0, 0, 0)),
        ]
    )
    assert dict(delta.counts) == {
        (JAN_1, "web", "play"): 2,
        (JAN_1, "web", "pause"): 1,
        (JAN_1, "ios", "play"): 1,
        (JAN_1, "unknown", "play"): 1,
        (JAN_2, "web", "play"): 1,
    }


def test_the_day_is_the_utc_day_of_the_event_time() -> None:
    # 23:30 at UTC-2 on Jan 1 is 01:30 UTC on Jan 2.
    late_evening = QueuedMessage.model_validate(
        {
            "type": "track",
            "messageId": "m-tz",
            "userId": "alice",
            "event": "play",
            "timestamp": "2026-01-01T23:30:00-02:00",
            "receivedAt": "2026-01-02T01:30:01Z",
            "platform": "web",
        }
    )
    delta = rollup_delta([late_evening])
    assert dict(delta.counts) == {(JAN_2, "web", "play"): 1}
    assert delta.first_seen == {"alice": JAN_2}


def test_user_sets_per_event_and_for_any_event() -> None:
    delta = rollup_delta(
        [
            track("alice", "play", jan(1)),
            track("alice", "pause", jan(1)),
            track("bob", "play", jan(1, 13)),
            track("bob", "play", jan(1, 14)),
            track("carol", "play", jan(1), platform="ios"),
        ]
    )
    assert dict(delta.users) == {
        (JAN_1, "web", "play"): {"alice", "bob"},
        (JAN_1, "web", "pause"): {"alice"},
        (JAN_1, "web", ANY_EVENT): {"alice", "bob"},
        (JAN_1, "ios", "play"): {"carol"},
        (JAN_1, "ios", ANY_EVENT): {"carol"},
    }


def test_first_seen_is_the_earliest_day_whatever_the_order_in_the_batch() -> None:
    delta = rollup_delta(
        [
            track("alice", "play", jan(3)),
            track("alice", "play", jan(1)),
            track("alice", "play", jan(2)),
            track("bob", "play", jan(2)),
        ]
    )
    assert delta.first_seen == {"alice": JAN_1, "bob": JAN_2}


def test_identifies_and_nameless_tracks_add_nothing() -> None:
    nameless = QueuedMessage(
        type="track", messageId="m-x", userId="eve", timestamp=jan(1), receivedAt=jan(1)
    )
    delta = rollup_delta([identify("eve", jan(1), plan="pro", revenue=5), nameless])
    assert not delta
    assert (dict(delta.counts), dict(delta.revenue), dict(delta.users), delta.first_seen) == (
        {},
        {},
        {},
        {},
    )
    # Mixed with a track, only the track counts.
    mixed = rollup_delta([identify("eve", jan(1), plan="pro"), track("eve", "play", jan(1))])
    assert dict(mixed.counts) == {(JAN_1, "web", "play"): 1}


def test_revenue_is_summed_exactly_per_day_platform_and_currency() -> None:
    delta = rollup_delta(
        [
            # 0.1 + 0.2 is 0.30000000000000004 in floating point; the rollup is exact.
            track("alice", "purchase", jan(1), revenue=0.1),
            track("alice", "purchase", jan(1, 13), revenue=0.2),
            track("bob", "purchase", jan(1), revenue=9.99, currency="eur"),
            track("bob", "purchase", jan(1), platform="ios", revenue=19.99, currency="EUR"),
            track("carol", "purchase", jan(2), revenue=5),
            track("carol", "purchase", jan(2), revenue="5.00"),  # text: no revenue
            track("carol", "play", jan(2)),
        ]
    )
    assert dict(delta.revenue) == {
        (JAN_1, "web", "USD"): 300_000,
        (JAN_1, "web", "EUR"): 9_990_000,
        (JAN_1, "ios", "EUR"): 19_990_000,
        (JAN_2, "web", "USD"): 5_000_000,
    }
    # A purchase without usable revenue is still an event.
    assert delta.counts[(JAN_2, "web", "purchase")] == 2


@pytest.mark.parametrize(
    ("properties", "expected"),
    [
        ({"revenue": 9.99}, ("USD", 9_990_000)),
        ({"revenue": 1.005, "currency": "JPY"}, ("JPY", 1_005_000)),
        ({"revenue": 0.30000000000000004}, ("USD", 300_000)),
        ({"revenue": 1234567.891011}, ("USD", 1_234_567_891_011)),
        ({"revenue": 5}, ("USD", 5_000_000)),
        ({"revenue": 0}, ("USD", 0)),
        ({"revenue": -4.99, "currency": "gbp"}, ("GBP", -4_990_000)),
        ({"revenue": 12.5, "currency": " eur "}, ("EUR", 12_500_000)),
        ({"revenue": 1e9}, ("USD", 10**15)),  # MAX_REVENUE, still exact
    ],
)
def test_revenue_of_gives_exact_micros(
    properties: dict[str, Any], expected: tuple[str, int]
) -> None:
    assert revenue_of(properties) == expected


@pytest.mark.parametrize(
    "properties",
    [
        {},
        {"revenue": None},
        {"revenue": "9.99"},
        {"revenue": True},
        {"revenue": float("nan")},
        {"revenue": float("inf")},
        {"revenue": float("-inf")},
        {"revenue": [1]},
        {"revenue": 5, "currency": "EURO"},
        {"revenue": 5, "currency": "E1"},
        {"revenue": 5, "currency": 978},
        {"revenue": 5, "currency": None},
    ],
)
def test_revenue_of_ignores_what_is_not_a_finite_amount_in_an_iso_currency(
    properties: dict[str, Any],
) -> None:
    assert revenue_of(properties) is None


def test_platform_of_names_missing_platforms_unknown() -> None:
    assert platform_of(track("a", "play", jan(1), platform="ios")) == "ios"
    assert platform_of(track("a", "play", jan(1), platform=None)) == "unknown"


def test_a_delta_of_nothing_is_empty() -> None:
    delta = rollup_delta([])
    assert not delta
    assert delta.first_seen == {}


def test_events_before_1970_or_far_ahead_keep_their_day() -> None:
    delta = rollup_delta(
        [
            track("old", "play", datetime(1969, 12, 31, 23, 59, tzinfo=UTC)),
            track("new", "play", datetime(2100, 2, 28, tzinfo=UTC)),
        ]
    )
    assert set(delta.counts) == {
        (date(1969, 12, 31), "web", "play"),
        (date(2100, 2, 28), "web", "play"),
    }


def test_revenue_beyond_the_cap_carries_no_revenue() -> None:
    """Validation refuses it at the API; an older queued message is stored uncounted."""
    assert revenue_of({"revenue": 1e9 + 1}) is None
    assert revenue_of({"revenue": -1e16}) is None


def test_dropped_copies_take_back_exactly_what_storing_them_added() -> None:
    messages = [
        track("anon:v", "buy", jan(1, 9), revenue=9.99, currency="eur"),
        track("anon:v", "buy", jan(1, 10), platform=None, revenue="12"),  # text: no revenue
        track("anon:v", "open", jan(2, 0, 0, 1), platform="ios"),
    ]
    stored = rollup_delta(messages)
    copies = [(m.timestamp.date(), m.platform, m.event or "", m.properties) for m in messages]
    dropped = copies_delta(copies)
    event_counts = {k: n for k, n in stored.counts.items() if k[2] not in SESSION_EVENTS}
    assert dict(dropped.counts) == event_counts
    assert dict(dropped.revenue) == dict(stored.revenue) == {(JAN_1, "web", "EUR"): 9_990_000}
    assert (JAN_1, "unknown", "buy") in dropped.counts
