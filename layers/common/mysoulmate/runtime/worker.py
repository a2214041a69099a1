"""The in-process worker of the laptop shape: drains the local queue into storage.

It runs the consumer's record handler (`IngestBatch`), so what is tested locally is
what runs on Lambda.
"""

from __future__ import annotations

import threading
import time

from mysoulmate.analytics.ingest import IngestBatch, PoisonMessageError
from mysoulmate.analytics.ports import EventStore
from mysoulmate.observability import count, get_logger, observe
from mysoulmate.queue.local import LocalQueue


def drain_once(queue: LocalQueue, store: EventStore, batch_size: int) -> int:
    """Receive one batch, store it, delete what was stored; return messages handled."""
    received = queue.receive(batch_size)
    if not received:
        return 0
    batch = IngestBatch(store)
    receipts: dict[str, str] = {}
    poison = 0
    for message in received:
        try:
            batch.add(message.id, message.body)
            receipts[message.id] = message.receipt
        except PoisonMessageError as exc:
            # Left in the queue: redelivered after the visibility timeout, then dead-lettered.
            get_logger().warning("poison message", extra={"reason": str(exc)})
            poison += 1
    started = time.perf_counter()
    outcome = batch.flush()
    observe("StorageQuery", time.perf_counter() - started, operation="ingest_flush")
    for record_id in outcome.failed_records:
        receipts.pop(record_id, None)
    queue.delete(list(receipts.values()))
    count("EventsStored", outcome.stored)
    count("EventsDeduplicated", outcome.duplicates)
    count("ConsumerRecordFailures", poison + len(outcome.failed_records))
    return len(received)


class LocalWorker:
    def __init__(
        self, queue: LocalQueue, store: EventStore, *, batch_size: int, poll_interval: float
    ) -> None:
        self._queue = queue
        self._store = store
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="local-queue-worker", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        logger = get_logger()
        while not self._stop.is_set():
            try:
                handled = drain_once(self._queue, self._store, self._batch_size)
            except Exception:
                logger.exception("local worker iteration failed; retrying")
                handled = 0
            if not handled:
                self._stop.wait(self._poll_interval)
