"""The analytics read use cases the routes call: authorize, validate, query, shape.

Storage calls are blocking; they run off the event loop (`run_blocking`) and an
unavailable backend becomes the 503 envelope, never a 500.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import date, timedelta
from functools import partial
from typing import Literal, ParamSpec, TypeVar

from mysoulmate.analytics import gdpr, perf
from mysoulmate.analytics.bulkheads import STORAGE, STORAGE_COOLDOWN_SECONDS
from mysoulmate.analytics.cohorts import Period, build_cohorts
from mysoulmate.analytics.dashboard import build_dashboard
from mysoulmate.analytics.date_range import DateRange, parse_window, resolve_range, today_utc
from mysoulmate.analytics.funnel import (
    FunnelReport,
    build_report,
    compute_funnel,
    compute_funnel_times,
    names_needed,
    reads_step_times,
)
from mysoulmate.analytics.funnel_next import compute_funnel_next, reads_next_times
from mysoulmate.analytics.perf import PerfFilter, ScreensQuery
from mysoulmate.analytics.perf_models import Metric, PerfSummary, SlowScreens
from mysoulmate.analytics.ports import EventStore, FunnelSeeks, StorageUnavailableError
from mysoulmate.analytics.report_models import (
    AuditLogPage,
    CohortReport,
    DashboardReport,
    ErasureReport,
    UserAnalytics,
)
from mysoulmate.analytics.user_analytics import user_analytics
from mysoulmate.core.errors import DependencyUnavailableError, InvalidRequestError
from mysoulmate.core.principal import Principal
from mysoulmate.core.settings import get_settings
from mysoulmate.observability.signals import count
from mysoulmate.observability.storage_ops import storage_operation

P = ParamSpec("P")
T = TypeVar("T")
Order = Literal["ordered", "strict", "any"]
MIN_STEPS, MAX_STEPS = 2, 10
DEFAULT_WINDOW = timedelta(days=7)
MAX_WINDOW = timedelta(days=90)
MAX_COHORT_PERIODS = 52


async def _query(operation: str, func: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run a storage use case off the event loop; ``operation`` labels its duration metric."""
    try:
        return await STORAGE.run(_timed, operation, partial(func, *args, **kwargs))
    except StorageUnavailableError:
        raise DependencyUnavailableError(
            dependency="storage", headers={"Retry-After": str(int(STORAGE_COOLDOWN_SECONDS))}
        ) from None


def _timed(operation: str, call: Callable[[], T]) -> T:
    """Run one storage use case as a storage operation (span, subsegment, duration, slow
    warning), timed without the thread pool's queueing."""
    with storage_operation(operation, get_settings().storage_backend):
        return call()


def parse_steps(text: str | None) -> list[str]:
    steps = [part.strip() for part in (text or "").split(",")]
    if not MIN_STEPS <= len(steps) <= MAX_STEPS or not all(steps):
        raise InvalidRequestError(
            code="invalid_steps",
            count=len([s for s in steps if s]),
            details=[{"field": "steps", "type": "invalid_steps"}],
        )
    return steps


def funnel_report(
    store: EventStore, steps: list[str], span: DateRange, window: timedelta, order: Order
) -> FunnelReport:
    first, last, until = span.first_moment, span.last_moment, span.last_moment + window
    if reads_next_times(steps, order) and isinstance(store, FunnelSeeks):
        # Distinct step names, a store with index seeks: one event per start and step.
        rows = store.funnel_next_times(steps, order == "ordered", first, last)
        tally = compute_funnel_next(rows, steps, window, order)
    elif reads_step_times(order):  # ordered, any: the step events alone, one ordered pass
        times = store.funnel_step_times(steps[0], first, last, until, frozenset(steps))
        tally = compute_funnel_times(times, steps, first, last, window, order)
    else:  # strict: every event of the users with a start (any event breaks a chain)
        candidates = store.funnel_candidates(
            steps[0], first, last, until, names_needed(steps, order)
        )
        tally = compute_funnel(candidates, steps, first, last, window, order)
    return build_report(
        tally, steps=steps, order=order, from_=span.start, to=span.end, window=window
    )


