"""The RabbitMQ dead-letter queue (``<queue>-dlq``), for `mysoulmate dlq list | redrive`.

`peek` takes messages without acknowledging them and then closes the channel, so the
broker puts them all back. `take` holds messages unacknowledged on this connection's
channel (no other consumer sees them meanwhile); `move` publishes one to the events queue,
waits for the broker's confirm, and only then acks it off the DLQ: at least once, never
lost (a crash in between leaves it in both queues; storage is idempotent on messageId).
`release` (or closing) gives back what was taken and not moved.

A republished message carries the original body, content type and application headers; the
broker's own ``x-`` headers (``x-death``, the delivery count) are dropped so that it starts
afresh in the events queue, and ``mysoulmate-redrives`` counts how often it was redriven.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pika
from pika.exceptions import AMQPError

from mysoulmate.analytics.ports import QueueError
from mysoulmate.queue.rabbitmq import (
    MAX_DELIVERIES,
    Topology,
    close_quietly,
    connect,
    describe,
    safe_reason,
)

if TYPE_CHECKING:
    from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection

REDRIVES_HEADER = "mysoulmate-redrives"
_WHY = {
    "delivery_limit": f"delivered {MAX_DELIVERIES} times without being stored",
    "rejected": "rejected by the worker (it can never be stored)",
    "expired": "expired in the queue",
    "maxlen": "pushed out of a full queue",
}


@dataclass(frozen=True)
class BrokerDeadLetter:
    """A message of the DLQ as the broker holds it (``tag`` is valid on this channel only)."""

    tag: int
    body: str
    content_type: str | None
    headers: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        """Stable across listings: the body's digest (the producer sets no message id)."""
        return "sha256:" + hashlib.sha256(self.body.encode()).hexdigest()[:16]

    @property
    def death(self) -> dict[str, Any]:
        deaths = self.headers.get("x-death") or [{}]
        first = deaths[0]
        return first if isinstance(first, dict) else {}

    @property
    def dead_lettered_at(self) -> datetime | None:
        moment = self.death.get("time")
        return moment if isinstance(moment, datetime) else None

    @property
    def deliveries(self) -> int | None:
        """Deliveries before it was dead-lettered, when the reason says so."""
        return MAX_DELIVERIES if self.death.get("reason") == "delivery_limit" else None

    @property
    def why(self) -> str:
        reason = str(self.death.get("reason") or self.headers.get("x-first-death-reason") or "")
        return _WHY.get(reason, f"dead-lettered ({reason or 'no reason recorded'})")


class RabbitDeadLetters:
    """The DLQ of one events queue; one connection, used by one thread."""

    def __init__(
        self, url: str, *, queue: str, connection_name: str = "mysoulmate-cli-dlq"
    ) -> None:
        self._url = url
        self._name = connection_name
        self.topology = Topology(queue)
        self._connection: BlockingConnection | None = None
        self._channel: BlockingChannel | None = None

    @property
    def where(self) -> str:
        return f"RabbitMQ {self.topology.dead_letter_queue!r} on {describe(self._url)}"

    @property
    def target(self) -> str:
        return f"{self.topology.queue!r}"

    def depth(self) -> int:
        """Messages ready in the DLQ (those this object holds are not counted)."""
        channel = self._open()
        try:
            declared = channel.queue_declare(self.topology.dead_letter_queue, passive=True)
        except (AMQPError, OSError) as exc:
            raise self._error("cannot read the dead-letter queue", exc) from None
        return int(declared.method.message_count)

    def peek(self, limit: int) -> list[BrokerDeadLetter]:
        """Up to ``limit`` dead letters, left in the DLQ."""
        try:
            return self.take(limit)
        finally:
            self.release_all()

    def take(self, limit: int) -> list[BrokerDeadLetter]:
        """Up to ``limit`` dead letters, held unacknowledged until moved or released."""
        channel = self._open()
        taken: list[BrokerDeadLetter] = []
        try:
            while len(taken) < limit:
                method, properties, body = channel.basic_get(
                    self.topology.dead_letter_queue, auto_ack=False
                )
                if method is None:
                    break
                taken.append(
                    BrokerDeadLetter(
                        tag=int(method.delivery_tag),
                        body=body.decode("utf-8", errors="replace"),
                        content_type=properties.content_type,
                        headers=dict(properties.headers or {}),
                    )
                )
        except (AMQPError, OSError) as exc:
            self.close()  # what was taken goes back to the DLQ with the channel
            raise self._error("cannot read the dead-letter queue", exc) from None
        return taken

    def move(self, letter: BrokerDeadLetter) -> None:
        """Publish ``letter`` to the events queue (confirmed), then ack it off the DLQ."""
        channel = self._open()
        headers = {k: v for k, v in letter.headers.items() if not k.startswith("x-")}
        headers[REDRIVES_HEADER] = int(letter.headers.get(REDRIVES_HEADER, 0) or 0) + 1
        properties = pika.BasicProperties(
            delivery_mode=2,
            content_type=letter.content_type or "application/json",
            headers=headers,
        )
        try:
            channel.basic_publish(
                "", self.topology.queue, letter.body.encode(), properties, mandatory=True
            )
        except (AMQPError, OSError) as exc:
            self.close()  # the letter was not confirmed: it stays in (goes back to) the DLQ
            raise self._error(f"cannot publish to {self.topology.queue!r}", exc) from None
        try:
            channel.basic_ack(letter.tag)
        except (AMQPError, OSError) as exc:
            # Published and not acked: it is in both queues now (delivered at least once).
            self.close()
            raise self._error("published, but could not remove it from the DLQ", exc) from None

    def release_all(self) -> None:
        """Give back every message taken and not moved (they stay dead letters)."""
        if self._channel is not None and self._channel.is_open:
            try:
                self._channel.basic_nack(0, multiple=True, requeue=True)
            except (AMQPError, OSError):
                self.close()  # closing the channel gives them back all the same

    def close(self) -> None:
        self._channel = None
        close_quietly(self._connection)
        self._connection = None

    def _open(self) -> BlockingChannel:
        if self._channel is not None and self._channel.is_open:
            return self._channel
        self.close()
        self._connection = connect(self._url, self._name)
        try:
            channel = self._connection.channel()
            self.topology.declare(channel)
            channel.confirm_delivery()
        except (AMQPError, OSError) as exc:
            self.close()
            raise self._error(f"cannot declare {self.topology.queue!r}", exc) from None
        self._channel = channel
        return channel

    def _error(self, what: str, exc: BaseException) -> QueueError:
        return QueueError(
            f"rabbitmq: {what} on {describe(self._url)}: {safe_reason(exc, self._url)}"
        )
