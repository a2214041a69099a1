"""`/api/v1/analytics/*`: track and identify (queued), and a user's events read back."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, status

from mysoulmate.analytics import service
from mysoulmate.analytics.client_models import (
    Accepted,
    IdentifyRequest,
    TrackRequest,
    UserEventsPage,
)
from mysoulmate.api.dependencies import get_queue, get_store
from mysoulmate.auth import Principal, current_principal
from mysoulmate.queue.base import MessageQueue
from mysoulmate.request_context import request_id_of
from mysoulmate.storage.base import EventStore

router = APIRouter(prefix="/api/v1/analytics", tags=["analytics"])

Caller = Annotated[Principal, Depends(current_principal)]
Queue = Annotated[MessageQueue, Depends(get_queue)]
Store = Annotated[EventStore, Depends(get_store)]


@router.post("/track", status_code=status.HTTP_202_ACCEPTED, response_model=Accepted)
async def track(body: TrackRequest, request: Request, caller: Caller, queue: Queue) -> Accepted:
    """Queue one event for the signed-in user; 202 once it is durably queued."""
    return await service.accept(body, caller, request_id_of(request.scope), queue)


@router.post("/identify", status_code=status.HTTP_202_ACCEPTED, response_model=Accepted)
async def identify(
    body: IdentifyRequest, request: Request, caller: Caller, queue: Queue
) -> Accepted:
    """Queue traits to merge into the user's profile (later values win; traitsOnce fills gaps)."""
    return await service.accept(body, caller, request_id_of(request.scope), queue)


@router.get("/user/{userId}", response_model=UserEventsPage)
async def user_events(
    caller: Caller,
    store: Store,
    user_id: Annotated[str, Path(alias="userId", min_length=1, max_length=255)],
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=2048)] = None,
) -> UserEventsPage:
    """The user's profile and events, newest first; pass `nextCursor` back as `cursor`."""
    return await service.user_events(user_id, caller, limit, cursor, store)
