"""`/api/v1/analytics/*`: track and identify (queued), and a user's events read back."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, status
from fastapi.responses import StreamingResponse

from mysoulmate.analytics import reporting, service
from mysoulmate.analytics.client_models import Accepted, IdentifyRequest, TrackRequest
from mysoulmate.analytics.funnel import FunnelReport
from mysoulmate.analytics.ports import EventStore, MessageQueue
from mysoulmate.analytics.report_models import (
    AuditLogPage,
    CohortReport,
    DashboardReport,
    ErasureReport,
    UserAnalytics,
)
from mysoulmate.api.auth import current_principal
from mysoulmate.api.dependencies import get_queue, get_store
from mysoulmate.api.rate_limit import limit_ingest, limit_read
from mysoulmate.core.principal import Principal
from mysoulmate.core.request_context import request_id_of

router = APIRouter(prefix="/api/v1/analytics", tags=["analytics"])

Caller = Annotated[Principal, Depends(current_principal)]
INGEST = [Depends(limit_ingest)]
READ = [Depends(limit_read)]
Queue = Annotated[MessageQueue, Depends(get_queue)]
Store = Annotated[EventStore, Depends(get_store)]
UserIdPath = Annotated[str, Path(alias="userId", min_length=1, max_length=255)]
From = Annotated[
    date | None, Query(alias="from", description="First UTC day (inclusive), YYYY-MM-DD.")
]
To = Annotated[date | None, Query(alias="to", description="Last UTC day (inclusive).")]
Cursor = Annotated[str | None, Query(max_length=2048)]


@router.post(
    "/track", status_code=status.HTTP_202_ACCEPTED, response_model=Accepted, dependencies=INGEST
)
async def track(body: TrackRequest, request: Request, caller: Caller, queue: Queue) -> Accepted:
    """Queue one event for the signed-in user; 202 once it is durably queued."""
    return await service.accept(body, caller, request_id_of(request.scope), queue)


@router.post(
    "/identify", status_code=status.HTTP_202_ACCEPTED, response_model=Accepted, dependencies=INGEST
)
async def identify(
    body: IdentifyRequest, request: Request, caller: Caller, queue: Queue
) -> Accepted:
    """Queue traits to merge into the user's profile (later values win; traitsOnce fills gaps)."""
    return await service.accept(body, caller, request_id_of(request.scope), queue)


@router.get("/user/{userId}", response_model=UserAnalytics, dependencies=READ)
async def user_analytics(
    caller: Caller,
    store: Store,
    user_id: UserIdPath,
    start: From = None,
    end: To = None,
    event: Annotated[str | None, Query(min_length=1, max_length=255)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Cursor = None,
) -> UserAnalytics:
    """Self or admin: profile, first/last seen, event counts, sessions and events newest
    first (`from`/`to` bound all of them; `event` filters the list); pass `nextCursor` back
    as `cursor` with the same filters."""
    return await reporting.user(caller, store, user_id, limit, cursor, start, end, event)


@router.get("/user/{userId}/export", dependencies=READ)
async def export_user(
    caller: Caller,
    store: Store,
    user_id: UserIdPath,
    format: Annotated[Literal["json", "csv"], Query()] = "json",
) -> StreamingResponse:
    """Self or admin (GDPR art. 15/20): every stored event and the profile, streamed."""
    chunks = await reporting.export(caller, store, user_id, format)
    media = "application/json" if format == "json" else "text/csv; charset=utf-8"
    return StreamingResponse(
        chunks,
        media_type=media,
        headers={
            "Content-Disposition": f'attachment; filename="mysoulmate-export.{format}"',
            "Cache-Control": "no-store",
        },
    )


@router.delete("/user/{userId}", response_model=ErasureReport, dependencies=READ)
async def erase_user(caller: Caller, store: Store, user_id: UserIdPath) -> ErasureReport:
    """Self or admin (GDPR art. 17): erase the user's events and profile; anonymous
    counts stay. Recorded in the audit log."""
    return await reporting.erase(caller, store, user_id)


@router.get("/dashboard", response_model=DashboardReport, dependencies=READ)
async def dashboard(
    caller: Caller,
    store: Store,
    start: From = None,
    end: To = None,
    platform: Annotated[str | None, Query(min_length=1, max_length=32)] = None,
    limit: Annotated[int, Query(ge=1, le=100, description="How many top events.")] = 10,
) -> DashboardReport:
    """Admin: totals, active users, top events, events by day, platforms, revenue and the
    default funnel. Defaults to the last 30 days; at most 366."""
    return await reporting.dashboard(caller, store, start, end, platform, limit)


@router.get("/funnel", response_model=FunnelReport, dependencies=READ)
async def funnel(
    caller: Caller,
    store: Store,
    steps: Annotated[str, Query(max_length=2600, description="2-10 comma-separated event names.")],
    start: From = None,
    end: To = None,
    window: Annotated[
        str | None, Query(max_length=16, description="e.g. 30m, 12h, 7d (default), max 90d.")
    ] = None,
    order: Literal["ordered", "strict", "any"] = "ordered",
) -> FunnelReport:
    """Admin: conversion through the steps; `from`/`to` bound the step-1 event."""
    return await reporting.funnel(caller, store, steps, start, end, window, order)


@router.get("/cohorts", response_model=CohortReport, dependencies=READ)
async def cohorts(
    caller: Caller,
    store: Store,
    start: From = None,
    end: To = None,
    period: Literal["day", "week"] = "week",
    periods: Annotated[int, Query(ge=1, le=reporting.MAX_COHORT_PERIODS)] = 8,
) -> CohortReport:
    """Admin: retention by first-seen period (Monday weeks or UTC days)."""
    return await reporting.cohorts(caller, store, start, end, period, periods)


@router.get("/audit", response_model=AuditLogPage, dependencies=READ)
async def audit_log(
    caller: Caller,
    store: Store,
    subject: Annotated[str | None, Query(min_length=1, max_length=255)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Cursor = None,
) -> AuditLogPage:
    """Admin: GDPR exports and erasures, newest first."""
    return await reporting.audit_log(caller, store, limit, cursor, subject)
