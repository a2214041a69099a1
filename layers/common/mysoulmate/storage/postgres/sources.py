"""Write-key sources in PostgreSQL (table ``sources``, migration 0004).

Lookups are rare (the domain's `WriteKeyCache` answers most), so the store holds one reused
connection (`pooling._ProcessConnection`: checked after an idle spell, and a concurrent call
gets a short-lived one) rather than a pool of its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import psycopg

from mysoulmate.analytics.ports import Source, StorageUnavailableError
from mysoulmate.storage.postgres.connection import describe, require_head, safe_error
from mysoulmate.storage.postgres.pooling import Conn, _ProcessConnection

_COLUMNS = "id, name, kind, key_hint, created_at, revoked_at"


def _utc(moment: datetime) -> datetime:
    """A naive time is taken as UTC (the session's time zone must not decide)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _source(row: tuple[Any, ...]) -> Source:
    source_id, name, kind, hint, created, revoked = row
    return Source(
        id=source_id,
        name=name,
        kind=kind,
        key_hint=hint,
        created_at=created.astimezone(UTC),
        revoked_at=revoked.astimezone(UTC) if revoked is not None else None,
    )


class PostgresSourceStore:
    def __init__(self, conninfo: str) -> None:
        """Connect once and refuse to serve unless the schema is at this release's head."""
        database, host = describe(conninfo)
        self._connections = _ProcessConnection(conninfo)
        try:
            with self._connections.connection() as conn:
                require_head(conn, conninfo)
        except psycopg.Error as exc:
            raise StorageUnavailableError(
                f"cannot reach PostgreSQL database {database} on {host}: {safe_error(exc)}"
            ) from None

    def close(self) -> None:
        self._connections.close()

    @contextmanager
    def _conn(self) -> Iterator[Conn]:
        """A connection; unreachable database or dropped connection → StorageUnavailableError."""
        try:
            with self._connections.connection() as conn:
                yield conn
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            raise StorageUnavailableError(f"postgres: {safe_error(exc)}") from exc

    def create_source(self, source: Source, key_hash: str) -> None:
        revoked = _utc(source.revoked_at) if source.revoked_at else None
        try:
            with self._conn() as conn:
                conn.execute(
                    "INSERT INTO sources (id, name, kind, key_hash, key_hint, created_at, "
                    "revoked_at) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                    (
                        source.id,
                        source.name,
                        source.kind,
                        key_hash,
                        source.key_hint,
                        _utc(source.created_at),
                        revoked,
                    ),
                )
        except psycopg.errors.UniqueViolation:
            raise ValueError(f"source {source.id} or its key already exists") from None

    def find_source(self, key_hash: str) -> Source | None:
        with self._conn() as conn:
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM sources WHERE key_hash = %s",  # noqa: S608 - a constant
                (key_hash,),
            ).fetchone()
        return _source(row) if row else None

    def list_sources(self) -> list[Source]:
        with self._conn() as conn:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM sources ORDER BY created_at, id"  # noqa: S608 - a constant
            ).fetchall()
        return [_source(row) for row in rows]

    def revoke_source(self, source_id: str, revoked_at: datetime) -> Source | None:
        # One statement, so concurrent revocations cannot both "win": COALESCE keeps the first.
        with self._conn() as conn:
            row = conn.execute(
                "UPDATE sources SET revoked_at = COALESCE(revoked_at, %s) WHERE id = %s "
                "RETURNING id, name, kind, key_hint, created_at, revoked_at",
                (_utc(revoked_at), source_id),
            ).fetchone()
        return _source(row) if row else None
