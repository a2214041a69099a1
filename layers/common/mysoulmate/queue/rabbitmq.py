"""RabbitMQ producer (the container shape): quorum queues, publisher confirms, dead letters.

Semantics match the SQS adapter: `send` and `send_batch` return only once the broker has
confirmed every message (a quorum queue confirms once a majority of its replicas has it on
disk), publishes are ``mandatory`` (a message no queue takes is an error, not a silent drop)
and persistent. The topology is declared idempotently whenever a connection opens:

* ``<queue>``: durable quorum queue; ``x-delivery-limit`` makes the broker dead-letter a
  message after `MAX_DELIVERIES` deliveries (RabbitMQ 3.10 counts every return, a nack with
  requeue or a consumer that went away without acking, and dead-letters when that count
  exceeds the limit: limit ``MAX_DELIVERIES - 1`` is ``MAX_DELIVERIES`` deliveries);
* ``<queue>-dlx``: direct exchange the dead letters go through, at least once
  (``x-dead-letter-strategy``), into ``<queue>-dlq``, a durable quorum queue.

pika connections are not thread-safe and the API publishes from several threads: each
call checks a connection out of a small pool, uses it alone and puts it back. pika is
imported only here (and by the consumer), so only ``QUEUE_BACKEND=rabbitmq`` pays for it.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import unquote, urlsplit

import pika
from pika.exceptions import (
    AMQPChannelError,
    AMQPConnectionError,
    AMQPError,
    NackError,
)

from mysoulmate.analytics.ports import QueueError
from mysoulmate.queue.limits import MAX_MESSAGE_BYTES

if TYPE_CHECKING:
    from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection

T = TypeVar("T")

MAX_DELIVERIES = 5  # a message is delivered at most this often, then dead-lettered
HEARTBEAT_SECONDS = 30  # a dead broker is noticed within about two of these
CONNECT_TIMEOUT_SECONDS = 5.0
# A broker that blocks publishers (memory or disk alarm) fails the publish after this long.
BLOCKED_TIMEOUT_SECONDS = 10.0
# A pooled connection idle this long is replaced rather than trusted: nothing drives its
# heartbeats while it waits, and the broker drops it after two missed ones.
IDLE_SECONDS = 20.0
MAX_IDLE_CONNECTIONS = 32
NACK_RETRY_SECONDS = 0.2
PERSISTENT = pika.BasicProperties(delivery_mode=2, content_type="application/json")
# What says the connection or channel is gone (a channel error closes the channel) and a
# fresh one may succeed; UnroutableError (the queue was deleted) is one of them.
_RECONNECT_ON = (AMQPConnectionError, AMQPChannelError, OSError)


@dataclass(frozen=True, slots=True)
class Topology:
    """The events queue and its dead-letter exchange and queue, named after it."""

    queue: str

    @property
    def dead_letter_exchange(self) -> str:
        return f"{self.queue}-dlx"

    @property
    def dead_letter_queue(self) -> str:
        return f"{self.queue}-dlq"

    def queue_arguments(self) -> dict[str, Any]:
        return {
            "x-queue-type": "quorum",
            "x-delivery-limit": MAX_DELIVERIES - 1,
            "x-dead-letter-exchange": self.dead_letter_exchange,
            "x-dead-letter-routing-key": self.dead_letter_queue,
            # Dead letters are confirmed into the DLQ before they leave the queue: an
            # accepted event is never lost, not even on its way to the dead letters.
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",  # what at-least-once dead-lettering requires
        }

    def declare(self, channel: BlockingChannel) -> None:
        """Create what is missing; a no-op when everything exists as declared."""
        channel.exchange_declare(self.dead_letter_exchange, "direct", durable=True)
        channel.queue_declare(
            self.dead_letter_queue, durable=True, arguments={"x-queue-type": "quorum"}
        )
        channel.queue_bind(
            self.dead_letter_queue, self.dead_letter_exchange, routing_key=self.dead_letter_queue
        )
        channel.queue_declare(self.queue, durable=True, arguments=self.queue_arguments())


def describe(url: str) -> str:
    """The broker's URL as logs and errors may show it: never the password."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "localhost"
        port = parts.port or (5671 if parts.scheme == "amqps" else 5672)
    except ValueError:
        return "an invalid RABBITMQ_URL"
    user = f"{unquote(parts.username)}@" if parts.username else ""
    vhost = unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
    return f"{parts.scheme}://{user}{host}:{port} vhost {vhost!r}"


def safe_reason(exc: BaseException, url: str) -> str:
    """An error's text for logs and QueueError, with the URL's password removed if any
    layer put it there."""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    password = _password(url)
    return text.replace(password, "***") if password else text


def _password(url: str) -> str:
    try:
        password = urlsplit(url).password
    except ValueError:
        return ""
    return unquote(password) if password else ""


def connect(url: str, name: str, *, heartbeat: int = HEARTBEAT_SECONDS) -> BlockingConnection:
    """A blocking connection to ``url`` named ``name`` (shown by the broker's tools);
    raise QueueError, without the password, when it cannot be opened."""
    try:
        params = pika.URLParameters(url)
        params.heartbeat = heartbeat
        params.socket_timeout = CONNECT_TIMEOUT_SECONDS
        params.stack_timeout = CONNECT_TIMEOUT_SECONDS * 2
        params.blocked_connection_timeout = BLOCKED_TIMEOUT_SECONDS
        params.connection_attempts = 1
        params.client_properties = {"connection_name": name}
        return pika.BlockingConnection(params)
    except (AMQPError, OSError, ValueError) as exc:
        raise QueueError(
            f"rabbitmq: cannot connect to {describe(url)}: {safe_reason(exc, url)}"
        ) from None


