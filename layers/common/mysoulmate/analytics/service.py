"""The analytics use cases the routes call: accept (queue) and read back."""

from __future__ import annotations

from datetime import UTC, datetime

from mysoulmate.analytics.client_models import (
    Accepted,
    IdentifyRequest,
    PublicProfile,
    TrackRequest,
    UserEventsPage,
)
from mysoulmate.analytics.normalize import queued_message
from mysoulmate.auth import Principal
from mysoulmate.concurrency import run_blocking
from mysoulmate.errors import DependencyUnavailableError
from mysoulmate.observability import count
from mysoulmate.queue.base import MessageQueue, QueueError
from mysoulmate.settings import get_settings
from mysoulmate.storage.base import EventStore, StorageUnavailableError


async def accept(
    request: TrackRequest | IdentifyRequest,
    principal: Principal,
    request_id: str,
    queue: MessageQueue,
) -> Accepted:
    """Accepted means durable: the 202 is sent only after the queue has the message."""
    max_future = get_settings().max_future_seconds
    message = queued_message(request, principal, datetime.now(UTC), request_id, max_future)
    try:
        await run_blocking(queue.send, message.model_dump_json(exclude_none=True))
    except QueueError:
        raise DependencyUnavailableError(code="queue_unavailable") from None
    count("EventsAccepted" if message.type == "track" else "IdentifiesAccepted")
    return Accepted(messageId=message.messageId)


def _read_user(store: EventStore, user_id: str, limit: int, cursor: str | None) -> UserEventsPage:
    page = store.list_events(user_id, limit, cursor)
    profile = store.get_profile(user_id)
    return UserEventsPage(
        userId=user_id,
        profile=PublicProfile(
            traits=profile.traits,
            anonymousIds=profile.anonymousIds,
            updatedAt=profile.updatedAt,
        )
        if profile
        else None,
        events=page.events,
        nextCursor=page.next_cursor,
    )


async def user_events(
    user_id: str, principal: Principal, limit: int, cursor: str | None, store: EventStore
) -> UserEventsPage:
    principal.require_access_to(user_id)
    try:
        return await run_blocking(_read_user, store, user_id, limit, cursor)
    except StorageUnavailableError:
        raise DependencyUnavailableError(dependency="storage") from None
