"""Forwarding in the container shape: each provider's queue on the broker, shared by every
worker pod, drained by one thread per provider in each `mysoulmate worker`.

The consumer appends what it stored to ``<RABBITMQ_QUEUE>-forward-<provider>`` (a quorum
queue with its own dead-letter queue, declared like the events queue) with publisher
confirms, so nothing depends on a pod's disk. A forward thread takes a batch and hands it
to the provider's `Forwarder` (erasure and opt-out checked at send time, retries,
Retry-After, circuit breaker, the ledger in the database):

* sent, or skipped on purpose: acknowledged;
* the provider is unavailable: the batch is **held** (neither acknowledged nor returned, so
  it costs no delivery) and tried again when the breaker lets a call through; an hour's
  outage holds one batch per pod and loses nothing. Only a pod that dies, or RabbitMQ's
  consumer timeout (30 minutes by default), returns it to the queue: one delivery each;
* refused for good, or unreadable: dead-lettered at once (nack without requeue).
"""

from __future__ import annotations

from mysoulmate.analytics.ingest import Forward
from mysoulmate.analytics.ports import QueueError
from mysoulmate.core.settings import Settings
from mysoulmate.observability import count, get_logger
from mysoulmate.providers.forwarder import Forwarder
from mysoulmate.providers.ports import ForwardGuard
from mysoulmate.queue.rabbitmq import RabbitQueue
from mysoulmate.queue.rabbitmq_consumer import Delivery, RabbitConsumer
from mysoulmate.runtime.forwarding import enqueue_hook, forwarders, parse_forward_batch
from mysoulmate.runtime.worker import BackgroundLoop

HOLD_SECONDS = 5.0  # between tries of a held batch (the breaker decides the rest)
MAX_BACKOFF_SECONDS = 30.0


def forward_queue_name(settings: Settings, provider: str) -> str:
    return f"{settings.rabbitmq_queue}-forward-{provider}"


class BrokerForwardWorker(BackgroundLoop):
    """One provider's forward queue, drained on a thread of its own (its own connection:
    pika connections are not thread-safe)."""

    def __init__(self, forwarder: Forwarder, settings: Settings) -> None:
        super().__init__()
        name = forwarder.provider.name
        self.thread_name = f"forward-{name}"
        self._forwarder = forwarder
        self._batch_size = settings.worker_batch_size
        self._linger = settings.worker_poll_interval_seconds
        self._consumer = RabbitConsumer(
            settings.rabbitmq_url,
            queue=forward_queue_name(settings, name),
            prefetch=settings.worker_batch_size,
            connection_name=f"mysoulmate-forward-{name}",
        )

    def _run(self) -> None:
        held: list[Delivery] = []
        backoff = 0.0
        while not self._stop.is_set():
            try:
                if not self._consumer.connected:
                    held = []  # a new connection: the broker delivers them again
                    self._consumer.connect()
                resting = self._forwarder.open_for()
                if resting > 0:
                    self._consumer.sleep(min(resting, HOLD_SECONDS))
                    continue
                batch = held or self._consumer.take(self._batch_size, self._linger)
                held = self._forward(batch) if batch else []
                if held:
                    self._consumer.sleep(HOLD_SECONDS)
                backoff = 0.0
            except QueueError as exc:
                get_logger().warning("forward queue unavailable", extra={"reason": str(exc)})
                backoff = min(max(backoff * 2, 0.5), MAX_BACKOFF_SECONDS)
                self._consumer.close()
                self._stop.wait(backoff)
            except Exception:  # noqa: BLE001 - the thread must outlive any one batch
                get_logger().exception("forward worker iteration failed; retrying")
                self._consumer.close()
                self._stop.wait(HOLD_SECONDS)
        self._consumer.close()  # what is held goes back to the queue for another pod

    def _forward(self, batch: list[Delivery]) -> list[Delivery]:
        """Forward ``batch``; return it when it must be held (provider unavailable)."""
        parsed = parse_forward_batch(batch, lambda delivery: delivery.body)
        readable = parsed.readable
        unreadable = [delivery.tag for delivery, _ in parsed.unreadable]
        name = self._forwarder.provider.name
        outcome = self._forwarder.forward(parsed.messages) if parsed.messages else None
        if outcome is not None and outcome.deferred:
            if unreadable:
                self._consumer.settle([], [], dead_letter=unreadable)
                count("ForwardDeadLettered", len(unreadable), provider=name)
            return readable
        tags = [d.tag for d in readable]
        if outcome is not None and outcome.rejected:
            self._consumer.settle([], [], dead_letter=[*tags, *unreadable])
            count("ForwardDeadLettered", len(tags) + len(unreadable), provider=name)
        else:
            self._consumer.settle(tags, [], dead_letter=unreadable)
            if unreadable:
                count("ForwardDeadLettered", len(unreadable), provider=name)
        return []


def broker_forwarding(
    guard: ForwardGuard, settings: Settings
) -> tuple[Forward | None, list[BrokerForwardWorker]]:
    """The consumer's forward hook (into each provider's broker queue) and the threads that
    drain them; nothing when no provider is configured."""
    chosen = forwarders(guard, settings)
    if not chosen:
        return None, []
    queues = [
        RabbitQueue(
            settings.rabbitmq_url,
            queue=forward_queue_name(settings, f.provider.name),
            connection_name=f"mysoulmate-worker-forward-{f.provider.name}",
        )
        for f in chosen
    ]
    for queue in queues:
        queue.declare()  # before consuming: an unreachable broker stops start-up here
    return enqueue_hook(queues), [BrokerForwardWorker(f, settings) for f in chosen]
