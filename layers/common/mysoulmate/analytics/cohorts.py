"""Retention cohorts by first-seen period, from first-seen records and daily user sets.

A cohort is the users whose first track event ever falls in one period; period k's figure is
how many of them had any track event in the k-th period after it. Only sets are read, so the
cost follows days and users, not events.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Literal

from mysoulmate.analytics.date_range import DateRange, week_start
from mysoulmate.analytics.ports import EventStore, UserSet
from mysoulmate.analytics.report_models import Cohort, CohortReport

Period = Literal["day", "week"]
_WEEK = timedelta(days=7)


def period_start(day: date, period: Period) -> date:
    """Weeks start on Monday (ISO 8601)."""
    return week_start(day) if period == "week" else day


def _active_by_period(
    store: EventStore, first: date, last_day: date, period: Period
) -> dict[date, UserSet]:
    """The users active in each period from ``first`` up to ``last_day``. Weeks are one
    stored set each (`weekly_active_users`), the last one too unless it holds a day after
    ``last_day`` (an event dated after today): then that week is the union of its days up
    to ``last_day``, so a later day never counts."""
    if last_day < first:
        return {}
    daily_from = first
    active: dict[date, UserSet] = {}
    if period == "week":
        last_week = period_start(last_day, "week")
        week_end = last_week + timedelta(days=6)
        later = store.rollup_users(last_day + timedelta(days=1), week_end, by_event=False)
        whole_until = last_week if last_day == week_end or not later else last_week - _WEEK
        if whole_until >= first:
            active = store.weekly_active_users(first, whole_until)
        daily_from = whole_until + _WEEK
    if daily_from <= last_day:
        by_period: dict[date, list[UserSet]] = {}
        for row in store.rollup_users(daily_from, last_day, by_event=False):
            by_period.setdefault(period_start(row.day, period), []).append(row.users)
        for start, sets in by_period.items():
            active[start] = store.empty_user_set().union(*sets)
    return active


def _overlap(members: UserSet, active: UserSet) -> int:
    """|members ∩ active|, without building the intersection where the set type can
    (Roaring's ``intersection_cardinality``)."""
    count = getattr(members, "intersection_cardinality", None)
    return int(count(active)) if count is not None else len(members & active)


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
    newcomers_by_period: dict[date, list[UserSet]] = {}
    for day, users in store.first_seen_users(
        first, starts[-1] + length - timedelta(days=1)
    ).items():
        newcomers_by_period.setdefault(period_start(day, period), []).append(users)
    active = _active_by_period(store, first, last_day, period)

    cohorts = []
    for start in starts:
        members = store.empty_user_set().union(*newcomers_by_period.get(start, []))
        size = len(members)
        counts: list[int | None] = []
        for k in range(periods):
            at = start + length * k
            if at > today:
                counts.append(None)
                continue
            counts.append(_overlap(members, active[at]) if at in active else 0)
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
