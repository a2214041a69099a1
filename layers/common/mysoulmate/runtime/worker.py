"""The in-process worker of the laptop shape: drains the local queue into storage.

It runs the consumer's record handler (`IngestBatch`), so what is tested locally is
what runs on Lambda.
"""

from __future__ import annotations

import threading

from mysoulmate.analytics.ingest import Forward, IngestBatch, PoisonMessageError
from mysoulmate.analytics.ports import EventStore, StorageUnavailableError
from mysoulmate.core.settings import get_settings
from mysoulmate.observability import count, get_logger
from mysoulmate.observability.process_logs import log_batch
from mysoulmate.observability.storage_ops import storage_operation
from mysoulmate.queue.limits import MAX_MESSAGE_BYTES
from mysoulmate.queue.local import LocalQueue, ReceivedMessage


def drain_once(
    queue: LocalQueue, store: EventStore, batch_size: int, forward: Forward | None = None
) -> int:
    """Receive one batch, store it (and hand it to ``forward``, the providers' queues),
    delete what was stored; return messages handled."""
    return handle_batch(queue, store, queue.receive(batch_size), forward)


def handle_batch(
    queue: LocalQueue,
    store: EventStore,
    received: list[ReceivedMessage],
    forward: Forward | None = None,
) -> int:
    """Store a received batch (see `drain_once`); return messages handled."""
    if not received:
        return 0
    batch = IngestBatch(store, forward)
    receipts: dict[str, str] = {}
    failures: dict[str, str] = {}  # receipt -> why, kept for the dead letter
    poison = 0
    for message in received:
        try:
            batch.add(message.id, message.body, delivery=message.receive_count)
            receipts[message.id] = message.receipt
        except PoisonMessageError as exc:
            # Left in the queue: redelivered after the visibility timeout, then dead-lettered.
            get_logger().warning(
                "poison message", extra={"queueMessageId": message.id, "reason": str(exc)}
            )
            failures[message.receipt] = str(exc)
            poison += 1
    with storage_operation("ingest_flush", get_settings().storage_backend) as operation:
        outcome = batch.flush()
        operation.rows = outcome.stored
    log_batch(
        len(received),
        outcome.stored,
        outcome.duplicates,
        outcome.erased,
        poison + len(outcome.failed_records),
        operation.seconds,
    )
    for record_id, reason in outcome.failed_records.items():
        receipt = receipts.pop(record_id, None)
        if receipt is not None:
            failures[receipt] = reason
    queue.record_failures(failures)
    queue.delete(list(receipts.values()))
    count("EventsStored", outcome.stored)
    count("EventsDeduplicated", outcome.duplicates)
    count("EventsErasedDropped", outcome.erased)
    count("ConsumerRecordFailures", poison + len(outcome.failed_records))
    if outcome.failed_records and not outcome.stored and not _store_reachable(store):
        # Nothing could be stored and storage does not answer: an outage, not bad records.
        raise StorageUnavailableError("storage unreachable; the batch stays in the queue")
    return len(received)


MAX_STORAGE_BACKOFF_SECONDS = 5.0
# A receive grows under a backlog only while the doubled batch stays within this many
# characters of bodies, and a grown receive takes no more (500 track events are about 250 KB;
# 100 Segment batches, WORKER_BATCH_SIZE's worst case, up to 25 MB).
GROWTH_BYTES = 4 * 1024 * 1024


def _store_reachable(store: EventStore) -> bool:
    try:
        store.ping()
    except Exception:  # noqa: BLE001 - unreachable, whatever the error
        return False
    return True


class BackgroundLoop:
    """A daemon thread running ``_run`` until `stop` (which waits for it to finish)."""

    thread_name = "background-loop"

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        raise NotImplementedError


class LocalWorker(BackgroundLoop):
    thread_name = "local-queue-worker"

    def __init__(
        self,
        queue: LocalQueue,
        store: EventStore,
        *,
        batch_size: int,
        poll_interval: float,
        forward: Forward | None = None,
        max_batch_size: int | None = None,
    ) -> None:
        super().__init__()
        self._queue = queue
        self._store = store
        self._forward = forward
        self._batch_size = batch_size
        self._max_batch_size = max(batch_size, max_batch_size or batch_size)
        self._poll_interval = poll_interval

    def _run(self) -> None:
        logger = get_logger()
        backoff = 0.0
        size = self._batch_size
        while not self._stop.is_set():
            if backoff:
                # Storage is down: wait for it before receiving again. Every receive counts
                # towards dead-lettering, and an outage must not dead-letter valid messages.
                if not self._storage_back(backoff):
                    backoff = min(backoff * 2, MAX_STORAGE_BACKOFF_SECONDS)
                    continue
                logger.info("storage is back; the local worker resumes")
                backoff = 0.0
            # A grown receive is bounded in characters of bodies too: bodies vary, and a
            # batch's memory must stay within what WORKER_BATCH_SIZE allows.
            budget = GROWTH_BYTES if size > self._batch_size else None
            received_bytes = 0
            try:
                received = self._queue.receive(size, max_bytes=budget)
                received_bytes = sum(len(message.body) for message in received)
                handled = handle_batch(self._queue, self._store, received, self._forward)
            except StorageUnavailableError:
                handled = 0
                backoff = self._poll_interval
            except Exception:
                logger.exception("local worker iteration failed; retrying")
                handled = 0
            cut_short = budget is not None and received_bytes > budget - MAX_MESSAGE_BYTES
            if handled < size and not cut_short:
                # Caught up: let the next batch gather for a poll interval. Under a steady
                # trickle, draining at once made batches of a few messages, each paying a
                # batch's fixed cost (three transactions) for them.
                size = self._batch_size
                self._stop.wait(self._poll_interval)
            elif 2 * received_bytes <= GROWTH_BYTES:
                # A backlog of small messages: take more per receive, up to
                # WORKER_MAX_BATCH_SIZE. A batch's fixed costs (its transactions, the store's
                # WAL commit) then spread over more events: 120-160 us of CPU per event at
                # 100, 80-95 at 500 (docs/performance.md). Large bodies (Segment batches of
                # up to 256 KiB) stop the growth, and the budget bounds a grown batch.
                size = min(size * 2, self._max_batch_size)

    def _storage_back(self, wait: float) -> bool:
        self._stop.wait(wait)
        return _store_reachable(self._store)
