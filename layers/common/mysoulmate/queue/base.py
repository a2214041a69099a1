"""The producer side of the queue port, shared by SQS and the local durable queue."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

# SQS's limits, enforced by us for every adapter so local behaviour matches AWS.
MAX_MESSAGE_BYTES = 256 * 1024
MAX_BATCH_ENTRIES = 10
MAX_BATCH_BYTES = 256 * 1024


class QueueError(RuntimeError):
    """A message could not be made durable in the queue; the caller must not accept it."""


class MessageQueue(Protocol):
    def send(self, body: str) -> None:
        """Return only once the message is durably queued."""
        ...

    def send_batch(self, bodies: Sequence[str]) -> None:
        """Queue many messages; raise QueueError naming any that could not be queued."""
        ...

    def ping(self) -> None:
        """Raise QueueError if the queue cannot take messages."""
        ...


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
