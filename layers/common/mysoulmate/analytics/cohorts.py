"""Retention cohorts by first-seen period, from first-seen records and daily user sets.

A cohort is the users whose first track event ever falls in one period; period k's figure is
how many of them had any track event in the k-th period after it. Only sets are read, so the
cost follows days and users, not events.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Literal

from mysoulmate.analytics.date_range import DateRange
from mysoulmate.analytics.ports import EventStore, UserSet
from mysoulmate.analytics.report_models import Cohort, CohortReport

Period = Literal["day", "week"]


def period_start(day: date, period: Period) -> date:
    """Weeks start on Monday (ISO 8601)."""
    return day - timedelta(days=day.weekday()) if period == "week" else day


def build_cohorts(
    store: EventStore, span: DateRange, period: Period, periods: int, today: date
) -> CohortReport:
    length = timedelta(days=7 if period == "week" else 1)
    first = period_start(span.start, period)
    starts = []
    cursor = first
    while cursor <= span.end:
        starts.append(cursor)
        cursor += length
    last_day = min(starts[-1] + length * periods - timedelta(days=1), today)
    newcomers = store.first_seen_users(first, starts[-1] + length - timedelta(days=1))
    active_rows = store.rollup_users(first, last_day, by_event=False) if last_day >= first else []

    def union(sets: list[UserSet]) -> UserSet:
        return store.empty_user_set().union(*sets)

    active_by_period: dict[date, list[UserSet]] = {}
    for row in active_rows:
        active_by_period.setdefault(period_start(row.day, period), []).append(row.users)
    active = {start: union(sets) for start, sets in active_by_period.items()}

    cohorts = []
    for start in starts:
        members = union([s for day, s in newcomers.items() if period_start(day, period) == start])
        size = len(members)
        counts: list[int | None] = []
        for k in range(periods):
            at = start + length * k
            if at > today:
                counts.append(None)
                continue
            counts.append(len(members & active[at]) if at in active else 0)
        cohorts.append(
            Cohort(
                start=start,
                size=size,
                active=counts,
                retention=[
                    None if n is None else (round(n / size, 6) if size else 0.0) for n in counts
                ],
            )
        )
    return CohortReport(period=period, from_=first, to=span.end, periods=periods, cohorts=cohorts)
