"""The admin dashboard, assembled from daily rollups only.

Every figure comes from per-day counts, revenue sums and user sets, so a query costs in
proportion to the days (and users) in the range, never to the number of events stored. That
includes the default funnel, read as set intersections (see `DashboardFunnel`); the
time-ordered funnel with a window is `funnel.py`'s, behind its own endpoint.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import date
from decimal import Decimal
from typing import Any, Literal

from mysoulmate.analytics.date_range import DateRange
from mysoulmate.analytics.funnel import FunnelTally, funnel_steps
from mysoulmate.analytics.perf import screens_in
from mysoulmate.analytics.ports import ANY_EVENT, EventStore, SessionRow, UserSet
from mysoulmate.analytics.report_models import (
    CurrencyAmount,
    DashboardFunnel,
    DashboardReport,
    DayEvents,
    DayRevenue,
    DayUsers,
    PlatformStats,
    Revenue,
    TopEvent,
    ViewCount,
)
from mysoulmate.analytics.rollups import MICROS, split_session_rows

VIEW_KINDS: dict[str, Literal["page", "screen"]] = {"$page": "page", "$screen": "screen"}


def union(store: EventStore, sets: Iterable[UserSet]) -> UserSet:
    """One call for all the sets: pairwise ORs would build a growing set per set."""
    return store.empty_user_set().union(*sets)


def amount(micros: int) -> float:
    return float(Decimal(micros) / MICROS)


def build_dashboard(
    store: EventStore,
    period: DateRange,
    platform: str | None,
    top: int,
    funnel_steps: list[str],
) -> DashboardReport:
    def wanted(row_platform: str) -> bool:
        return platform is None or row_platform == platform

    # One read of the daily counts: event counts and session figures are stored together.
    all_counts, all_sessions = split_session_rows(store.rollup_count_rows(period.start, period.end))
    counts = [r for r in all_counts if wanted(r.platform)]
    users = [
        r for r in store.rollup_users(period.start, period.end, by_event=True) if wanted(r.platform)
    ]
    revenue = [r for r in store.rollup_revenue(period.start, period.end) if wanted(r.platform)]

    events_by_day: Counter[date] = Counter()
    events_by_name: Counter[str] = Counter()
    events_by_platform: Counter[str] = Counter()
    for row in counts:
        events_by_day[row.day] += row.events
        events_by_name[row.event] += row.events
        events_by_platform[row.platform] += row.events

    active_by_day: defaultdict[date, list[UserSet]] = defaultdict(list)
    active_by_platform: defaultdict[str, list[UserSet]] = defaultdict(list)
    users_by_name: defaultdict[str, list[UserSet]] = defaultdict(list)
    for users_row in users:
        if users_row.event == ANY_EVENT:
            active_by_day[users_row.day].append(users_row.users)
            active_by_platform[users_row.platform].append(users_row.users)
        else:
            users_by_name[users_row.event].append(users_row.users)

    active_users = len(union(store, (s for sets in active_by_day.values() for s in sets)))
    top_names = sorted(events_by_name, key=lambda name: (-events_by_name[name], name))[:top]
    revenue_totals: Counter[str] = Counter()
    revenue_by_day: defaultdict[date, Counter[str]] = defaultdict(Counter)
    for rev in revenue:
        revenue_totals[rev.currency] += rev.micros
        revenue_by_day[rev.day][rev.currency] += rev.micros

    return DashboardReport(
        from_=period.start,
        to=period.end,
        platform=platform,
        totalEvents=sum(events_by_day.values()),
        activeUsers=active_users,
        dailyActiveUsers=[
            DayUsers(date=day, users=len(union(store, active_by_day.get(day, ()))))
            for day in period.each_day()
        ],
        topEvents=[
            TopEvent(
                event=name,
                count=events_by_name[name],
                users=len(union(store, users_by_name[name])),
            )
            for name in top_names
        ],
        eventsByDay=[DayEvents(date=day, events=events_by_day[day]) for day in period.each_day()],
        platformBreakdown=sorted(
            (
                PlatformStats(
                    platform=name,
                    events=events_by_platform[name],
                    users=len(union(store, active_by_platform[name])),
                )
                for name in events_by_platform
            ),
            key=lambda stats: (-stats.events, stats.platform),
        ),
        revenue=Revenue(
            totals=[
                CurrencyAmount(currency=c, amount=amount(m))
                for c, m in sorted(revenue_totals.items())
            ],
            byDay=[
                DayRevenue(
                    date=day,
                    amounts=[
                        CurrencyAmount(currency=c, amount=amount(m))
                        for c, m in sorted(revenue_by_day[day].items())
                    ],
                )
                for day in period.each_day()
            ],
        ),
        funnel=set_funnel(store, funnel_steps, users_by_name),
        **view_figures(store, events_by_name, users_by_name, top),
        **session_figures([r for r in all_sessions if wanted(r.platform)], active_users),
        slowScreens=screens_in(store, period.start, period.end, platform, top),
    )


def session_figures(rows: list[SessionRow], active_users: int) -> dict[str, Any]:
    """Sessions that started in the range (their length counts whole, wherever it ends)."""
    sessions = sum(r.sessions for r in rows)
    millis = sum(r.millis for r in rows)
    return {
        "sessions": sessions,
        "averageSessionSeconds": round(millis / sessions / 1000, 3) if sessions else 0.0,
        "sessionsPerUser": round(sessions / active_users, 3) if active_users else 0.0,
    }


def view_figures(
    store: EventStore,
    events_by_name: Counter[str],
    users_by_name: dict[str, list[UserSet]],
    top: int,
) -> dict[str, Any]:
    """Page and screen views, counted by name (their events are `$page:<name>` and
    `$screen:<name>`, so the same rollups count them)."""
    views: list[ViewCount] = []
    totals: Counter[str] = Counter()
    for event, count in events_by_name.items():
        kind, _, name = event.partition(":")
        if kind not in VIEW_KINDS:
            continue
        totals[kind] += count
        users = len(union(store, users_by_name.get(event, ())))
        views.append(ViewCount(kind=VIEW_KINDS[kind], name=name or None, views=count, users=users))
    views.sort(key=lambda v: (-v.views, v.kind, v.name or ""))
    return {
        "pageViews": totals["$page"],
        "screenViews": totals["$screen"],
        "topViews": views[:top],
    }


def set_funnel(
    store: EventStore, steps: list[str], users_by_name: dict[str, list[UserSet]]
) -> DashboardFunnel:
    """Step k = users who sent steps 1..k in the range: an intersection of exact sets. The
    per-step lines are the funnel engine's own (`funnel_steps`), without times."""
    reached: UserSet | None = None
    counts: list[int] = []
    for name in steps:
        sent = union(store, users_by_name.get(name, ()))
        reached = sent if reached is None else reached & sent
        counts.append(len(reached))
    entered = counts[0] if counts else 0
    tally = FunnelTally(users_entered=entered, users=counts, micros=[[] for _ in steps])
    return DashboardFunnel(steps=steps, usersEntered=entered, funnel=funnel_steps(tally, steps))
