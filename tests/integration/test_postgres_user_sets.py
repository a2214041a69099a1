"""PostgreSQL-specific: migration 0010 converts the dense ``daily_users`` bitmaps (rows of
2^16 ordinals) to Roaring rows of 2^18 in ``daily_user_sets``, builds ``first_seen_sets``,
and fences ``daily_users`` so that a previous release still running cannot write sets
behind the new ones' back."""

from __future__ import annotations

import itertools
from datetime import date

import psycopg
import pytest
from mysoulmate.storage import bitmap
from mysoulmate.storage.postgres.connection import HEAD_REVISION
from mysoulmate.storage.postgres.migrate import migrate
from mysoulmate.storage.postgres.store import PostgresEventStore

from tests.support.messages import jan, track
from tests.support.postgres import alembic, scratch_database

DAY, NEXT = date(2026, 1, 2), date(2026, 1, 3)
# ordinal → user; 5 is an erasure's tombstone. 70,000 and 300,000 sit in legacy chunks 1 and 4,
# which become rows 0 and 1 of 2^18 ordinals.
PEOPLE = {0: "ann", 1: "bob", 5: None, 70_000: "cy", 300_000: "dee"}


def legacy_chunks(ordinals: list[int]) -> dict[int, bytes]:
    """The dense layout of 0001: per chunk of 2^16, bit n = ordinal chunk * 2^16 + n."""
    chunks: dict[int, int] = {}
    for ordinal in ordinals:
        chunks[ordinal >> 16] = chunks.get(ordinal >> 16, 0) | 1 << (ordinal & 0xFFFF)
    return {c: bits.to_bytes((bits.bit_length() + 7) // 8, "little") for c, bits in chunks.items()}


def write_as_release_0007(info: str) -> None:
    with psycopg.connect(info) as conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO user_ordinals (ordinal, user_id, erased_at) OVERRIDING SYSTEM VALUE "
            "VALUES (%s, %s, CASE WHEN %s::text IS NULL THEN now() END)",
            [(ordinal, user, user) for ordinal, user in PEOPLE.items()],
        )
        cur.execute(
            "SELECT setval(pg_get_serial_sequence('user_ordinals', 'ordinal'), %s)", (max(PEOPLE),)
        )
        sets = {"": [0, 1, 70_000, 300_000], "buy": [300_000]}
        cur.executemany(
            "INSERT INTO daily_users (day, platform, event, chunk, bits) "
            "VALUES (%s, %s, %s, %s, %s)",
            [
                (DAY, "web", event, chunk, bits)
                for event, members in sets.items()
                for chunk, bits in legacy_chunks(members).items()
            ],
        )
        cur.executemany(
            "INSERT INTO first_seen (user_id, day) VALUES (%s, %s)",
            [("ann", DAY), ("bob", DAY), ("cy", NEXT), ("dee", DAY)],
        )


def test_migration_0010_converts_the_sets_and_fences_the_old_table() -> None:
    with scratch_database() as info:
        alembic(info, "upgrade", "0007")
        write_as_release_0007(info)
        assert migrate(info) == HEAD_REVISION
        store = PostgresEventStore(info)
        try:
            rows = store.rollup_users(DAY, DAY, by_event=True)
            sets = {r.event: set(r.users) for r in rows}  # type: ignore[call-overload]
            assert sets == {"": {0, 1, 70_000, 300_000}, "buy": {300_000}}
            found = store.first_seen_users(DAY, NEXT).items()
            first_seen = {d: set(u) for d, u in found}  # type: ignore[call-overload]
            assert first_seen == {DAY: {0, 1, 300_000}, NEXT: {70_000}}
            with psycopg.connect(info) as conn:
                rows = conn.execute(
                    "SELECT event, chunk FROM daily_user_sets ORDER BY event, chunk"
                ).fetchall()
                assert rows == [("", 0), ("", 1), ("buy", 1)]
                # What the previous release does on ingest, erasure or link is refused.
                for statement in (
                    "UPDATE daily_users SET bits = bits WHERE false",
                    "INSERT INTO daily_users VALUES ('2026-01-04', 'web', '', 0, '\\x01') "
                    "ON CONFLICT DO NOTHING",
                ):
                    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction), conn.transaction():
                        conn.execute(statement)
            # The converted sets take new members like any other.
            assert store.insert_events([track("eve", "buy", jan(2))]).written == 1
            sets = {r.event: len(r.users) for r in store.rollup_users(DAY, DAY, by_event=True)}
            assert sets == {"": 5, "buy": 2}
        finally:
            store.close()
        alembic(info, "downgrade", "0007")
        with psycopg.connect(info) as conn:
            assert conn.execute("SELECT to_regclass('daily_user_sets')").fetchone() == (None,)
            conn.execute("UPDATE daily_users SET bits = bits WHERE false")  # writable again


def test_migration_0012_builds_the_weekly_sets_and_fences_daily_user_sets() -> None:
    monday, wednesday, next_monday = date(2026, 1, 5), date(2026, 1, 7), date(2026, 1, 12)
    daily = [  # (day, platform, event, members) as release 0011 stored them
        (monday, "web", "", [1, 2]),
        (monday, "web", "buy", [2]),
        (wednesday, "ios", "", [2, 3, 300_000]),
        (next_monday, "web", "", [4]),
    ]
    with scratch_database() as info:
        alembic(info, "upgrade", "0011")
        with psycopg.connect(info) as conn, conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO daily_user_sets (day, platform, event, chunk, users) "
                "VALUES (%s, %s, %s, %s, %s)",
                [
                    (day, platform, event, chunk, bitmap.encode(bitmap.of(ords)))
                    for day, platform, event, members in daily
                    for chunk, ords in itertools.groupby(members, key=lambda o: o >> 18)
                ],
            )
        assert migrate(info) == HEAD_REVISION
        store = PostgresEventStore(info)
        try:
            weeks = store.weekly_active_users(monday, next_monday)
            assert {w: set(u) for w, u in weeks.items()} == {  # type: ignore[call-overload]
                monday: {1, 2, 3, 300_000},
                next_monday: {4},
            }
            platforms = {r.platform for r in store.rollup_users(monday, next_monday, by_event=True)}
            assert platforms == {"web", "ios"}  # the weekly rows are no platform's
            with (
                psycopg.connect(info) as conn,
                pytest.raises(psycopg.errors.ReadOnlySqlTransaction),
                conn.transaction(),
            ):
                conn.execute("UPDATE daily_user_sets SET users = users WHERE false")
        finally:
            store.close()
        alembic(info, "downgrade", "0011")
        with psycopg.connect(info) as conn:
            assert conn.execute("SELECT to_regclass('activity_sets')").fetchone() == (None,)
            conn.execute("UPDATE daily_user_sets SET users = users WHERE false")  # writable again
