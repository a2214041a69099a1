"""`/api/v1/analytics/*`: track and identify (queued), and a user's events read back."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

from fastapi import APIRouter, Body, Depends, Path, Query, Request, status
from fastapi.responses import StreamingResponse

from mysoulmate.analytics import reporting, segment, service
from mysoulmate.analytics.client_models import (
    IDENTIFY_EXAMPLES,
    TRACK_EXAMPLES,
    Accepted,
    IdentifyRequest,
    TrackRequest,
)
from mysoulmate.analytics.funnel import FunnelReport
from mysoulmate.analytics.gdpr import ErasureHook
from mysoulmate.analytics.ports import EventStore, MessageQueue
from mysoulmate.analytics.report_models import (
    AuditLogPage,
    CohortReport,
    DashboardReport,
    ErasureReport,
    UserAnalytics,
)
from mysoulmate.api import examples, segment_docs
from mysoulmate.api import segment as segment_api
from mysoulmate.api.auth import current_principal
from mysoulmate.api.dependencies import get_erasure_hooks, get_queue, get_store
from mysoulmate.api.params import STEPS_PATTERN, From, To
from mysoulmate.api.rate_limit import limit_ingest, limit_read
from mysoulmate.api.responses import (
    ADMIN,
    BEARER,
    INGEST_ERRORS,
    READ_ERRORS,
    errors,
    ok,
    operation_id,
)
from mysoulmate.api.segment import SegmentAnswer
from mysoulmate.api.strict_query import reject_unknown_query
from mysoulmate.core.principal import Principal
from mysoulmate.core.request_context import locale_of, request_id_of

router = APIRouter(
    prefix="/api/v1/analytics",
    tags=["analytics"],
    generate_unique_id_function=operation_id,
    dependencies=[Depends(reject_unknown_query)],
)

Caller = Annotated[Principal, Depends(current_principal)]
INGEST = [Depends(limit_ingest)]
READ = [Depends(limit_read)]
Queue = Annotated[MessageQueue, Depends(get_queue)]
Store = Annotated[EventStore, Depends(get_store)]
UserIdPath = Annotated[str, Path(alias="userId", min_length=1, max_length=255)]
Cursor = Annotated[str | None, Query(max_length=2048)]


@router.post(
    "/track",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=Accepted,
    dependencies=INGEST,
    summary="Track an event",
    responses={**ok(examples.ACCEPTED, 202), **errors(*INGEST_ERRORS)},
    openapi_extra=BEARER,
)
async def track(
    body: Annotated[TrackRequest, Body(openapi_examples=TRACK_EXAMPLES)],
    request: Request,
    caller: Caller,
    queue: Queue,
) -> Accepted:
    """Queue one event done by the signed-in user. The answer is 202 only once the event is
    durably queued; it is stored exactly once per `messageId` (send the same id again to
    retry safely). `timestamp` and `sentAt` (both from the client's clock) correct clock
    skew; `revenue` (with `currency`, default USD) feeds the revenue figures. Secrets are
    dropped and e-mail addresses and phone numbers hashed before queueing (PII policy)."""
    return await service.accept(body, caller, request_id_of(request.scope), queue)


@router.post(
    "/batch",
    response_model=SegmentAnswer,
    dependencies=INGEST,
    summary="Send a batch of messages as the signed-in user",
    responses={**ok(segment_docs.PARTLY_ACCEPTED), **errors(*INGEST_ERRORS)},
    openapi_extra={**BEARER, **segment_docs.request_body(None, write_key=False)},
)
async def batch(request: Request, caller: Caller, queue: Queue) -> SegmentAnswer:
    """Segment's batch format (every message type, up to 2,500 messages and 500 KB, gzip
    accepted) for a signed-in client: each message is the caller's (`userId` may be left
    out); naming another user needs an admin or server token. Valid messages are queued
    even when others are rejected; those are listed with their index and error code."""
    document = await segment_api.read_document(request)
    raw_messages = segment_api.batch_of(document, locale_of(request.scope))
    intake = segment_api.intake(
        request,
        None,
        document,
        acting_user=caller.subject,
        may_act_for_others=caller.may_act_for_others,
    )
    parsed = segment.parse_messages(raw_messages, intake)
    if parsed.messages:
        await segment_api.enqueue(queue, parsed.messages)
    return segment_api.answer(request, parsed, single=False)


@router.post(
    "/identify",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=Accepted,
    dependencies=INGEST,
    summary="Identify the user with traits",
    responses={**ok(examples.ACCEPTED, 202), **errors(*INGEST_ERRORS)},
    openapi_extra=BEARER,
)
async def identify(
    body: Annotated[IdentifyRequest, Body(openapi_examples=IDENTIFY_EXAMPLES)],
    request: Request,
    caller: Caller,
    queue: Queue,
) -> Accepted:
    """Queue traits to merge into the signed-in user's profile: a later value wins per trait
    (by event time, so a late older identify never overwrites), `traitsOnce` only fills
    traits the profile does not have yet. 202 once durably queued."""
    return await service.accept(body, caller, request_id_of(request.scope), queue)


@router.get(
    "/user/{userId}",
    response_model=UserAnalytics,
    dependencies=READ,
    summary="A user's analytics and events",
    responses={**ok(examples.USER_ANALYTICS), **errors(*READ_ERRORS)},
    openapi_extra=BEARER,
)
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


@router.get(
    "/user/{userId}/export",
    dependencies=READ,
    summary="Export a user's data (GDPR)",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "The profile and every event, streamed as a download.",
            "content": {
                "application/json": {"schema": {"type": "object"}, "example": examples.EXPORT},
                "text/csv": {"schema": {"type": "string"}, "example": examples.EXPORT_CSV},
            },
        },
        **errors(*READ_ERRORS),
    },
    openapi_extra=BEARER,
)
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


@router.delete(
    "/user/{userId}",
    response_model=ErasureReport,
    dependencies=READ,
    summary="Erase a user (GDPR)",
    responses={**ok(examples.ERASURE), **errors(*READ_ERRORS)},
    openapi_extra=BEARER,
)
async def erase_user(
    caller: Caller,
    store: Store,
    user_id: UserIdPath,
    hooks: Annotated[Sequence[ErasureHook], Depends(get_erasure_hooks)],
) -> ErasureReport:
    """Self or admin (GDPR art. 17): erase the user's events and profile; anonymous
    counts stay. Recorded in the audit log. The erasure sticks: events of the user received
    before it are never stored afterwards, even if they were still queued, and nothing of
    theirs is forwarded to a provider any more; Mixpanel is asked to delete their data when
    its GDPR token is configured."""
    return await reporting.erase(caller, store, user_id, hooks)


@router.get(
    "/dashboard",
    response_model=DashboardReport,
    dependencies=READ,
    summary="The admin dashboard",
    responses={**ok(examples.DASHBOARD), **errors(*READ_ERRORS)},
    openapi_extra=ADMIN,
)
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


@router.get(
    "/funnel",
    response_model=FunnelReport,
    dependencies=READ,
    summary="A conversion funnel",
    responses={**ok(examples.FUNNEL), **errors(*READ_ERRORS)},
    openapi_extra=ADMIN,
)
async def funnel(
    caller: Caller,
    store: Store,
    steps: Annotated[
        str,
        Query(
            max_length=2600,
            # Documented, not enforced here: a mismatch answers the clearer `invalid_steps`.
            json_schema_extra={"pattern": STEPS_PATTERN},
            description="2-10 comma-separated, non-empty event names.",
        ),
    ],
    start: From = None,
    end: To = None,
    window: Annotated[
        str | None, Query(max_length=16, description="e.g. 30m, 12h, 7d (default), max 90d.")
    ] = None,
    order: Literal["ordered", "strict", "any"] = "ordered",
) -> FunnelReport:
    """Admin: conversion through the steps; `from`/`to` bound the step-1 event."""
    return await reporting.funnel(caller, store, steps, start, end, window, order)


@router.get(
    "/cohorts",
    response_model=CohortReport,
    dependencies=READ,
    summary="Retention cohorts",
    responses={**ok(examples.COHORTS), **errors(*READ_ERRORS)},
    openapi_extra=ADMIN,
)
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


@router.get(
    "/audit",
    response_model=AuditLogPage,
    dependencies=READ,
    summary="The GDPR audit log",
    responses={**ok(examples.AUDIT), **errors(*READ_ERRORS)},
    openapi_extra=ADMIN,
)
async def audit_log(
    caller: Caller,
    store: Store,
    subject: Annotated[str | None, Query(min_length=1, max_length=255)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Cursor = None,
) -> AuditLogPage:
    """Admin: GDPR exports and erasures, newest first."""
    return await reporting.audit_log(caller, store, limit, cursor, subject)
