"""The analytics write use case: accept an event or identify once it is durably queued."""

from __future__ import annotations

from datetime import UTC, datetime

from mysoulmate.analytics.bulkheads import QUEUE
from mysoulmate.analytics.client_models import Accepted, IdentifyRequest, TrackRequest
from mysoulmate.analytics.models import QueuedMessage
from mysoulmate.analytics.normalize import queued_message
from mysoulmate.analytics.pii import PiiPolicy
from mysoulmate.analytics.ports import MessageQueue, QueueError
from mysoulmate.core.errors import DependencyUnavailableError
from mysoulmate.core.principal import Principal
from mysoulmate.core.settings import get_settings
from mysoulmate.observability import count


async def enqueue(message: QueuedMessage, queue: MessageQueue) -> None:
    """Return only once the queue has the message durably; a queue that cannot take it is
    the 503 envelope with Retry-After (the client retries with the same messageId)."""
    try:
        await QUEUE.run(queue.send, message.model_dump_json(exclude_none=True))
    except QueueError:
        raise DependencyUnavailableError(
            code="queue_unavailable", headers={"Retry-After": "1"}
        ) from None


async def accept(
    request: TrackRequest | IdentifyRequest,
    principal: Principal,
    request_id: str,
    queue: MessageQueue,
) -> Accepted:
    """Accepted means durable: the 202 is sent only after the queue has the message."""
    settings = get_settings()
    pii = PiiPolicy(enabled=settings.pii_filter, contact_mode=settings.pii_contact_mode)
    message = queued_message(
        request, principal, datetime.now(UTC), request_id, settings.max_future_seconds, pii
    )
    await enqueue(message, queue)
    count("EventsAccepted" if message.type == "track" else "IdentifiesAccepted")
    return Accepted(messageId=message.messageId)
