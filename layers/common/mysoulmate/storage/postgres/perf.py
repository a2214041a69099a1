"""Client performance telemetry on PostgreSQL: sketch counters and the perf ledger
(tables `perf_counters` and `perf_ledger`, migration 0009; docs/postgres.md).

`record_perf` is one transaction, in a pipeline (three round trips): the batch's users
share-locked and their tombstones read (`erasures`, as `insert_events` does, so an erasure
either sees the messages' rows or they see its tombstone), an
``INSERT … ON CONFLICT DO NOTHING RETURNING`` of the ledger rows naming the messages never
counted before, and one upsert-add of exactly their counters. Both statements touch their
keys in a fixed order (ledger keys sorted, counters in `perf_sketch.delta_rows` order), and
every transaction takes ledger rows before counters, so consumers recording overlapping
batches queue behind each other instead of deadlocking; a redelivery waits for the ledger
row of the first delivery and then adds nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import date
from typing import TYPE_CHECKING

import psycopg

from mysoulmate.analytics.models import QueuedMessage
from mysoulmate.analytics.perf_sketch import PerfCell, PerfRow, delta_rows
from mysoulmate.analytics.ports import (
    PERF_LEDGER_DAYS,
    MessageKey,
    StorageUnavailableError,
    StoreResult,
)
from mysoulmate.storage.perf_batch import (
    PRUNE_LIMIT,
    PerfBatch,
    PrunePacer,
    all_failed,
    perf_batch,
    perf_result,
)
from mysoulmate.storage.postgres.connection import safe_error
from mysoulmate.storage.postgres.erasures import erased_keys, lock_and_read
from mysoulmate.storage.postgres.pooling import Conn
from mysoulmate.storage.postgres.rollups import _columns
from mysoulmate.storage.postgres.rows import _storable_text

_LEDGER_INSERT = (
    "INSERT INTO perf_ledger (user_id, message_id, received_at) "
    "SELECT * FROM unnest(%s::text[], %s::text[], %s::timestamptz[]) "
    "AS k(user_id, message_id, received_at) "
    "ORDER BY k.user_id, k.message_id ON CONFLICT DO NOTHING RETURNING user_id, message_id"
)
_COUNTERS_ADD = (
    "INSERT INTO perf_counters AS t "
    "(day, metric, name, app_version, platform, device_class, bucket, count) "
    "SELECT day, metric, name, app_version, platform, device_class, bucket, count FROM "
    "unnest(%s::date[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[], "
    "%s::int[], %s::bigint[]) WITH ORDINALITY "
    "AS r(day, metric, name, app_version, platform, device_class, bucket, count, n) "
    "ORDER BY n "
    "ON CONFLICT (metric, name, day, app_version, platform, device_class, bucket) "
    "DO UPDATE SET count = t.count + excluded.count"
)
_PRUNE = (
    "DELETE FROM perf_ledger WHERE (user_id, message_id) IN (SELECT user_id, message_id "
    "FROM perf_ledger WHERE recorded_at < now() - make_interval(days => %s) LIMIT %s)"
)
_ROWS = (
    "SELECT day, metric, name, app_version, platform, device_class, bucket, count "
    "FROM perf_counters WHERE metric = %s AND day BETWEEN %s AND %s"
)


class PostgresPerf:
    """`PerfStore` for `PostgresEventStore`, which supplies `_conn`."""

    _perf_prune: PrunePacer | None = None

    if TYPE_CHECKING:

        def _conn(self) -> AbstractContextManager[Conn]: ...

    def record_perf(self, messages: Sequence[QueuedMessage]) -> StoreResult:
        batch = perf_batch(messages, "postgres")
        new_keys: list[MessageKey] = []
        erased: set[MessageKey] = set()
        if batch.messages:
            try:
                with self._conn() as conn:
                    new_keys, erased = _record(conn, batch)
                    self._prune_perf_ledger(conn)
            except (psycopg.Error, StorageUnavailableError) as exc:
                return all_failed(messages, f"postgres: {safe_error(exc)}")
        return perf_result(messages, new_keys, erased, batch.failed)

    def _prune_perf_ledger(self, conn: Conn) -> None:
        """Delete expired ledger rows now and then, after the batch committed (its own short
        statement: a failure only leaves them for the next prune)."""
        if self._perf_prune is None:
            self._perf_prune = PrunePacer()
        if not self._perf_prune.due():
            return
        try:
            deleted = conn.execute(_PRUNE, (PERF_LEDGER_DAYS, PRUNE_LIMIT)).rowcount
        except psycopg.Error:
            if conn.broken:
                raise
            return
        self._perf_prune.pruned(deleted)

    def perf_rows(self, metric: str, start: date, end: date, name: str | None) -> list[PerfRow]:
        query, args = _ROWS, [metric, start, end]
        if name is not None:
            if not _storable_text(name):
                return []  # nothing of that name can have been stored
            query += " AND name = %s"
            args.append(name)
        try:
            with self._conn() as conn:
                found = conn.execute(query, args).fetchall()
        except psycopg.Error as exc:
            raise StorageUnavailableError(f"postgres: {safe_error(exc)}") from exc
        return [PerfRow(PerfCell(*row[:6]), row[6], row[7]) for row in found]


def _record(conn: Conn, batch: PerfBatch) -> tuple[list[MessageKey], set[MessageKey]]:
    """Record the batch in one transaction: the keys newly counted, and those of the
    messages an erasure recorded at or after their receipt covers."""
    messages = batch.messages
    with conn.pipeline(), conn.transaction():
        erasures = lock_and_read(conn, sorted({m.userId for m in messages.values()}))
        erased = erased_keys(messages.values(), erasures)
        wanted = [key for key in messages if key not in erased]
        if not wanted:
            return [], erased
        users, message_ids = _columns(wanted, 2)
        received = [messages[key].receivedAt for key in wanted]
        inserted = conn.execute(_LEDGER_INSERT, (users, message_ids, received)).fetchall()
        new_keys = [(str(user), str(message_id)) for user, message_id in inserted]
        rows = delta_rows(batch.delta_of(new_keys))
        if rows:
            conn.execute(_COUNTERS_ADD, _columns([(*cell, b, n) for cell, b, n in rows], 8))
    return new_keys, erased
