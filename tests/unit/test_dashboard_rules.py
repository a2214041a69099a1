"""Dashboard figures from the rollups, on a small data set computed by hand (in memory).

The data set, January 2026 (platform web unless said otherwise):

    Dec 31  alice song_played                                    (before the range)
    Jan 1   alice signup, alice song_played, bob(ios) signup
    Jan 2   alice song_played, bob(ios) song_played, bob(ios) purchase 9.99 USD,
            carol(android) purchase 0.1 "eur", carol(android) purchase 0.2 EUR,
            bob identify (not an event the dashboard counts)
    Jan 3   alice purchase 19.99 USD, bob(ios) purchase "abc" (no revenue),
            dave(no platform) song_played at 23:59:59
    Jan 4   nothing
    Jan 5   erin song_played                                     (after the range)
"""

from __future__ import annotations

import random
from datetime import UTC, date, datetime
from typing import Any

import pytest
from mysoulmate.analytics.active_users import active_users_by_window
from mysoulmate.analytics.dashboard import build_dashboard
from mysoulmate.analytics.date_range import DateRange
from mysoulmate.analytics.models import QueuedMessage
from mysoulmate.analytics.report_models import DashboardReport

from tests.support.memory_store import MemoryEventStore
from tests.support.messages import identify, jan, track

JAN_1_4 = DateRange(date(2026, 1, 1), date(2026, 1, 4))
FUNNEL = ["song_played", "purchase", "signup"]


def january() -> list[QueuedMessage]:
    return [
        track("alice", "song_played", datetime(2025, 12, 31, 12, tzinfo=UTC)),
        track("alice", "signup", jan(1, 10)),
        track("alice", "song_played", jan(1, 11)),
        track("bob", "signup", jan(1, 12), platform="ios"),
        track("alice", "song_played", jan(2, 9)),
        track("bob", "song_played", jan(2, 10), platform="ios"),
        track("bob", "purchase", jan(2, 11), platform="ios", revenue=9.99),
        track("carol", "purchase", jan(2, 15), platform="android", revenue=0.1, currency="eur"),
        track("carol", "purchase", jan(2, 16), platform="android", revenue=0.2, currency="EUR"),
        identify("bob", jan(2, 12), plan="pro"),
        track("alice", "purchase", jan(3, 8), revenue=19.99),
        track("bob", "purchase", jan(3, 9), platform="ios", revenue="abc"),
        track("dave", "song_played", jan(3, 23, 59, 59), platform=None),
        track("erin", "song_played", jan(5)),
    ]


@pytest.fixture
def store() -> MemoryEventStore:
    store = MemoryEventStore()
    result = store.insert_events(january())
    assert (result.written, result.failed) == (14, {})
    return store


def dashboard(
    store: MemoryEventStore,
    span: DateRange = JAN_1_4,
    platform: str | None = None,
    top: int = 10,
) -> DashboardReport:
    return build_dashboard(store, span, platform, top, FUNNEL)


def amounts(report: DashboardReport) -> dict[str, Any]:
    return report.revenue.model_dump(mode="json")


def test_totals_and_events_by_day(store: MemoryEventStore) -> None:
    report = dashboard(store)
    assert (report.from_, report.to, report.platform) == (date(2026, 1, 1), date(2026, 1, 4), None)
    assert report.totalEvents == 11
    assert [(d.date.day, d.events) for d in report.eventsByDay] == [(1, 3), (2, 5), (3, 3), (4, 0)]


def test_active_users_are_distinct_over_the_range_and_per_day(store: MemoryEventStore) -> None:
    report = dashboard(store)
    assert report.activeUsers == 4  # alice, bob, carol, dave; not erin (Jan 5)
    assert [(d.date.day, d.users) for d in report.dailyActiveUsers] == [
        (1, 2),
        (2, 3),
        (3, 3),
        (4, 0),
    ]


def test_the_range_bounds_are_inclusive_utc_days(store: MemoryEventStore) -> None:
    new_year = dashboard(store, DateRange(date(2025, 12, 31), date(2026, 1, 1)))
    assert (new_year.totalEvents, new_year.activeUsers) == (4, 2)
    last_days = dashboard(store, DateRange(date(2026, 1, 3), date(2026, 1, 5)))
    # dave's 23:59:59 event is on Jan 3; erin's on Jan 5.
    assert [d.events for d in last_days.eventsByDay] == [3, 0, 1]
    assert last_days.activeUsers == 4


def test_top_events_by_count_then_name_with_distinct_users(store: MemoryEventStore) -> None:
    assert [(e.event, e.count, e.users) for e in dashboard(store).topEvents] == [
        ("purchase", 5, 3),
        ("song_played", 4, 3),
        ("signup", 2, 2),
    ]
    assert [e.event for e in dashboard(store, top=2).topEvents] == ["purchase", "song_played"]


def test_platform_breakdown_sorted_by_events_then_name(store: MemoryEventStore) -> None:
    assert [(p.platform, p.events, p.users) for p in dashboard(store).platformBreakdown] == [
        ("ios", 4, 1),
        ("web", 4, 1),
        ("android", 2, 1),
        ("unknown", 1, 1),
    ]


