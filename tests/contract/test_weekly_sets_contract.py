"""Weekly user sets on every backend: each ISO week's set is exactly the union of its days'
any-event sets (`rollups.weekly_from_daily`) through deliveries in any order, redelivery,
identity links, erasure and late events; weekly cohorts read them, and a week cut short by
today still counts only its days up to today."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta

from mysoulmate.analytics.cohorts import build_cohorts
from mysoulmate.analytics.date_range import DateRange
from mysoulmate.analytics.ports import EventStore
from mysoulmate.analytics.rollups import weekly_from_daily

from tests.support.messages import consume, identify_as, jan, track, visit

MONDAYS = (date(2025, 12, 29), date(2026, 2, 23))  # every week of the data and around it


def weeks(sets: dict[date, object]) -> dict[date, frozenset[int]]:
    return {week: frozenset(users) for week, users in sets.items() if len(users)}  # type: ignore[arg-type, call-overload]


def assert_weekly_is_union_of_daily(store: EventStore) -> None:
    stored = weeks(store.weekly_active_users(*MONDAYS))  # type: ignore[arg-type]
    derived = weeks(weekly_from_daily(store, *MONDAYS))  # type: ignore[arg-type]
    assert stored == derived


def test_weekly_sets_follow_deliveries_links_erasures_and_late_events(store: EventStore) -> None:
    rng = random.Random(5)
    people = [f"u{n}" for n in range(12)]
    start = datetime(2026, 1, 1, tzinfo=UTC)
    history = [
        track(
            rng.choice(people),
            "open",
            start + timedelta(hours=rng.randrange(24 * 40)),
            platform=rng.choice(("ios", "android", "web")),
        )
        for _ in range(150)
    ]
    rng.shuffle(history)
    for i in range(0, len(history), 23):
        consume(store, *history[i : i + 23])
    consume(store, *history[:23])  # redelivered
    assert_weekly_is_union_of_daily(store)
    consume(store, visit("v-9", jan(30, 9)), identify_as("u3", "v-9", jan(30, 10)))
    consume(store, track("u4", "open", jan(2, 8)))  # late: an earlier week
    store.delete_user("u5", jan(31))
    assert_weekly_is_union_of_daily(store)
    assert weeks(store.weekly_active_users(*MONDAYS))  # type: ignore[arg-type]


def test_weekly_cohorts_count_a_week_cut_short_by_today_up_to_today(store: EventStore) -> None:
    # Monday 5 January: ann's and bob's cohort; ann is back on Wednesday 14.
    consume(store, track("ann", "open", jan(5, 9)), track("bob", "open", jan(6, 9)))
    consume(store, track("ann", "open", jan(14, 9)))
    span = DateRange(date(2026, 1, 5), date(2026, 1, 11))

    def active(today: date) -> list[list[int | None]]:
        return [c.active for c in build_cohorts(store, span, "week", 2, today).cohorts]

    assert active(date(2026, 1, 15)) == [[2, 1]]  # Thursday: nothing later, the week's set
    # Events dated after "today" (a report for a past Thursday) never count for it.
    consume(store, track("bob", "open", jan(17, 9)))
    assert active(date(2026, 1, 15)) == [[2, 1]]
    assert active(date(2026, 1, 31)) == [[2, 2]]