def dashboard_report(
    store: EventStore, span: DateRange, platform: str | None, top: int
) -> DashboardReport:
    return build_dashboard(store, span, platform, top, get_settings().default_funnel)


async def dashboard(
    caller: Principal,
    store: EventStore,
    start: date | None,
    end: date | None,
    platform: str | None,
    top: int,
) -> DashboardReport:
    caller.require_admin()
    span = resolve_range(start, end, today=today_utc())
    return await _query("dashboard", dashboard_report, store, span, platform, top)


async def funnel(
    caller: Principal,
    store: EventStore,
    steps: str | None,
    start: date | None,
    end: date | None,
    window: str | None,
    order: Order,
) -> FunnelReport:
    caller.require_admin()
    step_names = parse_steps(steps)
    span = resolve_range(start, end, today=today_utc())
    length = parse_window(window, limit=MAX_WINDOW) if window is not None else DEFAULT_WINDOW
    return await _query("funnel", funnel_report, store, step_names, span, length, order)


async def cohorts(
    caller: Principal,
    store: EventStore,
    start: date | None,
    end: date | None,
    period: Period,
    periods: int,
) -> CohortReport:
    caller.require_admin()
    today = today_utc()
    default_days = 8 * 7 if period == "week" else 30
    span = resolve_range(start, end, today=today, default_days=default_days)
    return await _query("cohorts", build_cohorts, store, span, period, periods, today)


async def user(
    caller: Principal,
    store: EventStore,
    user_id: str,
    limit: int,
    cursor: str | None,
    start: date | None,
    end: date | None,
    event: str | None,
) -> UserAnalytics:
    caller.require_access_to(user_id)
    span = None
    if start is not None or end is not None:
        # One user's history is small: an open end means "since ever" / "until today", and
        # the report-range cap does not apply.
        span = resolve_range(
            start or date(1970, 1, 1), end or today_utc(), today=today_utc(), max_days=10**6
        )
    return await _query(
        "user_analytics", user_analytics, store, user_id, limit, cursor, span, event
    )


async def export(
    caller: Principal, store: EventStore, user_id: str, fmt: gdpr.ExportFormat
) -> Iterator[str]:
    caller.require_self_or_admin(user_id)
    await _query("record", gdpr.record, store, caller.subject, "export", user_id, format=fmt)
    count("GdprRequests", kind="export")
    return gdpr.export_json(store, user_id) if fmt == "json" else gdpr.export_csv(store, user_id)


async def erase(
    caller: Principal,
    store: EventStore,
    user_id: str,
    hooks: Sequence[gdpr.ErasureHook] = (),
) -> ErasureReport:
    caller.require_self_or_admin(user_id)
    erased = await _query("erase", gdpr.erase, store, caller.subject, user_id, hooks)
    count("GdprRequests", kind="erase")
    return erased


async def audit_log(
    caller: Principal, store: EventStore, limit: int, cursor: str | None, subject: str | None
) -> AuditLogPage:
    caller.require_admin()
    page = await _query("list_audit", store.list_audit, limit, cursor, subject)
    return AuditLogPage(entries=page.entries, nextCursor=page.next_cursor)


async def perf_summary(
    caller: Principal,
    store: EventStore,
    metric: Metric,
    name: str,
    start: date | None,
    end: date | None,
    platform: str | None,
    app_version: str | None,
    device_class: str | None,
) -> PerfSummary:
    caller.require_admin()
    span = resolve_range(start, end, today=today_utc())
    wanted = PerfFilter(metric, name, span.start, span.end, platform, app_version, device_class)
    return await _query("perf_summary", perf.perf_summary, store, wanted)


async def perf_screens(
    caller: Principal,
    store: EventStore,
    start: date | None,
    end: date | None,
    platform: str | None,
    limit: int,
) -> SlowScreens:
    caller.require_admin()
    settings = get_settings()
    span = resolve_range(start, end, today=today_utc(), default_days=settings.perf_regression_days)
    query = ScreensQuery(
        span.start,
        span.end,
        platform,
        threshold=settings.perf_regression_threshold,
        min_count=settings.perf_min_count,
        limit=limit,
    )
    return await _query("perf_screens", perf.slow_screens, store, query)
