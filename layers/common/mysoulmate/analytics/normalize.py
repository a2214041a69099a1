"""From a client's request to the message the queue carries: identity, ids and time."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from mysoulmate.analytics.client_models import IdentifyRequest, TrackRequest
from mysoulmate.analytics.models import QueuedMessage
from mysoulmate.core.errors import ForbiddenError, InvalidRequestError
from mysoulmate.core.principal import Principal


def corrected_timestamp(
    timestamp: datetime | None, sent_at: datetime | None, received_at: datetime
) -> datetime:
    """Undo client clock skew the way Segment does: the client's clock may be wrong, but the
    gap between when it says the event happened and when it says it sent it is right."""
    if timestamp is None:
        return received_at
    if sent_at is None:
        return timestamp
    return received_at - (sent_at - timestamp)


def effective_user_id(body_user_id: str | None, principal: Principal) -> str:
    """The token's subject, unless an admin or server token names another user."""
    if body_user_id is None or body_user_id == principal.subject:
        return principal.subject
    if principal.may_act_for_others:
        return body_user_id
    raise ForbiddenError(code="user_id_mismatch")


def _checked_time(
    request: TrackRequest | IdentifyRequest, received_at: datetime, max_future_seconds: int
) -> datetime:
    timestamp = corrected_timestamp(request.timestamp, request.sentAt, received_at)
    if timestamp - received_at > timedelta(seconds=max_future_seconds):
        raise InvalidRequestError(
            code="timestamp_in_future",
            details=[{"field": "timestamp", "type": "timestamp_in_future"}],
            timestamp=timestamp.isoformat(),
            limit=max_future_seconds,
        )
    return timestamp


def queued_message(
    request: TrackRequest | IdentifyRequest,
    principal: Principal,
    received_at: datetime,
    request_id: str,
    max_future_seconds: int,
) -> QueuedMessage:
    """The self-contained message the queue carries for a track or identify request."""
    common: dict[str, Any] = {
        "messageId": request.messageId or str(uuid.uuid4()),
        "userId": effective_user_id(request.userId, principal),
        "anonymousId": request.anonymousId,
        "timestamp": _checked_time(request, received_at, max_future_seconds),
        "receivedAt": received_at,
        "sentAt": request.sentAt,
        "requestId": request_id,
    }
    if isinstance(request, TrackRequest):
        return QueuedMessage(
            type="track",
            event=request.event,
            properties=request.properties,
            platform=request.platform,
            context=request.context,
            **common,
        )
    return QueuedMessage(
        type="identify", traits=request.traits, traitsOnce=request.traitsOnce, **common
    )
