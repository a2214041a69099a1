"""What the analytics read endpoints answer: dashboard, cohorts, user summary, GDPR."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from mysoulmate.analytics.funnel import FunnelStep
from mysoulmate.analytics.models import AuditEntry, StoredEvent
from mysoulmate.analytics.perf_models import ScreenChange


class _Report(BaseModel):
    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)


class DayUsers(BaseModel):
    date: date
    users: int


class DayEvents(BaseModel):
    date: date
    events: int


class TopEvent(BaseModel):
    event: str
    count: int
    users: int


class ViewCount(BaseModel):
    kind: Literal["page", "screen"]
    name: str | None = Field(description="The page's or screen's name; null when unnamed.")
    views: int
    users: int


class PlatformStats(BaseModel):
    platform: str
    events: int
    users: int


class CurrencyAmount(BaseModel):
    currency: str
    amount: float = Field(description="In the currency's unit, exact to 6 decimal places.")


class DayRevenue(BaseModel):
    date: date
    amounts: list[CurrencyAmount]


class Revenue(BaseModel):
    totals: list[CurrencyAmount]
    byDay: list[DayRevenue]


class DashboardFunnel(BaseModel):
    """The default funnel as the rollups can answer it, exactly and at any volume: users who
    sent every one of steps 1..k at least once in the range (and platform), in any order.
    Time order, windows and time to convert (null here): `GET /api/v1/analytics/funnel`."""

    steps: list[str]
    usersEntered: int
    funnel: list[FunnelStep]


class DashboardReport(_Report):
    from_: date = Field(alias="from")
    to: date
    platform: str | None = None
    totalEvents: int
    activeUsers: int = Field(description="Distinct users with at least one event in the range.")
    dailyActiveUsers: list[DayUsers]
    topEvents: list[TopEvent]
    eventsByDay: list[DayEvents]
    platformBreakdown: list[PlatformStats]
    revenue: Revenue
    funnel: DashboardFunnel
    pageViews: int = Field(default=0, description="Page views (web) in the range.")
    screenViews: int = Field(default=0, description="Screen views (apps) in the range.")
    topViews: list[ViewCount] = Field(
        default_factory=list,
        description="Pages and screens by views; their events are `$page:<name>` and "
        "`$screen:<name>` in `topEvents` and funnels.",
    )
    sessions: int = Field(
        default=0,
        description="Sessions that started in the range: the client's session ids, or a new "
        "one after 30 minutes of inactivity.",
    )
    averageSessionSeconds: float = Field(
        default=0.0, description="Their average length, first event to last, in seconds."
    )
    sessionsPerUser: float = Field(
        default=0.0, description="sessions / activeUsers (0 when there are no active users)."
    )
    slowScreens: list[ScreenChange] = Field(
        default_factory=list,
        description="The slowest screens by p90 render time in their latest app version, each "
        "against the version before (`GET /api/v1/perf/screens` for the same range).",
    )


class Cohort(BaseModel):
    start: date = Field(description="First day of the period the users were first seen in.")
    size: int
    active: list[int | None] = Field(
        description="Users of the cohort active in period 0, 1, …; null for future periods."
    )
    retention: list[float | None] = Field(description="active / size per period.")


class CohortReport(_Report):
    period: Literal["day", "week"]
    from_: date = Field(alias="from")
    to: date
    periods: int
    cohorts: list[Cohort]


class UserProfileView(BaseModel):
    traits: dict[str, Any]
    anonymousIds: list[str] = Field(
        description="Anonymous ids linked to the user; their history is the user's."
    )
    groups: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Groups (group calls) by groupId, with their traits."
    )
    updatedAt: datetime | None
    firstSeen: datetime | None
    lastSeen: datetime | None


class SessionSummary(BaseModel):
    sessionId: str | None = Field(
        description="The session id its events carry (the client's, or assigned after 30 "
        "minutes of inactivity); null for events stored before session ids existed."
    )
    start: datetime
    end: datetime
    events: int
    durationSeconds: float


class UserAnalytics(BaseModel):
    userId: str
    profile: UserProfileView
    eventCounts: dict[str, int] = Field(description="Track events by name (within from/to).")
    sessions: int = Field(
        description="Sessions of the user's events (track, page, screen) within from/to: "
        "the client's session id, or a new one after 30 minutes of inactivity."
    )
    sessionList: list[SessionSummary] = Field(
        default_factory=list,
        description="Those sessions, newest first (at most 100): start, end and events.",
    )
    events: list[StoredEvent]
    nextCursor: str | None = None


class ErasureReport(BaseModel):
    userId: str
    erased: bool
    eventsDeleted: int
    profileDeleted: bool
    auditId: str


class AuditLogPage(BaseModel):
    entries: list[AuditEntry]
    nextCursor: str | None = None
