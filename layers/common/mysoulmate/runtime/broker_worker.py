"""`mysoulmate worker`: the container shape's consumer, a process of its own that drains the
RabbitMQ events queue into storage.

It runs the consumer's record handler (`IngestBatch`), as the SQS Lambda and the laptop's
in-process worker do. Per batch: take up to WORKER_BATCH_SIZE deliveries (waiting at most
WORKER_POLL_INTERVAL_SECONDS for more once the first is in), store them, then ack what
storage committed (stored, duplicate or dropped as erased) and nack with requeue what it
did not, poison records included: after 5 deliveries the broker dead-letters them.

While storage is down the batch in hand is held, neither acked nor nacked, and the worker
waits for storage before it tries again: an outage must not use up deliveries of valid
messages. On SIGTERM or SIGINT it stops taking messages, finishes and acks what it holds,
closes the connection and returns (exit code 0).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import FrameType

from mysoulmate.analytics.ingest import Forward, IngestBatch, PoisonMessageError
from mysoulmate.analytics.ports import EventStore, QueueError, StorageUnavailableError
from mysoulmate.core.settings import Settings
from mysoulmate.observability import count, get_logger, observe
from mysoulmate.observability.process_logs import configure_process_logs, log_batch
from mysoulmate.queue.rabbitmq_consumer import Delivery, RabbitConsumer

MAX_BACKOFF_SECONDS = 5.0


@dataclass
class Settlement:
    """What to do with each delivery of a batch once storage has answered."""

    ack: list[int] = field(default_factory=list)
    requeue: list[int] = field(default_factory=list)
    storage_down: bool = False


def ingest(
    deliveries: Sequence[Delivery], store: EventStore, forward: Forward | None = None
) -> Settlement:
    """Store one batch of deliveries with the consumer's record handler; say which to ack
    and which to hand back. ``storage_down``: nothing was stored and storage does not
    answer, so nothing is settled (the batch is tried again once storage is back)."""
    batch = IngestBatch(store, forward)
    settlement = Settlement()
    added: dict[str, int] = {}
    poison = 0
    for delivery in deliveries:
        record_id = str(delivery.tag)
        try:
            batch.add(record_id, delivery.body, delivery=delivery.delivery)
            added[record_id] = delivery.tag
        except PoisonMessageError as exc:
            get_logger().warning(
                "poison message",
                extra={
                    "deliveryTag": delivery.tag,
                    "delivery": delivery.delivery,
                    "reason": str(exc),
                },
            )
            settlement.requeue.append(delivery.tag)
            poison += 1
    started = time.perf_counter()
    try:
        outcome = batch.flush()
    except Exception as exc:  # noqa: BLE001 - whatever broke, the batch goes back to the queue
        if not isinstance(exc, StorageUnavailableError):
            get_logger().exception("storing the batch failed")
        if not _reachable(store):
            return Settlement(storage_down=True)
        settlement.requeue.extend(added.values())
        return settlement
    seconds = time.perf_counter() - started
    observe("StorageQuery", seconds, operation="ingest_flush")
    for record_id, tag in added.items():
        if record_id in outcome.failed_records:
            settlement.requeue.append(tag)
        else:
            settlement.ack.append(tag)
    if outcome.failed_records and not outcome.stored and not _reachable(store):
        return Settlement(storage_down=True)
    count("EventsStored", outcome.stored)
    count("EventsDeduplicated", outcome.duplicates)
    count("EventsErasedDropped", outcome.erased)
    failures = poison + len(outcome.failed_records)
    count("ConsumerRecordFailures", failures)
    stored, duplicates, erased = outcome.stored, outcome.duplicates, outcome.erased
    log_batch(len(deliveries), stored, duplicates, erased, failures, seconds)
    if outcome.failed_records:
        first = next(iter(outcome.failed_records.values()))
        get_logger().warning(
            "records not stored; handed back to the queue",
            extra={"records": len(outcome.failed_records), "reason": first},
        )
    return settlement


def _reachable(store: EventStore) -> bool:
    try:
        store.ping()
    except Exception:  # noqa: BLE001 - unreachable, whatever the error
        return False
    return True


class BrokerWorker:
    def __init__(
        self,
        consumer: RabbitConsumer,
        store: EventStore,
        *,
        batch_size: int,
        linger: float,
        forward: Forward | None = None,
    ) -> None:
        self._consumer = consumer
        self._store = store
        self._forward = forward
        self._batch_size = batch_size
        self._linger = linger
        # A plain flag: a signal handler must not take locks (threading.Event does).
        self._stopping = False
        self.handled = 0

    def request_stop(self, signum: int | None = None, _frame: FrameType | None = None) -> None:
        """Stop taking messages; the batch in hand is finished (a signal handler)."""
        self._stopping = True

    @property
    def stopping(self) -> bool:
        return self._stopping

    def _pause(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self._stopping and time.monotonic() < deadline:
            time.sleep(min(0.1, seconds))

    def run(self) -> None:
        """Consume until `request_stop`; then finish what is held and close."""
        logger = get_logger()
        backoff = 0.0
        while not self.stopping:
            try:
                if not self._consumer.connected:
                    self._consumer.connect()
                    logger.info("consuming", extra={"queue": self._consumer.where})
                backoff = 0.0
                batch = self._consumer.take(self._batch_size, self._linger)
                if batch:
                    self._settle(batch)
            except QueueError as exc:
                logger.warning("broker unavailable; retrying", extra={"reason": str(exc)})
            except Exception:
                logger.exception("worker iteration failed; retrying")
            else:
                continue
            backoff = min(max(backoff * 2, 0.5), MAX_BACKOFF_SECONDS)
            self._consumer.close()  # what it held goes back to the queue
            self._pause(backoff)
        self._finish()

    def _settle(self, batch: list[Delivery]) -> None:
        """Store the batch and settle it; while storage is down, hold it and wait."""
        backoff = self._linger
        while True:
            settlement = ingest(batch, self._store, self._forward)
            if not settlement.storage_down:
                self._consumer.settle(settlement.ack, settlement.requeue)
                self.handled += len(batch)
                return
            get_logger().warning(
                "storage unreachable; holding the batch until it is back",
                extra={"deliveries": len(batch)},
            )
            while not _reachable(self._store):
                if self.stopping:
                    # Not stored and not settled: closing hands the batch back to the queue.
                    return
                self._hold(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
            get_logger().info("storage is back; the worker resumes")

    def _hold(self, seconds: float) -> None:
        """Wait ``seconds`` (less once asked to stop) on the broker connection: its
        heartbeats go on, and the deliveries it holds are neither acked nor returned."""
        deadline = time.monotonic() + seconds
        while not self._stopping and (left := deadline - time.monotonic()) > 0:
            self._consumer.sleep(min(left, 0.25))

    def _finish(self) -> None:
        """Graceful stop: no new messages; what was received is stored, settled, closed."""
        try:
            if self._consumer.connected:
                held = self._consumer.stop_consuming()
                for start in range(0, len(held), self._batch_size):
                    self._settle(held[start : start + self._batch_size])
        except QueueError as exc:
            get_logger().warning("could not settle on shutdown", extra={"reason": str(exc)})
        finally:
            self._consumer.close()
        get_logger().info("worker stopped", extra={"handled": self.handled})


def run_worker(settings: Settings, store: EventStore) -> int:
    """The `mysoulmate worker` process: consume until SIGTERM or SIGINT, then exit 0.

    Stored messages are forwarded to the configured providers through their own queues on
    the broker, drained by a thread per provider (runtime/broker_forwarding.py)."""
    from mysoulmate.runtime.broker_forwarding import broker_forwarding

    configure_process_logs(settings.log_level, settings.log_format)  # a line per batch
    if settings.worker_metrics_port:
        from mysoulmate.observability.prometheus import serve_metrics

        try:
            serve_metrics(settings.worker_metrics_port)
        except OSError as exc:  # a taken port costs the metrics, not the consuming
            get_logger().warning(
                "worker metrics not served",
                extra={"port": settings.worker_metrics_port, "reason": str(exc)},
            )
    forward, forwarders = broker_forwarding(store, settings)
    consumer = RabbitConsumer(
        settings.rabbitmq_url,
        queue=settings.rabbitmq_queue,
        prefetch=settings.worker_batch_size,
    )
    worker = BrokerWorker(
        consumer,
        store,
        batch_size=settings.worker_batch_size,
        linger=settings.worker_poll_interval_seconds,
        forward=forward,
    )
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, worker.request_stop)
    get_logger().info(
        "worker started",
        extra={"queue": consumer.where, "batchSize": settings.worker_batch_size},
    )
    for forwarder in forwarders:
        forwarder.start()
    try:
        worker.run()
    finally:
        for forwarder in forwarders:
            forwarder.stop()
    return 0
