"""The forward ledger on PostgreSQL (containers, Aurora): which messages each provider
accepted, shared by every process that forwards (table `forward_ledger`, migration 0007).

Each call is one statement: `forwarded` joins the keys (two text arrays, unnested) against
the primary key, `record` inserts them with ON CONFLICT DO NOTHING. Entries are kept for
`KEEP_DAYS`, longer than any provider takes an event late (GA4: 72 hours); a process deletes
older ones on its first `record` and then at most once per `PRUNE_INTERVAL_SECONDS`, so the
delete runs a few times an hour across a fleet rather than on every batch.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime

import psycopg

from mysoulmate.analytics.ports import MessageKey, StorageUnavailableError
from mysoulmate.storage.postgres.connection import describe, require_head, safe_error
from mysoulmate.storage.postgres.pooling import Conn, _Connections, _Pool, _ProcessConnection

KEEP_DAYS = 7
PRUNE_INTERVAL_SECONDS = 3600.0

_FORWARDED = (
    "SELECT l.user_id, l.message_id FROM forward_ledger l "
    "JOIN unnest(%s::text[], %s::text[]) AS k(user_id, message_id) "
    "ON l.user_id = k.user_id AND l.message_id = k.message_id "
    "WHERE l.provider = %s"
)
# Rows go in key order: two processes recording overlapping batches (a redelivery) then
# wait for each other instead of deadlocking on each other's uncommitted keys.
_RECORD = (
    "INSERT INTO forward_ledger (provider, user_id, message_id, forwarded_at, received_at) "
    "SELECT %s, k.user_id, k.message_id, now(), k.received_at "
    "FROM unnest(%s::text[], %s::text[], %s::timestamptz[]) "
    "AS k(user_id, message_id, received_at) "
    "ORDER BY k.user_id, k.message_id ON CONFLICT DO NOTHING"
)
_PRUNE = "DELETE FROM forward_ledger WHERE forwarded_at < now() - make_interval(days => %s)"


class PostgresForwardLedger:
    def __init__(
        self,
        conninfo: str,
        *,
        pool_size: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Connect as `PostgresEventStore` does and refuse unless the schema is at head.

        ``pool_size`` None: one reused connection (Lambda); else a pool of that many.
        ``clock`` paces the prune (tests move it on).
        """
        from psycopg_pool import PoolTimeout

        database, host = describe(conninfo)
        try:
            self._connections: _Connections = (
                _ProcessConnection(conninfo) if pool_size is None else _Pool(conninfo, pool_size)
            )
            with self._connections.connection() as conn:
                require_head(conn, conninfo)
        except (psycopg.Error, PoolTimeout) as exc:
            raise StorageUnavailableError(
                f"cannot reach PostgreSQL database {database} on {host}: {safe_error(exc)}"
            ) from None
        self._clock = clock
        self._next_prune = clock()  # the first record prunes
        self._prune_lock = threading.Lock()

    def close(self) -> None:
        self._connections.close()

    @contextmanager
    def _conn(self) -> Iterator[Conn]:
        """A connection; any driver error (unreachable, dropped, refused) becomes
        StorageUnavailableError, so the batch is retried rather than lost."""
        from psycopg_pool import PoolTimeout

        try:
            with self._connections.connection() as conn:
                yield conn
        except (psycopg.Error, PoolTimeout) as exc:
            raise StorageUnavailableError(f"postgres: {safe_error(exc)}") from exc

    def forwarded(self, provider: str, keys: Collection[MessageKey]) -> set[MessageKey]:
        wanted = set(keys)
        if not wanted:
            return set()
        users, messages = _columns(wanted)
        with self._conn() as conn:
            rows = conn.execute(_FORWARDED, (users, messages, provider)).fetchall()
        return {(str(user), str(message)) for user, message in rows}

    def record(self, provider: str, receipts: Mapping[MessageKey, datetime]) -> None:
        if not receipts:
            return
        users, messages = _columns(receipts)
        with self._conn() as conn:
            conn.execute(_RECORD, (provider, users, messages, list(receipts.values())))
            if self._prune_due():
                conn.execute(_PRUNE, (KEEP_DAYS,))

    def _prune_due(self) -> bool:
        """True for one caller per interval in this process (threads share the ledger)."""
        with self._prune_lock:
            now = self._clock()
            if now < self._next_prune:
                return False
            self._next_prune = now + PRUNE_INTERVAL_SECONDS
            return True


def _columns(keys: Collection[MessageKey]) -> tuple[list[str], list[str]]:
    """Keys → the two parallel arrays `unnest` takes."""
    pairs = list(keys)
    return [user for user, _ in pairs], [message for _, message in pairs]
