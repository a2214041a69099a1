"""`/health` (liveness) and `/health/ready` (storage and queue reachable)."""

from __future__ import annotations

from typing import Annotated, Literal

import anyio
from fastapi import APIRouter, Depends
from pydantic import BaseModel

from mysoulmate.analytics.bulkheads import QUEUE, STORAGE
from mysoulmate.analytics.ports import EventStore, MessageQueue
from mysoulmate.api.dependencies import get_queue, get_store
from mysoulmate.core.errors import DependencyUnavailableError
from mysoulmate.core.settings import get_settings

READY_TIMEOUT_SECONDS = 1.5  # /health/ready answers within 2 s even if a dependency hangs
router = APIRouter(tags=["health"])


class Liveness(BaseModel):
    status: Literal["ok"] = "ok"
    version: str


class Readiness(BaseModel):
    status: Literal["ready"] = "ready"
    checks: dict[str, Literal["ok"]]


@router.get("/health", response_model=Liveness)
async def liveness() -> Liveness:
    return Liveness(version=get_settings().app_version)


@router.get(
    "/health/ready",
    response_model=Readiness,
    responses={503: {"description": "A dependency is unreachable; the error names it."}},
)
async def readiness(
    store: Annotated[EventStore, Depends(get_store)],
    queue: Annotated[MessageQueue, Depends(get_queue)],
) -> Readiness:
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
