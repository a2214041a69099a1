"""The analytics domain's bulkheads (`core.bulkhead`): storage and the queue each get their
own threads and breaker, so a database that is down or slow never holds a thread that
ingest (`/track`, `/identify`) needs, and both fail fast with 503 while their dependency is
down. Kept in their own small module so the health function can use them without loading
the read side.
"""

from __future__ import annotations

from mysoulmate.analytics.ports import QueueError, StorageUnavailableError
from mysoulmate.core.bulkhead import Bulkhead

STORAGE_CONCURRENCY = 16  # storage calls in flight per process (its pool bounds the rest)
STORAGE_WAIT_SECONDS = 2.0  # for a free slot, then 503
STORAGE_COOLDOWN_SECONDS = 2.0  # after a storage failure, calls fail fast this long

STORAGE = Bulkhead(
    "storage",
    capacity=STORAGE_CONCURRENCY,
    wait_seconds=STORAGE_WAIT_SECONDS,
    cooldown_seconds=STORAGE_COOLDOWN_SECONDS,
    trip_on=(StorageUnavailableError,),
)
# A queue that fails opens the breaker for a second: clients are told to retry at once.
QUEUE = Bulkhead(
    "queue",
    capacity=32,
    wait_seconds=2.0,
    cooldown_seconds=1.0,
    trip_on=(QueueError,),
    code="queue_unavailable",
)
