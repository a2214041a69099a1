"""Client performance telemetry in the embedded store: sketch counters and the perf ledger.

`record_perf` is one IMMEDIATE transaction: the batch's tombstones, an ``INSERT OR IGNORE``
of each message's ledger row (only the rows that really went in are counted), and one
upsert-add of their counters (`perf_sketch.delta_rows`). The ledger row and the counters
commit together, so a redelivery, or a message repeated within a batch, counts once.
Ledger rows are deleted `PERF_LEDGER_DAYS` after they were recorded (`perf_batch` paces it).
The tables are in `schema`.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Sequence
from datetime import date

from mysoulmate.analytics.models import QueuedMessage
from mysoulmate.analytics.perf_sketch import PerfCell, PerfRow, delta_rows
from mysoulmate.analytics.ports import (
    PERF_LEDGER_DAYS,
    MessageKey,
    StorageUnavailableError,
    StoreResult,
    time_key,
)
from mysoulmate.storage.perf_batch import (
    PRUNE_LIMIT,
    PrunePacer,
    all_failed,
    perf_batch,
    perf_result,
)
from mysoulmate.storage.sqlite.connection import rows_by_key, write_transaction

_LEDGER_INSERT = (
    "INSERT OR IGNORE INTO perf_ledger (user_id, message_id, recorded_at, received_at) "
    "VALUES (?,?,?,?)"
)
_COUNTERS_ADD = (
    "INSERT INTO perf_counters VALUES (?,?,?,?,?,?,?,?) ON CONFLICT DO UPDATE "
    "SET count = count + excluded.count"
)
_PRUNE = (
    "DELETE FROM perf_ledger WHERE (user_id, message_id) IN (SELECT user_id, message_id "
    "FROM perf_ledger WHERE recorded_at < ? LIMIT ?)"
)
_ROWS = (
    "SELECT day, metric, name, app_version, platform, device_class, bucket, count "
    "FROM perf_counters WHERE metric = ? AND day BETWEEN ? AND ?"
)


class SqlitePerf:
    """`PerfStore` for `SqliteEventStore`, which supplies the connection and its lock."""

    _conn: sqlite3.Connection
    _lock: threading.Lock
    _perf_prune: PrunePacer | None = None

    def record_perf(self, messages: Sequence[QueuedMessage]) -> StoreResult:
        batch = perf_batch(messages, "sqlite")
        new: list[QueuedMessage] = []
        erased: set[MessageKey] = set()
        now = time.time()
        try:
            with write_transaction(self._conn, self._lock):
                users = sorted({m.userId for m in batch.messages.values()})
                erasures = rows_by_key(self._conn, "erasures", "user_id", "erased_at", users)
                for key, message in batch.messages.items():
                    erased_at = erasures.get(message.userId)
                    if erased_at is not None and time_key(message.receivedAt) <= erased_at:
                        erased.add(key)
                        continue
                    row = (message.userId, message.messageId, now, time_key(message.receivedAt))
                    if self._conn.execute(_LEDGER_INSERT, row).rowcount == 1:
                        new.append(message)
                rows = delta_rows(batch.delta_of(m.key for m in new))
                self._conn.executemany(_COUNTERS_ADD, _counter_args(rows))
                self._prune_perf_ledger(now)
        except sqlite3.Error as exc:
            return all_failed(messages, f"sqlite: {exc}")
        return perf_result(messages, [m.key for m in new], erased, batch.failed)

    def _prune_perf_ledger(self, now: float) -> None:
        """Delete expired ledger rows now and then (caller holds the write transaction)."""
        if self._perf_prune is None:
            self._perf_prune = PrunePacer()
        if self._perf_prune.due():
            cutoff = now - PERF_LEDGER_DAYS * 86400
            self._perf_prune.pruned(self._conn.execute(_PRUNE, (cutoff, PRUNE_LIMIT)).rowcount)

    def perf_rows(self, metric: str, start: date, end: date, name: str | None) -> list[PerfRow]:
        query, args = _ROWS, [metric, start.isoformat(), end.isoformat()]
        if name is not None:
            query += " AND name = ?"
            args.append(name)
        try:
            with self._lock:
                found = self._conn.execute(query, args).fetchall()
        except sqlite3.OperationalError as exc:
            raise StorageUnavailableError(f"sqlite: {exc}") from exc
        return [
            PerfRow(PerfCell(date.fromisoformat(row[0]), *row[1:6]), row[6], row[7])
            for row in found
        ]


def _counter_args(rows: Sequence[PerfRow]) -> list[tuple[object, ...]]:
    """The rows as `_COUNTERS_ADD` parameters; `delta_rows` groups them by cell, so each
    cell's columns (its day as ISO text) are built once, not once per bucket."""
    args: list[tuple[object, ...]] = []
    cell: PerfCell | None = None
    columns: tuple[object, ...] = ()
    for row_cell, bucket, n in rows:
        if row_cell != cell:
            cell = row_cell
            columns = (cell.day.isoformat(), *cell[1:])
        args.append((*columns, bucket, n))
    return args
