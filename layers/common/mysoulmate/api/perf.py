"""`/api/v1/perf*`: the apps' performance measurements in (queued), quantiles out."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Query, Request, status

from mysoulmate.analytics import perf, reporting
from mysoulmate.analytics.perf_models import (
    AppVersion,
    DeviceClass,
    Metric,
    PerfAccepted,
    PerfBatchRequest,
    PerfName,
    PerfSummary,
    SlowScreens,
)
from mysoulmate.analytics.ports import EventStore, MessageQueue
from mysoulmate.api import examples
from mysoulmate.api.auth import current_principal
from mysoulmate.api.dependencies import get_queue, get_store
from mysoulmate.api.params import From, To
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
from mysoulmate.api.strict_query import reject_unknown_query
from mysoulmate.core.principal import Principal
from mysoulmate.core.request_context import request_id_of
from mysoulmate.core.settings import get_settings

router = APIRouter(
    prefix="/api/v1/perf",
    tags=["performance"],
    generate_unique_id_function=operation_id,
    dependencies=[Depends(reject_unknown_query)],
)

Caller = Annotated[Principal, Depends(current_principal)]
Queue = Annotated[MessageQueue, Depends(get_queue)]
Store = Annotated[EventStore, Depends(get_store)]
PlatformFilter = Annotated[
    str | None, Query(min_length=1, max_length=32, description="Only this platform.")
]


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=PerfAccepted,
    dependencies=[Depends(limit_ingest)],
    summary="Send the app's performance measurements",
    responses={**ok(examples.PERF_ACCEPTED, 202), **errors(*INGEST_ERRORS)},
    openapi_extra=BEARER,
)
async def record(
    body: Annotated[PerfBatchRequest, Body(openapi_examples=examples.PERF_BATCH)],
    request: Request,
    caller: Caller,
    queue: Queue,
) -> PerfAccepted:
    """Queue up to 500 measurements taken by the signed-in user's app: screen render time,
    frames per second, dropped frames, named operation timings, app start time, JS bundle
    size, with the app version, platform and device class they were measured on. 202 once
    durably queued; a batch is counted once per `messageId`. Measurements are kept only as
    quantile sketches per day, metric, name, app version, platform and device class, never
    per person."""
    message = perf.perf_message(
        body,
        caller,
        datetime.now(UTC),
        request_id_of(request.scope),
        get_settings().max_future_seconds,
    )
    return await perf.accept_perf(message, queue)


@router.get(
    "/summary",
    response_model=PerfSummary,
    dependencies=[Depends(limit_read)],
    summary="Quantiles of one measurement",
    responses={**ok(examples.PERF_SUMMARY), **errors(*READ_ERRORS)},
    openapi_extra=ADMIN,
)
async def summary(
    caller: Caller,
    store: Store,
    metric: Annotated[Metric, Query(description="What was measured.")],
    name: Annotated[PerfName, Query(description="The screen, operation or bundle.")],
    start: From = None,
    end: To = None,
    platform: PlatformFilter = None,
    app_version: Annotated[
        AppVersion | None, Query(alias="appVersion", description="Only this app version.")
    ] = None,
    device_class: Annotated[
        DeviceClass | None, Query(alias="deviceClass", description="Only this device class.")
    ] = None,
) -> PerfSummary:
    """Admin: p50, p90, p99, count and mean of a metric for one name, over the range, per app
    version and per day and app version (default: the last 30 days; at most 366). Quantiles
    are within `relativeAccuracy` (1 %) of the exact ones; the cost grows with the days
    read, not with the measurements."""
    return await reporting.perf_summary(
        caller, store, metric, name, start, end, platform, app_version, device_class
    )


@router.get(
    "/screens",
    response_model=SlowScreens,
    dependencies=[Depends(limit_read)],
    summary="The slowest screens and their regressions",
    responses={**ok(examples.PERF_SCREENS), **errors(*READ_ERRORS)},
    openapi_extra=ADMIN,
)
async def screens(
    caller: Caller,
    store: Store,
    start: From = None,
    end: To = None,
    platform: PlatformFilter = None,
    limit: Annotated[int, Query(ge=1, le=100, description="How many screens.")] = 10,
) -> SlowScreens:
    """Admin: screens by p90 render time in their latest app version (per platform), each
    with its change since the previous version; `regressed` when it grew by more than
    `PERF_REGRESSION_THRESHOLD` (default 20 %). Default range: the last
    `PERF_REGRESSION_DAYS` days (14)."""
    return await reporting.perf_screens(caller, store, start, end, platform, limit)
