"""The forward ledger of the laptop shape: which messages each provider accepted.

Its own SQLite file beside the local forward queues. Entries are kept for `KEEP_DAYS`:
longer than any provider takes an event late (GA4: 72 hours), so a redelivery is still
recognised, and the file stays small.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Collection, Mapping
from datetime import datetime
from pathlib import Path

from mysoulmate.analytics.ports import MessageKey
from mysoulmate.storage.sqlite.connection import CHUNK, open_sqlite, write_transaction

KEEP_DAYS = 7
_SCHEMA = """
CREATE TABLE IF NOT EXISTS forward_ledger (
    provider     TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    message_id   TEXT NOT NULL,
    forwarded_at REAL NOT NULL,
    PRIMARY KEY (provider, user_id, message_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS forward_ledger_by_time ON forward_ledger (forwarded_at);
"""


class SqliteForwardLedger:
    def __init__(self, path: Path) -> None:
        self._conn = open_sqlite(path, synchronous="FULL")
        self._lock = threading.Lock()
        with self._lock:
            self._conn.executescript(_SCHEMA)

    def forwarded(self, provider: str, keys: Collection[MessageKey]) -> set[MessageKey]:
        wanted = sorted(set(keys))
        found: set[MessageKey] = set()
        with self._lock:
            for start in range(0, len(wanted), CHUNK // 2):
                chunk = wanted[start : start + CHUNK // 2]
                pairs = " OR ".join("(user_id = ? AND message_id = ?)" for _ in chunk)
                query = (
                    "SELECT user_id, message_id FROM forward_ledger "  # noqa: S608 - placeholders only
                    f"WHERE provider = ? AND ({pairs})"
                )
                rows = self._conn.execute(query, [provider, *(p for key in chunk for p in key)])
                found.update((user, message) for user, message in rows)
        return found

    def record(self, provider: str, receipts: Mapping[MessageKey, datetime]) -> None:
        """The receipts are not kept: this file is the laptop's, and no erasure reads it."""
        now = time.time()
        with write_transaction(self._conn, self._lock):
            self._conn.executemany(
                "INSERT OR IGNORE INTO forward_ledger VALUES (?,?,?,?)",
                [(provider, user, message, now) for user, message in receipts],
            )
            self._conn.execute(
                "DELETE FROM forward_ledger WHERE forwarded_at < ?", (now - KEEP_DAYS * 86400,)
            )

    def close(self) -> None:
        with self._lock:
            self._conn.close()
