"""SQLite connections as the embedded store and the local queue both use them."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHUNK = 400  # keys per IN (...) list, well under SQLite's variable limit


def open_sqlite(
    path: Path, *, synchronous: str, busy_timeout_seconds: float = 30.0
) -> sqlite3.Connection:
    """A WAL-mode connection shared by threads (callers serialize with a lock).

    ``busy_timeout_seconds``: how long a write waits for another process's lock on the file
    before failing (the local queue waits little: ingest must answer, not hang)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(
        path, check_same_thread=False, isolation_level=None, timeout=busy_timeout_seconds
    )
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_seconds * 1000)}")
    return conn


@contextmanager
def write_transaction(conn: sqlite3.Connection, lock: threading.Lock) -> Iterator[None]:
    """`BEGIN IMMEDIATE` … `COMMIT` under the connection's lock, rolled back on any error.

    IMMEDIATE takes the write lock up front, so two writers never both read and then
    collide on upgrade (SQLITE_BUSY mid-transaction).
    """
    with lock:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")


def rows_by_key(
    conn: sqlite3.Connection, table: str, key: str, column: str, keys: Sequence[str]
) -> dict[str, Any]:
    """``{key: column}`` for the keys with a row in ``table``, in IN lists of `CHUNK`
    (caller holds the lock; ``table``, ``key`` and ``column`` are our constants). With
    several columns (``"a, b"``) each value is the tuple of them."""
    found: dict[str, Any] = {}
    for start in range(0, len(keys), CHUNK):
        chunk = keys[start : start + CHUNK]
        marks = ",".join("?" * len(chunk))
        rows = conn.execute(
            f"SELECT {key}, {column} FROM {table} WHERE {key} IN ({marks})",  # noqa: S608 - constants and placeholders only
            chunk,
        )
        for row in rows:
            found[row[0]] = row[1] if len(row) == 2 else row[1:]
    return found
