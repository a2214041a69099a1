"""The storage port every backend implements, and the opaque cursor it pages with."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from mysoulmate.analytics.models import EventPage, Profile, QueuedMessage
from mysoulmate.errors import InvalidRequestError

MessageKey = tuple[str, str]  # (userId, messageId)
ProfileUpdate = Callable[[Profile | None], Profile]


@dataclass
class StoreResult:
    """Outcome of one bulk write: ``failed`` maps a message key to why it was not written;
    every other message is stored (exactly once, whether new or a redelivery)."""

    written: int = 0
    duplicates: int = 0
    failed: dict[MessageKey, str] = field(default_factory=dict)


class EventStore(Protocol):
    def insert_events(self, messages: Sequence[QueuedMessage]) -> StoreResult:
        """Store each message once per (userId, messageId); redeliveries are no-ops."""
        ...

    def update_profile(self, user_id: str, update: ProfileUpdate) -> Profile:
        """Apply ``update`` to the stored profile atomically (retrying on conflicts)."""
        ...

    def get_profile(self, user_id: str) -> Profile | None: ...

    def list_events(self, user_id: str, limit: int, cursor: str | None) -> EventPage:
        """The user's events, newest first."""
        ...

    def ping(self) -> None:
        """Raise if the backend cannot serve requests."""
        ...


class StorageUnavailableError(RuntimeError):
    """The storage backend could not be reached or refused the operation."""


def encode_cursor(position: dict[str, Any]) -> str:
    raw = json.dumps(position, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(
    cursor: str, required: set[str], pinned: dict[str, str] | None = None
) -> dict[str, str]:
    """The position a cursor names; a 4xx error for anything we did not issue for this query
    (``pinned``: values the cursor must carry, e.g. the partition key of the user asked for).
    """
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        position = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        position = None
    if (
        not isinstance(position, dict)
        or set(position) != required
        or not all(isinstance(v, str) for v in position.values())
        or any(position[k] != v for k, v in (pinned or {}).items())
    ):
        raise InvalidRequestError(
            code="invalid_cursor", details=[{"field": "cursor", "type": "invalid_cursor"}]
        )
    return position


def time_key(moment: Any) -> str:
    """Fixed-width UTC text whose string order is time order (sort keys, SQL ordering)."""
    return str(moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
