"""Builders for `QueuedMessage`s as the API would have queued them (validated, in UTC)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

from mysoulmate.analytics.models import QueuedMessage

_ids = itertools.count(1)


def jan(day: int, hour: int = 12, minute: int = 0, second: int = 0) -> datetime:
    """A moment in January 2026 (UTC)."""
    return datetime(2026, 1, day, hour, minute, second, tzinfo=UTC)


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
        messageId=message_id or f"m-{next(_ids):06d}",
        userId=user,
        event=event,
        timestamp=at,
        receivedAt=at,
        platform=platform,
        properties=properties,
    )


def identify(
    user: str, at: datetime, *, message_id: str | None = None, **traits: Any
) -> QueuedMessage:
    return QueuedMessage(
        type="identify",
        messageId=message_id or f"m-{next(_ids):06d}",
        userId=user,
        timestamp=at,
        receivedAt=at,
        traits=traits,
    )
