"""The figures of a daily or weekly report, and the periods they cover.

A report is the dashboard for its period and for the previous one, side by side, plus the
retention cohorts: it calls `build_dashboard` and `build_cohorts` rather than computing
anything itself, so its numbers equal `/api/v1/analytics/dashboard` for the same range by
construction, and, like them, it reads rollups only (its cost follows the days, not the events).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from mysoulmate.analytics.cohorts import build_cohorts
from mysoulmate.analytics.dashboard import build_dashboard
from mysoulmate.analytics.date_range import DateRange
from mysoulmate.analytics.period_report_models import (
    AmountChange,
    CountChange,
    CurrencyChange,
    ForwardingHealth,
    Granularity,
    PeriodReport,
    PeriodTotals,
)
from mysoulmate.analytics.ports import EventStore
from mysoulmate.analytics.report_models import CohortReport, DashboardReport

TOP_EVENTS = 10
# Cohorts shown, the report's own period last: two months of weeks, or a week of days.
COHORT_PERIODS: dict[Granularity, int] = {"week": 8, "day": 7}
_PREFIX: dict[Granularity, str] = {"day": "daily", "week": "weekly"}
_KEY = re.compile(r"^(?:daily/(\d{4})-(\d{2})-(\d{2})|weekly/(\d{4})-W(\d{2}))$")


@dataclass(frozen=True, order=True)
class Period:
    """A UTC day, or an ISO 8601 week (Monday to Sunday, numbered in its ISO year)."""

    kind: Granularity
    first: date

    def __post_init__(self) -> None:
        if self.kind not in _PREFIX:
            raise ValueError(f"a period is a day or a week, not {self.kind!r}")
        if self.kind == "week" and self.first.weekday() != 0:
            raise ValueError(f"a week starts on a Monday, not on {self.first.isoformat()}")

    @classmethod
    def day(cls, value: date) -> Period:
        return cls("day", _as_date(value))

    @classmethod
    def week(cls, value: date) -> Period:
        """The ISO week holding ``value`` (any of its seven days)."""
        value = _as_date(value)
        return cls("week", value - timedelta(days=value.weekday()))

    @classmethod
    def of(cls, kind: Granularity, value: date) -> Period:
        return cls.week(value) if kind == "week" else cls.day(value)

    @classmethod
    def last_complete(cls, kind: Granularity, today: date) -> Period:
        """What a scheduled run reports: yesterday, or the week before this one."""
        return cls.of(kind, today).previous()

    @classmethod
    def from_key(cls, key: str) -> Period:
        """The inverse of `key`: `daily/2026-12-06` or `weekly/2026-W49`."""
        match = _KEY.match(key)
        if not match:
            raise ValueError(f"not a report key: {key!r}")
        if match.group(1):
            return cls.day(date(int(match.group(1)), int(match.group(2)), int(match.group(3))))
        return cls.week(date.fromisocalendar(int(match.group(4)), int(match.group(5)), 1))

    @property
    def length(self) -> timedelta:
        return timedelta(days=7 if self.kind == "week" else 1)

    @property
    def last(self) -> date:
        return self.first + self.length - timedelta(days=1)

    @property
    def span(self) -> DateRange:
        return DateRange(self.first, self.last)

    def previous(self) -> Period:
        return Period(self.kind, self.first - self.length)

    def next(self) -> Period:
        return Period(self.kind, self.first + self.length)

    def back(self, periods: int) -> Period:
        return Period(self.kind, self.first - self.length * periods)

    @property
    def iso_week(self) -> tuple[int, int]:
        """(ISO year, week number) of the period's first day: 2021-01-03 is 2020-W53."""
        year, week, _ = self.first.isocalendar()
        return year, week

    @property
    def key(self) -> str:
        if self.kind == "day":
            return f"daily/{self.first.isoformat()}"
        year, week = self.iso_week
        return f"weekly/{year:04d}-W{week:02d}"

    def __str__(self) -> str:
        return self.key


