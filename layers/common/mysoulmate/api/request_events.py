"""Automatic server-side events: with TRACK_API_REQUESTS on, each API request becomes an
`api_request` event of its caller (route template, method, status, duration, locale), and each
error response an `api_error` event (with its code), through the same durable queue as any
event. Sampled by TRACK_API_REQUESTS_SAMPLE_RATE; off by default.

Only signed-in callers are tracked (the event needs a user), and never on the routes that are
themselves ingest, health, metrics or docs. Recording happens after the response is sent;
on Lambda it delays the invocation's end by one enqueue at most, and a queue failure is
counted, never turned into an error for the caller.
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime
from typing import Any

from starlette.types import Scope

from mysoulmate.api.error_handlers import ERROR_CODE_KEY
from mysoulmate.core.request_context import locale_of, request_id_of
from mysoulmate.core.settings import get_settings
from mysoulmate.observability import count, get_logger

# The routes that are themselves ingest (their events are the caller's own).
INGEST_ROUTES = ("/api/v1/analytics/track", "/api/v1/analytics/identify")
NOT_TRACKED_PREFIXES = ("/health", "/metrics", "/api/v1/metrics", "/api-docs")


def wanted(scope: Scope, route: str) -> bool:
    settings = get_settings()
    if not settings.track_api_requests or route in INGEST_ROUTES:
        return False
    if route.startswith(NOT_TRACKED_PREFIXES):
        return False
    principal = scope.get("state", {}).get("principal")
    if principal is None:
        return False
    rate = settings.track_api_requests_sample_rate
    return rate >= 1.0 or random.random() < rate


async def record(
    scope: Scope,
    route: str,
    status: int,
    seconds: float,
) -> None:
    """Queue the request's event; never raises."""
    # Imported only when tracking is on: the i18n and docs functions, which share this
    # middleware, never load the analytics models at cold start.
    from mysoulmate.analytics.bulkheads import QUEUE
    from mysoulmate.analytics.models import QueuedMessage
    from mysoulmate.api.dependencies import get_queue

    now = datetime.now(UTC)
    properties: dict[str, Any] = {
        "route": route,
        "method": scope["method"],
        "status": status,
        "durationMs": round(seconds * 1000, 3),
        "locale": locale_of(scope),
    }
    error_code = scope.get(ERROR_CODE_KEY)
    if error_code is not None:
        properties["code"] = error_code
    try:
        message = QueuedMessage(
            type="track",
            messageId=str(uuid.uuid4()),
            userId=scope["state"]["principal"].subject,
            event="api_error" if status >= 400 else "api_request",
            timestamp=now,
            receivedAt=now,
            platform="server",
            properties=properties,
            requestId=request_id_of(scope),
        )
        queue = await get_queue()
        await QUEUE.run(queue.send, message.model_dump_json(exclude_none=True))
    except Exception as exc:  # noqa: BLE001 - tracking must never fail the request it tracks
        count("ApiRequestEventsDropped")
        get_logger().warning("api request event not queued", extra={"error": type(exc).__name__})
