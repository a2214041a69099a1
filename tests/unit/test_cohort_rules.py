"""Retention cohorts on a small data set computed by hand (in memory).

Days each user sent a track event (2026 unless said otherwise):

    alice  Jan 1, Jan 2, Jan 3, Jan 6
    bob    Jan 1, Jan 3
    frank  Jan 1
    carol  Jan 2, Jan 4, Jan 12
    dave   Jan 3
    erin   Dec 31 (2025), Jan 2
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from mysoulmate.analytics.cohorts import Period, build_cohorts, period_start
from mysoulmate.analytics.date_range import DateRange
from mysoulmate.analytics.report_models import CohortReport

from tests.support.memory_store import MemoryEventStore
from tests.support.messages import jan, track

ACTIVE_DAYS = {
    "alice": [1, 2, 3, 6],
    "bob": [1, 3],
    "frank": [1],
    "carol": [2, 4, 12],
    "dave": [3],
    "erin": [2],
}
JAN_1_3 = DateRange(date(2026, 1, 1), date(2026, 1, 3))


@pytest.fixture
def store() -> MemoryEventStore:
    store = MemoryEventStore()
    messages = [
        track(user, "open", jan(day, 9), platform="ios" if day % 2 else "web")
        for user, days in ACTIVE_DAYS.items()
        for day in days
    ]
    messages.append(track("erin", "open", datetime(2025, 12, 31, 9, tzinfo=UTC)))
    assert not store.insert_events(messages).failed
    return store


def table(report: CohortReport) -> list[tuple[date, int, list[int | None]]]:
    return [(c.start, c.size, c.active) for c in report.cohorts]


def cohorts(
    store: MemoryEventStore, span: DateRange, period: Period, periods: int, today: date
) -> CohortReport:
    return build_cohorts(store, span, period, periods, today)


def test_daily_cohorts_count_new_users_and_their_return_days(store: MemoryEventStore) -> None:
    report = cohorts(store, JAN_1_3, "day", 3, today=date(2026, 1, 10))
    assert (report.period, report.from_, report.to, report.periods) == (
        "day",
        date(2026, 1, 1),
        date(2026, 1, 3),
        3,
    )
    assert table(report) == [
        (date(2026, 1, 1), 3, [3, 1, 2]),  # alice, bob, frank; alice on Jan 2; alice, bob Jan 3
        (date(2026, 1, 2), 1, [1, 0, 1]),  # carol (erin was first seen on Dec 31)
        (date(2026, 1, 3), 1, [1, 0, 0]),  # dave
    ]
    assert [c.retention for c in report.cohorts] == [
        [1.0, 0.333333, 0.666667],
        [1.0, 0.0, 1.0],
        [1.0, 0.0, 0.0],
    ]


def test_periods_after_today_are_null_not_zero(store: MemoryEventStore) -> None:
    report = cohorts(store, JAN_1_3, "day", 3, today=date(2026, 1, 3))
    assert table(report) == [
        (date(2026, 1, 1), 3, [3, 1, 2]),
        (date(2026, 1, 2), 1, [1, 0, None]),
        (date(2026, 1, 3), 1, [1, None, None]),
    ]
    assert report.cohorts[2].retention == [1.0, None, None]


def test_weekly_cohorts_start_on_monday(store: MemoryEventStore) -> None:
    # 2026-01-01 is a Thursday: its ISO week runs Monday Dec 29 to Sunday Jan 4, and all six
    # users were first seen in it; alice came back the next week, carol the week after.
    report = cohorts(
        store, DateRange(date(2026, 1, 1), date(2026, 1, 1)), "week", 3, date(2026, 1, 20)
    )
    assert (report.from_, report.to) == (date(2025, 12, 29), date(2026, 1, 1))
    assert table(report) == [(date(2025, 12, 29), 6, [6, 1, 1])]
    assert report.cohorts[0].retention == [1.0, 0.166667, 0.166667]
    early = cohorts(
        store, DateRange(date(2026, 1, 1), date(2026, 1, 1)), "week", 3, date(2026, 1, 8)
    )
    assert table(early) == [(date(2025, 12, 29), 6, [6, 1, None])]


def test_a_period_with_no_new_users_is_an_empty_cohort(store: MemoryEventStore) -> None:
    report = cohorts(
        store, DateRange(date(2026, 1, 1), date(2026, 1, 12)), "week", 2, date(2026, 1, 15)
    )
    assert table(report) == [
        (date(2025, 12, 29), 6, [6, 1]),
        (date(2026, 1, 5), 0, [0, 0]),
        (date(2026, 1, 12), 0, [0, None]),
    ]
    assert report.cohorts[1].retention == [0.0, 0.0]


def test_a_late_older_event_moves_the_user_to_an_earlier_cohort(store: MemoryEventStore) -> None:
    span = DateRange(date(2025, 12, 30), date(2026, 1, 1))
    before = cohorts(store, span, "day", 3, date(2026, 1, 10))
    assert [c.size for c in before.cohorts] == [0, 1, 3]
    store.insert_events([track("alice", "open", datetime(2025, 12, 30, 22, tzinfo=UTC))])
    after = cohorts(store, span, "day", 3, date(2026, 1, 10))
    assert table(after) == [
        (date(2025, 12, 30), 1, [1, 0, 1]),  # alice: Dec 30, (not Dec 31), Jan 1
        (date(2025, 12, 31), 1, [1, 0, 1]),  # erin: Dec 31, (not Jan 1), Jan 2
        (date(2026, 1, 1), 2, [2, 0, 1]),  # bob and frank: Jan 1, -, bob on Jan 3
    ]


def test_activity_on_any_platform_counts_once(store: MemoryEventStore) -> None:
    store.insert_events([track("frank", "open", jan(2, 18), platform="android")])
    store.insert_events([track("frank", "open", jan(2, 19), platform="web")])
    report = cohorts(store, JAN_1_3, "day", 2, date(2026, 1, 10))
    assert report.cohorts[0].active == [3, 2]  # alice and frank on Jan 2


@pytest.mark.parametrize(
    ("day", "period", "start"),
    [
        (date(2026, 1, 1), "week", date(2025, 12, 29)),  # Thursday
        (date(2026, 1, 4), "week", date(2025, 12, 29)),  # Sunday
        (date(2026, 1, 5), "week", date(2026, 1, 5)),  # Monday
        (date(2026, 1, 4), "day", date(2026, 1, 4)),
    ],
)
def test_period_start(day: date, period: Period, start: date) -> None:
    assert period_start(day, period) == start