def test_revenue_per_currency_is_exact(store: MemoryEventStore) -> None:
    # 9.99 + 19.99 is 29.979999999999997 and 0.1 + 0.2 is 0.30000000000000004 in floats.
    assert amounts(dashboard(store)) == {
        "totals": [{"currency": "EUR", "amount": 0.3}, {"currency": "USD", "amount": 29.98}],
        "byDay": [
            {"date": "2026-01-01", "amounts": []},
            {
                "date": "2026-01-02",
                "amounts": [
                    {"currency": "EUR", "amount": 0.3},
                    {"currency": "USD", "amount": 9.99},
                ],
            },
            {"date": "2026-01-03", "amounts": [{"currency": "USD", "amount": 19.99}]},
            {"date": "2026-01-04", "amounts": []},
        ],
    }


def test_many_small_amounts_add_up_exactly() -> None:
    store = MemoryEventStore()
    store.insert_events([track(f"u{i}", "tip", jan(1), revenue=0.01) for i in range(1000)])
    report = dashboard(store)
    assert report.revenue.totals[0].model_dump() == {"currency": "USD", "amount": 10.0}


def test_a_platform_filter_keeps_only_that_platform(store: MemoryEventStore) -> None:
    ios = dashboard(store, platform="ios")
    assert ios.platform == "ios"
    assert (ios.totalEvents, ios.activeUsers) == (4, 1)
    assert [d.users for d in ios.dailyActiveUsers] == [1, 1, 1, 0]
    assert [(e.event, e.count, e.users) for e in ios.topEvents] == [
        ("purchase", 2, 1),
        ("signup", 1, 1),
        ("song_played", 1, 1),
    ]
    assert [(p.platform, p.events) for p in ios.platformBreakdown] == [("ios", 4)]
    assert amounts(ios)["totals"] == [{"currency": "USD", "amount": 9.99}]
    nobody = dashboard(store, platform="windows")
    assert (nobody.totalEvents, nobody.activeUsers, nobody.topEvents) == (0, 0, [])


def test_the_dashboard_funnel_intersects_who_sent_each_step(store: MemoryEventStore) -> None:
    funnel = dashboard(store).funnel
    assert funnel.steps == FUNNEL
    assert funnel.usersEntered == 3  # song_played: alice, bob, dave
    assert [
        (s.event, s.users, s.conversionFromStart, s.conversionFromPrevious, s.dropOff)
        for s in funnel.funnel
    ] == [
        ("song_played", 3, 1.0, 1.0, 0),
        ("purchase", 2, 0.666667, 0.666667, 1),  # alice, bob (dave never bought)
        ("signup", 2, 0.666667, 1.0, 0),
    ]
    assert [s.medianSecondsToConvert for s in funnel.funnel] == [None, None, None]


def test_redelivered_and_reordered_messages_change_no_figure() -> None:
    messages = january()
    in_order = MemoryEventStore()
    in_order.insert_events(messages)
    expected = dashboard(in_order).model_dump(mode="json")

    shuffled = [*messages, *messages[::3]]  # a third delivered twice
    random.Random(4).shuffle(shuffled)
    redelivered = MemoryEventStore()
    results = [redelivered.insert_events(shuffled[i : i + 4]) for i in range(0, len(shuffled), 4)]
    assert sum(r.written for r in results) == len(messages)
    assert sum(r.duplicates for r in results) == len(messages[::3])
    assert dashboard(redelivered).model_dump(mode="json") == expected

    again = in_order.insert_events(messages)
    assert (again.written, again.duplicates, again.new_keys) == (0, len(messages), set())
    assert dashboard(in_order).model_dump(mode="json") == expected


def test_an_empty_store_gives_zeros_for_every_day() -> None:
    report = dashboard(MemoryEventStore())
    assert (report.totalEvents, report.activeUsers) == (0, 0)
    assert [d.events for d in report.eventsByDay] == [0, 0, 0, 0]
    assert [d.users for d in report.dailyActiveUsers] == [0, 0, 0, 0]
    assert (report.topEvents, report.platformBreakdown, report.revenue.totals) == ([], [], [])
    assert [s.users for s in report.funnel.funnel] == [0, 0, 0]


# -- active users over rolling windows (the mysoulmate_active_users gauge) --------------


def test_active_users_by_window_counts_distinct_users_per_rolling_window() -> None:
    store = MemoryEventStore()
    store.insert_events(
        [
            track("ann", "play", jan(31, 23, 59, 59)),
            track("ann", "play", jan(31), platform="ios"),  # two platforms, one user
            track("ann", "play", jan(10)),
            track("ben", "play", jan(25, 0, 0, 0)),  # first day of the 7-day window
            track("cid", "play", jan(24, 23, 59, 59)),  # just outside it
            track("dee", "play", jan(2)),  # first day of the 30-day window
            track("eve", "play", jan(1, 23, 59, 59)),  # just outside it
            track("fay", "play", datetime(2026, 2, 1, tzinfo=UTC)),  # after "today"
        ]
    )
    assert active_users_by_window(store, today=date(2026, 1, 31)) == {
        "1d": 1,
        "7d": 2,
        "30d": 4,
    }
    # Feb 1: fay alone today; ann and fay since Jan 26; ann, ben, cid and fay since Jan 3.
    assert active_users_by_window(store, today=date(2026, 2, 1)) == {
        "1d": 1,
        "7d": 2,
        "30d": 4,
    }


def test_active_users_by_window_is_zero_without_events() -> None:
    assert active_users_by_window(MemoryEventStore(), today=date(2026, 1, 31)) == {
        "1d": 0,
        "7d": 0,
        "30d": 0,
    }
