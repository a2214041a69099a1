"""FastAPI dependencies that hand routes their adapters (overridable in tests)."""

from __future__ import annotations

from mysoulmate.backends import event_store, message_queue
from mysoulmate.queue.base import MessageQueue
from mysoulmate.storage.base import EventStore


def get_queue() -> MessageQueue:
    return message_queue()


def get_store() -> EventStore:
    return event_store()
