"""Dashboard figures from rollups: exact, and unchanged by redelivery or arrival order."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from mysoulmate.analytics.date_range import DateRange
from mysoulmate.analytics.ports import EventStore
from mysoulmate.analytics.reporting import dashboard_report

from tests.support.contract import day, track
from tests.support.dataset import january, shuffled_with_redeliveries

JAN_1_4 = DateRange(date(2026, 1, 1), date(2026, 1, 4))


def figures(store: EventStore, platform: str | None = None, top: int = 10) -> dict[str, Any]:
    report = dashboard_report(store, JAN_1_4, platform, top)
    return report.model_dump(mode="json", by_alias=True)


def ingest(store: EventStore, batches: list[list[Any]]) -> None:
    for batch in batches:
        result = store.insert_events(batch)
        assert not result.failed


def test_dashboard_totals_users_and_days(store: EventStore) -> None:
    ingest(store, january())
    got = figures(store)
    assert got["from"] == "2026-01-01"
    assert got["to"] == "2026-01-04"
    assert got["totalEvents"] == 11
    assert got["activeUsers"] == 4
    assert got["eventsByDay"] == [
        {"date": "2026-01-01", "events": 3},
        {"date": "2026-01-02", "events": 5},
        {"date": "2026-01-03", "events": 3},
        {"date": "2026-01-04", "events": 0},
    ]
    assert [d["users"] for d in got["dailyActiveUsers"]] == [2, 3, 3, 0]


def test_top_events_count_events_and_distinct_users(store: EventStore) -> None:
    ingest(store, january())
    assert figures(store)["topEvents"] == [
        {"event": "message_sent", "count": 4, "users": 2},
        {"event": "purchase", "count": 4, "users": 4},
        {"event": "signup", "count": 2, "users": 2},
        {"event": "companion_created", "count": 1, "users": 1},
    ]
    assert [e["event"] for e in figures(store, top=2)["topEvents"]] == [
        "message_sent",
        "purchase",
    ]


def test_platform_breakdown_and_platform_filter(store: EventStore) -> None:
    ingest(store, january())
    assert figures(store)["platformBreakdown"] == [
        {"platform": "web", "events": 7, "users": 2},
        {"platform": "ios", "events": 3, "users": 1},
        {"platform": "android", "events": 1, "users": 1},
    ]
    ios = figures(store, platform="ios")
    assert (ios["totalEvents"], ios["activeUsers"]) == (3, 1)
    assert ios["revenue"]["totals"] == []
    assert [(e["event"], e["count"], e["users"]) for e in ios["topEvents"]] == [
        ("message_sent", 1, 1),
        ("purchase", 1, 1),
        ("signup", 1, 1),
    ]


def test_revenue_per_currency_and_day_ignores_non_numeric(store: EventStore) -> None:
    ingest(store, january())
    revenue = figures(store)["revenue"]
    assert revenue["totals"] == [
        {"currency": "EUR", "amount": 5.0},
        {"currency": "JPY", "amount": 1.005},
        {"currency": "USD", "amount": 9.99},
    ]
    assert [d["amounts"] for d in revenue["byDay"]] == [
        [],
        [{"currency": "USD", "amount": 9.99}],
        [{"currency": "EUR", "amount": 5.0}, {"currency": "JPY", "amount": 1.005}],
        [],
    ]


def test_default_funnel_on_the_dashboard(store: EventStore) -> None:
    ingest(store, january())
    funnel = figures(store)["funnel"]
    assert funnel["steps"] == ["signup", "companion_created", "message_sent", "purchase"]
    assert [s["users"] for s in funnel["funnel"]] == [2, 1, 1, 1]
    assert [s["dropOff"] for s in funnel["funnel"]] == [0, 1, 0, 0]
    assert funnel["funnel"][1]["conversionFromStart"] == 0.5
    # Sets, not sequences: bob bought on day 3 but never created a companion, so he stops
    # at step 1; on iOS only bob's steps count.
    assert [s["users"] for s in figures(store, platform="ios")["funnel"]["funnel"]] == [1, 0, 0, 0]


def test_dashboard_funnel_counts_steps_sent_in_any_order(store: EventStore) -> None:
    ingest(
        store,
        [
            [
                track("zed", "purchase", day(1, 8)),
                track("zed", "message_sent", day(1, 9)),
                track("zed", "companion_created", day(2, 9)),
                track("zed", "signup", day(3, 9)),
            ]
        ],
    )
    assert [s["users"] for s in figures(store)["funnel"]["funnel"]] == [1, 1, 1, 1]


def test_the_same_batch_twice_counts_once(store: EventStore) -> None:
    batches = january()
    ingest(store, batches)
    once = figures(store)
    replay = [store.insert_events(batch) for batch in batches]
    assert [r.written for r in replay] == [0, 0, 0]
    assert [r.duplicates for r in replay] == [len(b) for b in batches]
    # A batch mixing already-stored events with one new event counts only the new one.
    mixed = store.insert_events([*batches[1], track("alice", "signup", day(4))])
    assert (mixed.written, mixed.duplicates) == (1, len(batches[1]))
    again = figures(store)
    assert again["totalEvents"] == once["totalEvents"] + 1
    assert [d["events"] for d in again["eventsByDay"]] == [3, 5, 3, 1]
    assert again["revenue"] == once["revenue"]
    assert again["topEvents"][0] == once["topEvents"][0]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_redelivered_and_reordered_batches_give_the_same_figures(
    store: EventStore, seed: int
) -> None:
    ingest(store, shuffled_with_redeliveries(seed))
    got = figures(store)
    assert got["totalEvents"] == 11
    assert [d["users"] for d in got["dailyActiveUsers"]] == [2, 3, 3, 0]
    assert [(e["event"], e["count"]) for e in got["topEvents"]] == [
        ("message_sent", 4),
        ("purchase", 4),
        ("signup", 2),
        ("companion_created", 1),
    ]
    assert got["revenue"]["totals"][2] == {"currency": "USD", "amount": 9.99}


def test_events_outside_the_range_are_not_counted(store: EventStore) -> None:
    ingest(store, [[track("erin", "signup", day(5)), track("erin", "signup", day(1, 0))]])
    got = figures(store)
    assert (got["totalEvents"], got["activeUsers"]) == (1, 1)
