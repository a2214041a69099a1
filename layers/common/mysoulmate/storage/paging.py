"""The opaque keyset cursor every storage backend pages with."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from typing import Any

from mysoulmate.core.errors import InvalidRequestError


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


def next_page_cursor(
    rows: Sequence[Any], limit: int, position: Callable[[Any], dict[str, str]]
) -> str | None:
    """Keyset pagination for every backend: callers read ``limit + 1`` rows, and the extra
    one only says whether another page exists, so the last page has no cursor. The cursor
    is the position of the last row served."""
    return encode_cursor(position(rows[limit - 1])) if len(rows) > limit else None
