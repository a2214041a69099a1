"""Roaring user sets: daily_user_sets and first_seen_sets take over from the dense bitmaps.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-24

- ``daily_user_sets (day, platform, event, chunk, users)``: the sets of ``daily_users`` as
  Roaring bitmaps (`storage.bitmap`, portable serialization) in rows of 2^18 ordinals
  (`rollups.CHUNK_SHIFT`), converted from its dense rows of 2^16 here.
- ``first_seen_sets (day, chunk, users)``: the users whose ``first_seen`` day it is, built
  from ``first_seen`` and ``user_ordinals``, so cohorts read one row per day instead of one
  per user.

Expand, then fence: ``daily_users`` is kept (the previous release, still serving during a
deploy, reads it, and its figures stop at this migration) but a statement trigger refuses
every write to it. So the previous release cannot store a track event, erase a user or link
a visitor behind the new sets' back: such a transaction fails and rolls back whole, and is
retried (the queue redelivers the batch, to the new release once it serves; an erasure or
link request fails and is sent again). The next release drops ``daily_users``, the trigger
and ``first_seen_by_day``. Downgrade drops the new tables: ``daily_users`` then holds the
sets as they were at the upgrade.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from alembic import op

from mysoulmate.storage import bitmap

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen here: the layouts this revision converts from and to.
LEGACY_SHIFT = 16  # daily_users rows (0001)
CHUNK_SHIFT = 18  # rollups.CHUNK_SHIFT at this revision
WRITE_ROWS = 1000

_CREATE = [
    """
    CREATE TABLE daily_user_sets (
        day      date NOT NULL,
        platform text COLLATE "C" NOT NULL,
        event    text COLLATE "C" NOT NULL,
        chunk    integer NOT NULL,
        users    bytea NOT NULL,
        PRIMARY KEY (day, platform, event, chunk)
    )
    """,
    """
    CREATE TABLE first_seen_sets (
        day   date NOT NULL,
        chunk integer NOT NULL,
        users bytea NOT NULL,
        PRIMARY KEY (day, chunk)
    )
    """,
]

_FENCE = [
    """
    CREATE FUNCTION daily_users_retired() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'daily_users is read-only since migration 0010 (user sets are in '
            'daily_user_sets): this release is older than the database schema'
            USING ERRCODE = 'read_only_sql_transaction';
    END
    $$
    """,
    # Per statement: an UPDATE or DELETE that matches no row is refused too.
    "CREATE TRIGGER daily_users_retired BEFORE INSERT OR UPDATE OR DELETE ON daily_users "
    "FOR EACH STATEMENT EXECUTE FUNCTION daily_users_retired()",
]

_DOWNGRADE = [
    "DROP TRIGGER daily_users_retired ON daily_users",
    "DROP FUNCTION daily_users_retired()",
    "DROP TABLE first_seen_sets",
    "DROP TABLE daily_user_sets",
]


def upgrade() -> None:
    for statement in _CREATE:
        op.execute(statement)
    conn = op.get_bind().connection.driver_connection
    _write(
        conn,
        "INSERT INTO daily_user_sets (day, platform, event, chunk, users) "
        "VALUES (%s, %s, %s, %s, %s)",
        _daily_sets(conn),
    )
    _write(
        conn,
        "INSERT INTO first_seen_sets (day, chunk, users) VALUES (%s, %s, %s)",
        _first_seen_sets(conn),
    )
    for statement in _FENCE:
        op.execute(statement)


def downgrade() -> None:
    for statement in _DOWNGRADE:
        op.execute(statement)


def _daily_sets(conn: Any) -> Iterator[tuple[Any, ...]]:
    """daily_users' dense rows, streamed in key order, merged into rows of 2^CHUNK_SHIFT."""
    with conn.cursor(name="legacy_daily_users") as rows:
        rows.itersize = WRITE_ROWS
        rows.execute(
            "SELECT day, platform, event, chunk, bits FROM daily_users "
            "ORDER BY day, platform, event, chunk"
        )
        merged = itertools.groupby(
            rows, key=lambda r: (r[0], r[1], r[2], r[3] >> (CHUNK_SHIFT - LEGACY_SHIFT))
        )
        for key, group in merged:
            users = bitmap.union_all(
                [bitmap.from_dense(bits, chunk << LEGACY_SHIFT) for *_, chunk, bits in group]
            )
            if users:
                yield (*key, bitmap.encode(users))


def _first_seen_sets(conn: Any) -> Iterator[tuple[Any, ...]]:
    """first_seen's users by day, in rows of 2^CHUNK_SHIFT ordinals."""
    with conn.cursor(name="legacy_first_seen") as rows:
        rows.itersize = 10 * WRITE_ROWS
        rows.execute(
            "SELECT f.day, o.ordinal FROM first_seen f "
            "JOIN user_ordinals o ON o.user_id = f.user_id "
            "ORDER BY f.day, o.ordinal"
        )
        by_chunk = itertools.groupby(rows, key=lambda r: (r[0], r[1] >> CHUNK_SHIFT))
        for (day, chunk), group in by_chunk:
            yield day, chunk, bitmap.encode(bitmap.of(ordinal for _, ordinal in group))


def _write(conn: Any, statement: str, rows: Iterable[tuple[Any, ...]]) -> None:
    with conn.cursor() as cursor:
        batch: list[tuple[Any, ...]] = []
        for row in rows:
            batch.append(row)
            if len(batch) == WRITE_ROWS:
                cursor.executemany(statement, batch)
                batch = []
        if batch:
            cursor.executemany(statement, batch)
