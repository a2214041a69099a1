"""Message builders for the contract suite: messages as the consumer receives them, with
random message ids, and the January 2026 days the datasets use."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from mysoulmate.analytics.models import QueuedMessage


def track(
    user: str,
    event: str,
    at: datetime,
    *,
    platform: str | None = "web",
    message_id: str | None = None,
    **properties: Any,
) -> QueuedMessage:
    return QueuedMessage(
        type="track",
        messageId=message_id or uuid.uuid4().hex,
        userId=user,
        event=event,
        timestamp=at,
        receivedAt=at,
        platform=platform,
        properties=properties,
    )


def identify(user: str, at: datetime, **traits: Any) -> QueuedMessage:
    return QueuedMessage(
        type="identify",
        messageId=uuid.uuid4().hex,
        userId=user,
        timestamp=at,
        receivedAt=at,
        traits=traits,
    )


def day(d: int, hour: int = 12, minute: int = 0, second: int = 0) -> datetime:
    """A moment in January 2026 (UTC)."""
    return datetime(2026, 1, d, hour, minute, second, tzinfo=UTC)