def close_quietly(connection: BlockingConnection | None) -> None:
    if connection is None or not connection.is_open:
        return
    with contextlib.suppress(AMQPError, OSError):  # already going away: nothing to hand back
        connection.close()


@dataclass
class _Link:
    connection: BlockingConnection
    channel: BlockingChannel
    used_at: float


class RabbitQueue:
    """The producer side of the events queue (the `MessageQueue` port)."""

    def __init__(self, url: str, *, queue: str, connection_name: str = "mysoulmate-api") -> None:
        self._url = url
        self._name = connection_name
        self.topology = Topology(queue)
        self._idle: list[_Link] = []
        self._lock = threading.Lock()

    @property
    def where(self) -> str:
        return f"{describe(self._url)} queue {self.topology.queue!r}"

    # -- the port -----------------------------------------------------------------------

    def send(self, body: str) -> None:
        self.send_batch([body])

    def send_batch(self, bodies: Sequence[str]) -> None:
        payloads = [body.encode() for body in bodies]
        for payload in payloads:
            if len(payload) > MAX_MESSAGE_BYTES:
                raise QueueError(
                    f"message of {len(payload)} bytes exceeds the {MAX_MESSAGE_BYTES}-byte limit"
                )
        if not payloads:
            return
        state = _Publishing(payloads, self.topology.queue)
        self._run(state.publish_rest)
        if state.failed:
            raise QueueError(
                f"rabbitmq: {len(state.failed)} of {len(payloads)} message(s) not queued "
                f"in {self.topology.queue!r}: {state.failed[0]}"
            )

    def ping(self) -> None:
        self._run(lambda channel: channel.queue_declare(self.topology.queue, passive=True))

    # -- connections ----------------------------------------------------------------------

    def declare(self) -> None:
        """Open a connection now (declaring the topology): start-up fails early and clearly
        when the broker cannot be reached or holds the queues with other arguments."""
        self._run(lambda channel: None)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for link in idle:
            close_quietly(link.connection)

    def _run(self, action: Callable[[BlockingChannel], T]) -> T:
        """``action`` on a channel of its own; once more on a fresh connection when the one
        it had turns out closed (or the queue was deleted since it was declared)."""
        link = self._checkout()
        try:
            result = action(link.channel)
        except _RECONNECT_ON:
            close_quietly(link.connection)
            link = self._open()
            try:
                result = action(link.channel)
            except (AMQPError, OSError) as exc:
                close_quietly(link.connection)
                raise QueueError(f"rabbitmq: {safe_reason(exc, self._url)}") from None
        except (AMQPError, OSError) as exc:
            close_quietly(link.connection)
            raise QueueError(f"rabbitmq: {safe_reason(exc, self._url)}") from None
        self._checkin(link)
        return result

    def _checkout(self) -> _Link:
        with self._lock:
            link = self._idle.pop() if self._idle else None
        if link is not None:
            if time.monotonic() - link.used_at < IDLE_SECONDS and link.channel.is_open:
                return link
            close_quietly(link.connection)
        return self._open()

    def _checkin(self, link: _Link) -> None:
        link.used_at = time.monotonic()
        with self._lock:
            if len(self._idle) < MAX_IDLE_CONNECTIONS:
                self._idle.append(link)
                return
        close_quietly(link.connection)

    def _open(self) -> _Link:
        connection = connect(self._url, self._name)
        try:
            channel = connection.channel()
            self.topology.declare(channel)
            channel.confirm_delivery()
        except (AMQPError, OSError) as exc:
            close_quietly(connection)
            raise QueueError(
                f"rabbitmq: cannot declare {self.topology.queue!r} on {describe(self._url)}: "
                f"{safe_reason(exc, self._url)}"
            ) from None
        return _Link(connection, channel, time.monotonic())


class _Publishing:
    """One `send_batch`: what is confirmed so far survives a reconnect (no message is sent
    twice by us; a redelivered duplicate is harmless anyway: storage is idempotent)."""

    def __init__(self, payloads: list[bytes], queue: str) -> None:
        self._payloads = payloads
        self._queue = queue
        self._next = 0
        self.failed: list[str] = []

    def publish_rest(self, channel: BlockingChannel) -> None:
        while self._next < len(self._payloads):
            payload = self._payloads[self._next]
            try:
                self._publish(channel, payload)
            except NackError:
                # Refused, e.g. while a quorum queue elects its leader (just declared, or a
                # node restarted): one more try after a pause, then this one has failed and
                # the others may still be taken.
                time.sleep(NACK_RETRY_SECONDS)
                try:
                    self._publish(channel, payload)
                except NackError:
                    self.failed.append("the broker refused the message (nack)")
            self._next += 1

    def _publish(self, channel: BlockingChannel, payload: bytes) -> None:
        channel.basic_publish("", self._queue, payload, properties=PERSISTENT, mandatory=True)
