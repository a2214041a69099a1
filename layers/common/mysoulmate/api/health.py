"""`/health` (liveness) and `/health/ready` (storage and queue reachable)."""

from __future__ import annotations

from typing import Annotated, Literal

import anyio
from fastapi import APIRouter, Depends
from pydantic import BaseModel

from mysoulmate.analytics.bulkheads import QUEUE, STORAGE
from mysoulmate.analytics.ports import EventStore, MessageQueue
from mysoulmate.api import examples
from mysoulmate.api.dependencies import get_queue, get_store
from mysoulmate.api.responses import errors, ok, operation_id
from mysoulmate.api.strict_query import reject_unknown_query
from mysoulmate.core.errors import DependencyUnavailableError
from mysoulmate.core.settings import get_settings

READY_TIMEOUT_SECONDS = 1.5  # /health/ready answers within 2 s even if a dependency hangs
router = APIRouter(
    tags=["health"],
    generate_unique_id_function=operation_id,
    dependencies=[Depends(reject_unknown_query)],
)


class Liveness(BaseModel):
    status: Literal["ok"] = "ok"
    version: str


class Readiness(BaseModel):
    status: Literal["ready"] = "ready"
    checks: dict[str, Literal["ok"]]


@router.get(
    "/health",
    response_model=Liveness,
    summary="Liveness",
    responses={**ok(examples.LIVENESS), **errors()},
)
async def liveness() -> Liveness:
    """The process answers (no dependency is checked): for liveness probes."""
    return Liveness(version=get_settings().app_version)


@router.get(
    "/health/ready",
    response_model=Readiness,
    summary="Readiness",
    responses={**ok(examples.READINESS), **errors(503)},
)
async def readiness(
    store: Annotated[EventStore, Depends(get_store)],
    queue: Annotated[MessageQueue, Depends(get_queue)],
) -> Readiness:
    """Storage and the queue both answer (each within 1.5 s): for readiness probes. 503
    names the failing dependencies in `details.failing`."""
    failing: dict[str, str] = {}
    checks = (("storage", STORAGE, store.ping), ("queue", QUEUE, queue.ping))
    for name, bulkhead, ping in checks:
        # Each check in its dependency's bulkhead and time box: a database that hangs makes
        # the answer 503 within READY_TIMEOUT_SECONDS, never a probe that times out.
        with anyio.move_on_after(READY_TIMEOUT_SECONDS) as timer:
            try:
                await bulkhead.run(ping)
            except Exception as exc:  # noqa: BLE001 - any failure at all means "not ready"
                failing[name] = type(exc).__name__
        if timer.cancelled_caught:
            failing[name] = "Timeout"
    if failing:
        raise DependencyUnavailableError(
            dependency=", ".join(failing), details={"failing": sorted(failing)}
        )
    return Readiness(checks={"storage": "ok", "queue": "ok"})
