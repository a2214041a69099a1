"""The admin dashboard, assembled from daily rollups only.

Every figure comes from per-day counts, revenue sums and user sets, so a query costs in
proportion to the days (and users) in the range, never to the number of events stored. That
includes the default funnel, read as set intersections (see `DashboardFunnel`); the
time-ordered funnel with a window is `funnel.py`'s, behind its own endpoint.
"""

from __future__ import annotations

import functools
import threading
import weakref
from collections import Counter, OrderedDict, defaultdict
from collections.abc import Iterable, Sequence
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


@functools.cache
def _frozen_roaring(kind: type) -> bool:
    """Roaring (`cohorts._overlap`'s test) and frozen: no ``add``, so its members never change."""
    return hasattr(kind, "intersection_cardinality") and not hasattr(kind, "add")


class FrozenUnions:
    """Unions of frozen Roaring sets, remembered by the identity of their inputs.

    The SQL stores hand out the same frozen sets while the rows behind them are unchanged
    (their read caches), and the union of the same sets is the same set. An entry holds its
    inputs, so no other object can take their ids while it lives. A range's union is that of
    (the days before the last) and (the last day): ingest changes the latest day, the rest is
    reused. At 1M events the dashboard's unions took 1.2-1.5 ms (0.3 at 10k). Other sets
    are unioned each time."""

    MEMBERS = 1 << 24  # of the kept unions and their inputs: at most ~32 MB of Roaring

    def __init__(self) -> None:
        self._kept: OrderedDict[tuple[int, ...], tuple[tuple[UserSet, ...], UserSet, int]] = (
            OrderedDict()
        )
        self._members = 0
        self._lock = threading.Lock()

    def of(self, store: EventStore, sets: Sequence[UserSet]) -> UserSet:
        if not sets or not all(_frozen_roaring(type(s)) for s in sets):
            return union(store, sets)
        if len(sets) == 1:
            return sets[0]
        key = tuple(map(id, sets))
        with self._lock:
            if (kept := self._kept.get(key)) is not None:
                self._kept.move_to_end(key)
                return kept[1]
        result = sets[0].union(*sets[1:])
        weight = len(result) + sum(map(len, sets))
        with self._lock:
            if key not in self._kept:
                self._kept[key] = (tuple(sets), result, weight)
                self._members += weight
            while self._members > self.MEMBERS and self._kept:
                self._members -= self._kept.popitem(last=False)[1][2]
        return result

    def over_days(self, store: EventStore, dated: Sequence[tuple[date, UserSet]]) -> UserSet:
        if not all(_frozen_roaring(type(users)) for _, users in dated):
            return union(store, (users for _, users in dated))  # one union, nothing kept
        last = max((day for day, _ in dated), default=None)
        earlier = [users for day, users in dated if day != last]
        latest = [users for day, users in dated if day == last]
        return self.of(store, [self.of(store, earlier), *latest] if earlier else latest)


_UNIONS: weakref.WeakKeyDictionary[EventStore, FrozenUnions] = weakref.WeakKeyDictionary()
_UNIONS_LOCK = threading.Lock()


def unions_of(store: EventStore) -> FrozenUnions:
    """The store's kept unions, gone with the store: each store's budget is its own, so one
    store's reads never push out another's (a process may hold several, e.g. one per size in
    a benchmark, or a store reopened)."""
    with _UNIONS_LOCK:
        unions = _UNIONS.get(store)
        if unions is None:
            unions = _UNIONS[store] = FrozenUnions()
        return unions


class EventUsers:
    """Who sent each event in the range: the union of its daily sets, built on first use."""

    def __init__(
        self,
        store: EventStore,
        unions: FrozenUnions,
        sets_by_name: dict[str, list[tuple[date, UserSet]]],
    ) -> None:
        self._store = store
        self._unions = unions
        self._sets = sets_by_name
        self._built: dict[str, UserSet] = {}

    def __call__(self, name: str) -> UserSet:
        if name not in self._built:
            self._built[name] = self._unions.over_days(self._store, self._sets.get(name, ()))
        return self._built[name]


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
    active_by_platform: defaultdict[str, list[tuple[date, UserSet]]] = defaultdict(list)
    users_by_name: defaultdict[str, list[tuple[date, UserSet]]] = defaultdict(list)
    for users_row in users:
        if users_row.event == ANY_EVENT:
            active_by_day[users_row.day].append(users_row.users)
            active_by_platform[users_row.platform].append((users_row.day, users_row.users))
        else:
            users_by_name[users_row.event].append((users_row.day, users_row.users))

    # Each union is built once (`FrozenUnions`): the range's from the platforms' (a few
    # inputs, not one per day and platform), an event's once for the top events, the views
    # and the funnel.
    unions = unions_of(store)
    day_users = {day: len(unions.of(store, sets)) for day, sets in active_by_day.items()}
    platform_users = {
        name: unions.over_days(store, dated) for name, dated in active_by_platform.items()
    }
    active_users = len(unions.of(store, list(platform_users.values())))
    event_users = EventUsers(store, unions, users_by_name)
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
            DayUsers(date=day, users=day_users.get(day, 0)) for day in period.each_day()
        ],
        topEvents=[
            TopEvent(
                event=name,
                count=events_by_name[name],
                users=len(event_users(name)),
            )
            for name in top_names
        ],
        eventsByDay=[DayEvents(date=day, events=events_by_day[day]) for day in period.each_day()],
        platformBreakdown=sorted(
            (
                PlatformStats(
                    platform=name,
                    events=events_by_platform[name],
                    users=len(platform_users.get(name, ())),
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
        funnel=set_funnel(funnel_steps, event_users),
        **view_figures(events_by_name, event_users, top),
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


def view_figures(events_by_name: Counter[str], event_users: EventUsers, top: int) -> dict[str, Any]:
    """Page and screen views, counted by name (their events are `$page:<name>` and
    `$screen:<name>`, so the same rollups count them)."""
    views: list[ViewCount] = []
    totals: Counter[str] = Counter()
    for event, count in events_by_name.items():
        kind, _, name = event.partition(":")
        if kind not in VIEW_KINDS:
            continue
        totals[kind] += count
        users = len(event_users(event))
        views.append(ViewCount(kind=VIEW_KINDS[kind], name=name or None, views=count, users=users))
    views.sort(key=lambda v: (-v.views, v.kind, v.name or ""))
    return {
        "pageViews": totals["$page"],
        "screenViews": totals["$screen"],
        "topViews": views[:top],
    }


def set_funnel(steps: list[str], event_users: EventUsers) -> DashboardFunnel:
    """Step k = users who sent steps 1..k in the range: an intersection of exact sets. The
    per-step lines are the funnel engine's own (`funnel_steps`), without times."""
    reached: UserSet | None = None
    counts: list[int] = []
    for name in steps:
        sent = event_users(name)
        reached = sent if reached is None else reached & sent
        counts.append(len(reached))
    entered = counts[0] if counts else 0
    tally = FunnelTally(users_entered=entered, users=counts, micros=[[] for _ in steps])
    return DashboardFunnel(steps=steps, usersEntered=entered, funnel=funnel_steps(tally, steps))
