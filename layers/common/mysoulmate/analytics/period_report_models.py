"""What a period report holds: the dashboard's own models for the period, plus each headline
figure beside the previous period's, the retention table and (when the caller knows it) the
forwarding health. Its JSON is the report's `report.json`."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from mysoulmate.analytics.perf_models import ScreenChange
from mysoulmate.analytics.report_models import (
    CohortReport,
    DashboardFunnel,
    DayEvents,
    DayRevenue,
    DayUsers,
    PlatformStats,
    TopEvent,
    ViewCount,
)

Granularity = Literal["day", "week"]


class CountChange(BaseModel):
    """A whole-number figure for the period and the previous one."""

    current: int
    previous: int
    change: int = Field(description="current - previous.")
    changePercent: float | None = Field(
        description="(current - previous) / previous * 100, rounded to 2 places; null when "
        "previous is 0 (no base to compare with)."
    )


class AmountChange(BaseModel):
    """A decimal figure (an average, an amount of money) for the period and the previous one."""

    current: float
    previous: float
    change: float = Field(description="current - previous, exact to 6 decimal places.")
    changePercent: float | None = Field(
        description="(current - previous) / previous * 100; null when previous is 0."
    )


class CurrencyChange(AmountChange):
    currency: str


class PeriodTotals(BaseModel):
    events: CountChange
    activeUsers: CountChange
    newUsers: CountChange = Field(
        description="Users whose first event ever falls in the period: the size of the "
        "period's retention cohort."
    )
    sessions: CountChange
    averageSessionSeconds: AmountChange
    pageViews: CountChange
    screenViews: CountChange
    revenue: list[CurrencyChange] = Field(
        description="Per currency seen in either period, in ISO code order."
    )


class ProviderHealth(BaseModel):
    """One provider's forwarding queue as the caller observed it (null: not known)."""

    provider: str
    queueDepth: int | None = None
    deadLetters: int | None = None
    oldestAgeSeconds: float | None = Field(
        default=None, description="Age of the oldest message waiting, in seconds."
    )


class ForwardingHealth(BaseModel):
    """Filled by the caller (the domain reads no queue); absent from a report without it."""

    providers: list[ProviderHealth]
    checkedAt: datetime | None = None


class PeriodReport(BaseModel):
    """A UTC day or ISO week, with the previous one for comparison. Every figure comes from
    `build_dashboard` and `build_cohorts`, so it equals what the dashboard answers for the
    same range."""

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    period: Granularity
    key: str = Field(description="`daily/2026-12-06` or `weekly/2026-W49`: where it is stored.")
    from_: date = Field(alias="from")
    to: date
    previousFrom: date
    previousTo: date
    generatedAt: datetime
    complete: bool = Field(description="False when the period had not ended at generatedAt.")
    totals: PeriodTotals
    eventsByDay: list[DayEvents]
    previousEventsByDay: list[DayEvents]
    activeUsersByDay: list[DayUsers]
    previousActiveUsersByDay: list[DayUsers]
    revenueByDay: list[DayRevenue]
    topEvents: list[TopEvent]
    topViews: list[ViewCount]
    platforms: list[PlatformStats]
    funnel: DashboardFunnel
    retention: CohortReport = Field(
        description="Cohorts by first-seen period (weeks for a weekly report, days for a "
        "daily one), the last being the report's own period; retention as of its end."
    )
    forwarding: ForwardingHealth | None = None
    slowScreens: list[ScreenChange] = Field(
        default_factory=list,
        description="The slowest screens of the period by p90 render time, each against the "
        "previous app version; `regressed` past PERF_REGRESSION_THRESHOLD.",
    )
