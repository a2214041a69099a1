"""Erasure tombstones and the per-user advisory locks that make them stick.

Under READ COMMITTED, "read the tombstone, then insert" alone would race: an erasure's
DELETE cannot see a consumer's uncommitted rows, and the consumer's tombstone read cannot
see an erasure that has not committed yet. So every write about a user first takes a
transaction-scoped advisory lock keyed by the user: shared for ingest and profile updates
(they may run together), exclusive for `delete_user`. Whichever commits first, the other
then sees it: the erasure deletes what the consumer committed, or the consumer (whose
tombstone read is a new statement, hence a new snapshot, after its locks are granted)
finds the tombstone and writes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from mysoulmate.analytics.models import QueuedMessage
from mysoulmate.analytics.ports import MessageKey
from mysoulmate.storage.postgres.pooling import Conn
from mysoulmate.storage.postgres.rows import _utc

# The 64-bit lock key of a user is hashtextextended(user_id, LOCK_SEED): stable across
# sessions and server versions, so every process agrees on it. The seed (b"erase" as an
# integer) keeps it apart from the database's other advisory locks (the migration lock);
# a collision between two users only adds waiting.
LOCK_SEED = 435710686053

# One statement for a whole batch. The ORDER BY in a subquery that keeps its sort (DISTINCT
# and ORDER BY stop it being flattened) fixes the order the locks are taken in: two
# consumers with overlapping users queue instead of deadlocking, whatever an eraser holds.
_LOCK_SHARED = (
    "SELECT pg_advisory_xact_lock_shared(k) FROM (SELECT DISTINCT "
    "hashtextextended(u, %s::bigint) AS k FROM unnest(%s::text[]) AS u ORDER BY 1) AS keys"
)
_LOCK_EXCLUSIVE = (
    "SELECT pg_advisory_xact_lock(k) FROM (SELECT DISTINCT "
    "hashtextextended(u, %s::bigint) AS k FROM unnest(%s::text[]) AS u ORDER BY 1) AS keys"
)
_READ = "SELECT user_id, erased_at FROM erasures WHERE user_id = ANY(%s::text[])"


def lock_and_read(conn: Conn, users: list[str]) -> dict[str, datetime]:
    """Share-lock ``users`` for the current transaction and read their tombstones (user →
    erased_at). Two statements, so the read's snapshot is taken after the locks are granted;
    they travel together when the caller is in a pipeline."""
    conn.execute(_LOCK_SHARED, (LOCK_SEED, users))
    return dict(conn.execute(_READ, (users,)).fetchall())


def erased_at_or_after(conn: Conn, user_id: str, received_at: datetime) -> bool:
    """Share-lock one user and tell whether they were erased at or after ``received_at``."""
    erased_at = lock_and_read(conn, [user_id]).get(user_id)
    return erased_at is not None and _utc(received_at) <= erased_at


def lock_exclusive(conn: Conn, users: list[str]) -> None:
    """Take the locks of ``users`` exclusively for the current transaction, in the same key
    order as `lock_and_read` (so it queues with ingest batches instead of deadlocking)."""
    conn.execute(_LOCK_EXCLUSIVE, (LOCK_SEED, users))


def erased_since(conn: Conn, user_id: str, received_at: datetime) -> bool:
    """Whether ``user_id`` was erased at or after ``received_at``; the caller holds the
    user's lock, so the answer stays true until its transaction ends."""
    row = conn.execute("SELECT erased_at FROM erasures WHERE user_id = %s", (user_id,)).fetchone()
    return row is not None and _utc(received_at) <= row[0]


def lock_for_erasure(conn: Conn, user_id: str, visitors: list[str], erased_at: datetime) -> None:
    """Take the locks of the user and of their linked ``visitors`` exclusively, in the key
    order every writer takes them in (waiting for every write about them in flight to commit,
    and, unlike the user's lock first, never holding one while a batch holds another and waits
    for it: that deadlocked), then record their tombstones."""
    lock_exclusive(conn, [user_id, *visitors])
    record_tombstones(conn, [user_id, *visitors], erased_at)


def record_tombstones(conn: Conn, people: list[str], erased_at: datetime) -> None:
    """The tombstone of each of ``people`` (the caller holds their locks): the erasure's time,
    or the latest receipt among the person's stored events when that is later (what the
    erasure deletes that was sent while it was requested it covers too, so its redelivery is
    refused, not stored and counted again). A later erasure time wins, an earlier one is
    ignored. A linked visitor gets one too, so that a message of theirs received before the
    erasure and still queued is dropped."""
    conn.execute(
        "INSERT INTO erasures AS t (user_id, erased_at) "
        "SELECT person, GREATEST(%s, (SELECT max(received_at) FROM events e "
        "WHERE e.user_id = person)) FROM unnest(%s::text[]) AS person ORDER BY 1 "
        "ON CONFLICT (user_id) DO UPDATE SET erased_at = GREATEST(t.erased_at, excluded.erased_at)",
        (_utc(erased_at), people),
    )


def erased_keys(
    messages: Iterable[QueuedMessage], erasures: Mapping[str, datetime]
) -> set[MessageKey]:
    """Keys of the messages received at or before their user's erasure."""
    if not erasures:  # the usual case: nobody in the batch was ever erased
        return set()
    found: set[MessageKey] = set()
    for m in messages:
        erased_at = erasures.get(m.userId)
        if erased_at is not None and _utc(m.receivedAt) <= erased_at:
            found.add(m.key)
    return found