def _as_date(value: date) -> date:
    """A `datetime` is a `date` too: keep its (UTC) day only."""
    if isinstance(value, datetime):
        value = (value.astimezone(UTC) if value.tzinfo else value).date()
    return value


# -- changes ----------------------------------------------------------------------------------


def change_percent(current: Decimal, previous: Decimal) -> float | None:
    """(current - previous) / previous in percent, 2 places; None without a base (0)."""
    if previous == 0:
        return None
    return float(round((current - previous) / abs(previous) * 100, 2))


def count_change(current: int, previous: int) -> CountChange:
    return CountChange(
        current=current,
        previous=previous,
        change=current - previous,
        changePercent=change_percent(Decimal(current), Decimal(previous)),
    )


def amount_change(current: float, previous: float) -> AmountChange:
    """Exact on the decimal values the dashboard gives (6 places), not on binary floats."""
    now, before = Decimal(str(current)), Decimal(str(previous))
    return AmountChange(
        current=current,
        previous=previous,
        change=float(round(now - before, 6)),
        changePercent=change_percent(now, before),
    )


def revenue_changes(current: DashboardReport, previous: DashboardReport) -> list[CurrencyChange]:
    now = {a.currency: a.amount for a in current.revenue.totals}
    before = {a.currency: a.amount for a in previous.revenue.totals}
    return [
        CurrencyChange(
            currency=currency,
            **amount_change(now.get(currency, 0.0), before.get(currency, 0.0)).model_dump(),
        )
        for currency in sorted(now.keys() | before.keys())
    ]


# -- the report -------------------------------------------------------------------------------


def retention(store: EventStore, period: Period, periods: int | None = None) -> CohortReport:
    """Cohorts of the ``periods`` periods ending with ``period``, retention as of its end."""
    count = periods or COHORT_PERIODS[period.kind]
    span = DateRange(period.back(count - 1).first, period.last)
    return build_cohorts(store, span, period.kind, count, period.last)


def build_period_report(
    store: EventStore,
    period: Period,
    *,
    funnel_steps: list[str],
    forwarding: ForwardingHealth | None = None,
    top: int = TOP_EVENTS,
    now: datetime | None = None,
) -> PeriodReport:
    """The report for ``period``: two dashboards (it and the previous period) and cohorts."""
    generated = now or datetime.now(UTC)
    before = period.previous()
    current = build_dashboard(store, period.span, None, top, funnel_steps)
    previous = build_dashboard(store, before.span, None, top, funnel_steps)
    cohorts = retention(store, period)
    # The last two cohorts are the users first seen in this period and in the previous one.
    sizes = [c.size for c in cohorts.cohorts]
    new_now, new_before = sizes[-1], (sizes[-2] if len(sizes) > 1 else 0)
    return PeriodReport(
        period=period.kind,
        key=period.key,
        from_=period.first,
        to=period.last,
        previousFrom=before.first,
        previousTo=before.last,
        generatedAt=generated,
        complete=generated.astimezone(UTC).date() > period.last,
        totals=PeriodTotals(
            events=count_change(current.totalEvents, previous.totalEvents),
            activeUsers=count_change(current.activeUsers, previous.activeUsers),
            newUsers=count_change(new_now, new_before),
            sessions=count_change(current.sessions, previous.sessions),
            averageSessionSeconds=amount_change(
                current.averageSessionSeconds, previous.averageSessionSeconds
            ),
            pageViews=count_change(current.pageViews, previous.pageViews),
            screenViews=count_change(current.screenViews, previous.screenViews),
            revenue=revenue_changes(current, previous),
        ),
        eventsByDay=current.eventsByDay,
        previousEventsByDay=previous.eventsByDay,
        activeUsersByDay=current.dailyActiveUsers,
        previousActiveUsersByDay=previous.dailyActiveUsers,
        revenueByDay=current.revenue.byDay,
        topEvents=current.topEvents,
        topViews=current.topViews,
        slowScreens=current.slowScreens,
        platforms=current.platformBreakdown,
        funnel=current.funnel,
        retention=cohorts,
        forwarding=forwarding,
    )
