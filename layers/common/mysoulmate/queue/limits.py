"""SQS's message and batch limits, enforced by every queue adapter so that local behaviour
matches AWS."""

from __future__ import annotations

from collections.abc import Sequence

from mysoulmate.analytics.ports import QueueError

# SQS's limits, enforced by us for every adapter so local behaviour matches AWS.
MAX_MESSAGE_BYTES = 256 * 1024
MAX_BATCH_ENTRIES = 10
MAX_BATCH_BYTES = 256 * 1024


def batches_within_limits(bodies: Sequence[str]) -> list[list[str]]:
    """Split bodies into SendMessageBatch calls of ≤10 entries and ≤256 KiB each."""
    calls: list[list[str]] = []
    current: list[str] = []
    current_bytes = 0
    for body in bodies:
        size = len(body.encode())
        if size > MAX_MESSAGE_BYTES:
            raise QueueError(f"message of {size} bytes exceeds the {MAX_MESSAGE_BYTES}-byte limit")
        if current and (
            len(current) == MAX_BATCH_ENTRIES or current_bytes + size > MAX_BATCH_BYTES
        ):
            calls.append(current)
            current, current_bytes = [], 0
        current.append(body)
        current_bytes += size
    if current:
        calls.append(current)
    return calls
