"""RabbitMQ consumer (the container worker's side of the events queue).

Deliveries arrive on one connection, at most ``prefetch`` unacknowledged at a time; the
worker takes them in batches, stores them, then `settle`s: acks what storage committed and
nacks with requeue what failed (the queue's ``x-delivery-limit`` dead-letters a message
after `MAX_DELIVERIES` deliveries). A delivery neither acked nor nacked when the connection
goes away (a worker killed mid-batch) is delivered again to another consumer.

Every call runs on the thread that created the consumer: pika connections are not
thread-safe. Errors from the connection come out as QueueError (never with the password).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pika.exceptions import AMQPError

from mysoulmate.analytics.ports import QueueError
from mysoulmate.queue.rabbitmq import Topology, close_quietly, connect, describe, safe_reason

if TYPE_CHECKING:
    from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection
    from pika.spec import Basic, BasicProperties


@dataclass(frozen=True, slots=True)
class Delivery:
    tag: int
    body: str
    delivery: int  # 1 on the first delivery, 5 on the last before the dead letters


class RabbitConsumer:
    def __init__(
        self, url: str, *, queue: str, prefetch: int, connection_name: str = "mysoulmate-worker"
    ) -> None:
        self._url = url
        self._name = connection_name
        self.topology = Topology(queue)
        self._prefetch = prefetch
        self._connection: BlockingConnection | None = None
        self._channel: BlockingChannel | None = None
        self._consumer_tag: str | None = None
        self._buffered: list[Delivery] = []
        self._unsettled: set[int] = set()  # taken by a batch, not acked or nacked yet

    @property
    def where(self) -> str:
        return f"{describe(self._url)} queue {self.topology.queue!r}"

    @property
    def connected(self) -> bool:
        return self._connection is not None and self._connection.is_open

    def connect(self) -> None:
        """(Re)connect, declare the topology and start consuming; deliveries held from a
        previous connection are forgotten (the broker delivers them again)."""
        self.close()
        connection = connect(self._url, self._name)
        try:
            channel = connection.channel()
            self.topology.declare(channel)
            channel.basic_qos(prefetch_count=self._prefetch)
            self._consumer_tag = channel.basic_consume(
                self.topology.queue, self._on_message, auto_ack=False
            )
        except AMQPError as exc:
            close_quietly(connection)
            raise self._error("cannot consume", exc) from None
        self._connection, self._channel = connection, channel

    def take(self, limit: int, linger: float) -> list[Delivery]:
        """Up to ``limit`` deliveries: returns once it has ``limit`` or ``linger`` seconds
        have passed (an empty list when nothing came)."""
        connection = self._require_connection()
        deadline = time.monotonic() + linger
        try:
            while len(self._buffered) < limit:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                connection.process_data_events(time_limit=remaining)
        except AMQPError as exc:
            raise self._error("lost the connection", exc) from None
        batch, self._buffered = self._buffered[:limit], self._buffered[limit:]
        self._unsettled.update(d.tag for d in batch)
        return batch

    def settle(
        self, ack: Sequence[int], requeue: Sequence[int], dead_letter: Sequence[int] = ()
    ) -> None:
        """Ack ``ack`` (storage has them) and nack ``requeue`` back into the queue (each
        such return counts as a delivery towards the limit); ``dead_letter`` go straight to
        the dead-letter queue (nack without requeue: they can never succeed). One
        multiple-ack covers a run of acked tags when no tag of this channel below it is
        still outstanding."""
        channel = self._require_channel()
        requeue = [*requeue, *dead_letter]
        try:
            for tag in requeue:
                channel.basic_nack(tag, multiple=False, requeue=tag not in dead_letter)
            if ack and self._only_these_outstanding(ack, requeue):
                channel.basic_ack(max(ack), multiple=True)
            else:
                for tag in ack:
                    channel.basic_ack(tag)
        except AMQPError as exc:
            raise self._error("could not acknowledge", exc) from None
        self._unsettled.difference_update((*ack, *requeue))

    def sleep(self, seconds: float) -> None:
        """Wait while keeping the connection alive (heartbeats); deliveries that arrive
        meanwhile are kept for `take`."""
        connection = self._require_connection()
        try:
            connection.sleep(seconds)
        except AMQPError as exc:
            raise self._error("lost the connection", exc) from None

    def stop_consuming(self) -> list[Delivery]:
        """Stop taking messages: cancel the subscription and return the deliveries already
        received, for the caller to finish and settle. (Any the broker sent after those is
        handed back to the queue by pika, which counts as one delivery.)"""
        connection, channel = self._connection, self._channel
        if connection is not None and channel is not None and self._consumer_tag is not None:
            try:
                connection.process_data_events(time_limit=0)
                channel.basic_cancel(self._consumer_tag)
            except AMQPError:
                pass  # the connection is going: what it held goes back to the queue anyway
            self._consumer_tag = None
        held, self._buffered = self._buffered, []
        self._unsettled.update(d.tag for d in held)
        return held

    def close(self) -> None:
        """Close the connection; what was delivered and not settled goes back to the queue."""
        close_quietly(self._connection)
        self._connection = self._channel = None
        self._consumer_tag = None
        self._buffered = []
        self._unsettled = set()

    # -- internals ------------------------------------------------------------------------

    def _on_message(
        self,
        _channel: BlockingChannel,
        method: Basic.Deliver,
        properties: BasicProperties,
        body: bytes,
    ) -> None:
        headers = properties.headers or {}
        count = headers.get("x-delivery-count", 0)
        previous = count if isinstance(count, int) else 0
        self._buffered.append(
            Delivery(
                tag=int(method.delivery_tag),
                body=body.decode("utf-8", errors="replace"),
                delivery=previous + 1,
            )
        )

    def _only_these_outstanding(self, ack: Sequence[int], nacked: Sequence[int]) -> bool:
        """Whether a multiple-ack up to max(ack) would ack exactly ``ack``: no other
        delivery of this channel at or below it is still unsettled (taken by a batch that
        was not settled, or received and not taken yet); ``nacked`` were just settled."""
        highest = max(ack)
        others = self._unsettled.difference(ack, nacked)
        return all(tag > highest for tag in others) and all(d.tag > highest for d in self._buffered)

    def _require_connection(self) -> BlockingConnection:
        if self._connection is None or not self._connection.is_open:
            raise QueueError(f"rabbitmq: not connected to {self.where}")
        return self._connection

    def _require_channel(self) -> BlockingChannel:
        self._require_connection()
        if self._channel is None or not self._channel.is_open:
            raise QueueError(f"rabbitmq: no open channel to {self.where}")
        return self._channel

    def _error(self, what: str, exc: BaseException) -> QueueError:
        return QueueError(f"rabbitmq: {what} ({self.where}): {safe_reason(exc, self._url)}")
