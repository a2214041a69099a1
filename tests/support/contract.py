"""Message builders for the contract suite (the shared ones of `tests.support.messages`) and
the January 2026 days the datasets use."""

from __future__ import annotations

from datetime import UTC, datetime

from tests.support.messages import identify, track

__all__ = ["day", "identify", "track"]


def day(d: int, hour: int = 12, minute: int = 0, second: int = 0) -> datetime:
    """A moment in January 2026 (UTC)."""
    return datetime(2026, 1, d, hour, minute, second, tzinfo=UTC)
