"""Write-key sources for the laptop shape, in the event store's SQLite file (a table of its
own, so the event store's schema version is untouched).

Times are stored as `time_key` text: fixed-width UTC, so ``ORDER BY created_at`` is time
order, as in the other backends.
"""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path

from mysoulmate.analytics.ports import Source, StorageUnavailableError, time_key
from mysoulmate.storage.sqlite.connection import open_sqlite, write_transaction

SCHEMA = """
CREATE TABLE IF NOT EXISTS sources (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    kind       TEXT NOT NULL CHECK (kind IN ('client', 'server')),
    key_hash   TEXT NOT NULL UNIQUE,
    key_hint   TEXT NOT NULL,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);
"""

_COLUMNS = "id, name, kind, key_hint, created_at, revoked_at"


def _key(moment: datetime) -> str:
    """time_key of an aware time in UTC (a naive one is taken as UTC already)."""
    return time_key(moment.astimezone(UTC) if moment.tzinfo else moment)


def _source(row: tuple[str, str, str, str, str, str | None]) -> Source:
    source_id, name, kind, hint, created, revoked = row
    return Source(
        id=source_id,
        name=name,
        kind=kind,
        key_hint=hint,
        created_at=datetime.fromisoformat(created),
        revoked_at=datetime.fromisoformat(revoked) if revoked else None,
    )


class SqliteSourceStore:
    def __init__(self, path: Path) -> None:
        self._conn = open_sqlite(path, synchronous="NORMAL")
        self._lock = threading.Lock()
        with self._lock:
            self._conn.executescript(SCHEMA)

    def close(self) -> None:
        self._conn.close()

    def create_source(self, source: Source, key_hash: str) -> None:
        row = (
            source.id,
            source.name,
            source.kind,
            key_hash,
            source.key_hint,
            _key(source.created_at),
            _key(source.revoked_at) if source.revoked_at else None,
        )
        try:
            with write_transaction(self._conn, self._lock):
                self._conn.execute("INSERT INTO sources VALUES (?,?,?,?,?,?,?)", row)
        except sqlite3.IntegrityError:
            raise ValueError(f"source {source.id} or its key already exists") from None
        except sqlite3.Error as exc:
            raise StorageUnavailableError(f"sqlite: {exc}") from exc

    def find_source(self, key_hash: str) -> Source | None:
        rows = self._select("WHERE key_hash = ?", (key_hash,))
        return rows[0] if rows else None

    def list_sources(self) -> list[Source]:
        return self._select("ORDER BY created_at, id", ())

    def revoke_source(self, source_id: str, revoked_at: datetime) -> Source | None:
        try:
            with write_transaction(self._conn, self._lock):
                # COALESCE keeps the first revocation time: revoking again changes nothing.
                self._conn.execute(
                    "UPDATE sources SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?",
                    (_key(revoked_at), source_id),
                )
                row = self._conn.execute(
                    f"SELECT {_COLUMNS} FROM sources WHERE id = ?",  # noqa: S608 - a constant
                    (source_id,),
                ).fetchone()
        except sqlite3.Error as exc:
            raise StorageUnavailableError(f"sqlite: {exc}") from exc
        return _source(row) if row else None

    def _select(self, clause: str, params: tuple[str, ...]) -> list[Source]:
        """Sources matching ``clause`` (one of this module's constants)."""
        try:
            with self._lock:
                rows = self._conn.execute(
                    f"SELECT {_COLUMNS} FROM sources {clause}",  # noqa: S608 - constants only
                    params,
                ).fetchall()
        except sqlite3.Error as exc:
            raise StorageUnavailableError(f"sqlite: {exc}") from exc
        return [_source(row) for row in rows]
