"""Queue bodies: several messages per body, so a batch costs one queue call per ~240 KiB
of messages, not one per message (SQS takes 256 KiB per message; the rest is headroom)."""

from __future__ import annotations

from mysoulmate.analytics.models import QueuedMessage

QUEUE_BODY_BYTES = 240 * 1024


def queue_bodies(messages: list[QueuedMessage]) -> list[str]:
    """Pack messages into queue bodies of at most `QUEUE_BODY_BYTES` each (one message
    alone keeps the single-message shape)."""
    bodies: list[str] = []
    current: list[str] = []
    size = 0
    for message in messages:
        body = message.model_dump_json(exclude_none=True)
        if current and size + len(body.encode()) + 1 > QUEUE_BODY_BYTES:
            bodies.append(_packed(current))
            current, size = [], 0
        current.append(body)
        size += len(body.encode()) + 1
    if current:
        bodies.append(_packed(current))
    return bodies


def _packed(bodies: list[str]) -> str:
    if len(bodies) == 1:
        return bodies[0]
    # Built as text, as `QueuedBatch` serializes: the messages are serialized already.
    return '{"v":1,"batch":[' + ",".join(bodies) + "]}"
