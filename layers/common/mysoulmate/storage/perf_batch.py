"""What every backend's `record_perf` shares: one copy of each message key, a message whose
payload cannot be read reported failed (not stored, so the queue retries it and then
dead-letters it) rather than failing the whole batch, the `StoreResult` of the outcome,
and the pacing of the SQL ledgers' prune.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field

from pydantic import ValidationError

from mysoulmate.analytics.models import QueuedMessage
from mysoulmate.analytics.perf_sketch import PerfDelta, perf_delta
from mysoulmate.analytics.ports import MessageKey, StoreResult

# A process deletes expired ledger entries on its first record_perf and then at most once
# per interval, PRUNE_LIMIT rows at a time (a short statement); a prune that hit the limit
# makes the next call prune again, so a backlog drains without one long delete.
PRUNE_INTERVAL_SECONDS = 3600.0
PRUNE_LIMIT = 5_000


@dataclass
class PerfBatch:
    """The first copy of each key whose payload reads, its own delta, and the rest."""

    messages: dict[MessageKey, QueuedMessage] = field(default_factory=dict)
    deltas: dict[MessageKey, PerfDelta] = field(default_factory=dict)
    failed: dict[MessageKey, str] = field(default_factory=dict)

    def delta_of(self, keys: Iterable[MessageKey]) -> PerfDelta:
        """What recording these messages of the batch adds (`perf_sketch.perf_delta`)."""
        total: PerfDelta = Counter()
        for key in keys:
            total.update(self.deltas[key])
        return total


def perf_batch(messages: Sequence[QueuedMessage], backend: str) -> PerfBatch:
    batch = PerfBatch()
    for message in messages:
        key = message.key
        if key in batch.messages or key in batch.failed:
            continue
        try:
            batch.deltas[key] = perf_delta([message])
        except ValidationError as exc:
            batch.failed[key] = f"{backend}: not a perf payload: {exc.errors()[0]['msg']}"
        else:
            batch.messages[key] = message
    return batch


def perf_result(
    messages: Sequence[QueuedMessage],
    new_keys: Collection[MessageKey],
    erased: Collection[MessageKey],
    failed: dict[MessageKey, str],
) -> StoreResult:
    """As `insert_events` counts: every copy of a key neither new, erased nor failed is a
    duplicate (a redelivery, or a repeat within the batch)."""
    skipped = set(erased) | failed.keys()
    rejected = sum(1 for m in messages if m.key in skipped) if skipped else 0
    return StoreResult(
        written=len(new_keys),
        duplicates=len(messages) - len(new_keys) - rejected,
        failed=failed,
        new_keys=set(new_keys),
        erased=set(erased),
    )


def all_failed(messages: Sequence[QueuedMessage], reason: str) -> StoreResult:
    return StoreResult(failed={m.key: reason for m in messages})


class PrunePacer:
    """When this process should prune its ledger (threads share one store)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._next = clock()  # the first record prunes
        self._lock = threading.Lock()

    def due(self) -> bool:
        """True for one caller per interval."""
        with self._lock:
            now = self._clock()
            if now < self._next:
                return False
            self._next = now + PRUNE_INTERVAL_SECONDS
            return True

    def pruned(self, rows: int) -> None:
        """A prune that deleted PRUNE_LIMIT rows left more: prune again on the next call."""
        if rows >= PRUNE_LIMIT:
            with self._lock:
                self._next = self._clock()
