"""SQLite connections as the embedded store and the local queue both use them."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def open_sqlite(path: Path, *, synchronous: str) -> sqlite3.Connection:
    """A WAL-mode connection shared by threads (callers serialize with a lock)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn
