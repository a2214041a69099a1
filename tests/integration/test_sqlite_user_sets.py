"""The embedded store's user sets: a database written before schema 5 (dense bitmaps in
``daily_users``, first-seen days only per user) is converted when opened, and answers as it
did."""

from __future__ import annotations

import sqlite3
from datetime import date
from pathlib import Path
from typing import Any

from mysoulmate.analytics.cohorts import build_cohorts
from mysoulmate.analytics.date_range import DateRange
from mysoulmate.storage import bitmap
from mysoulmate.storage.sqlite.schema import SCHEMA_VERSION
from mysoulmate.storage.sqlite.store import SqliteEventStore

from tests.support.messages import consume, identify_as, jan, track, visit

JAN = (date(2026, 1, 1), date(2026, 1, 31))


def answers(store: SqliteEventStore) -> dict[str, Any]:
    return {
        "users": sorted(
            (r.day, r.platform, r.event, frozenset(r.users))  # type: ignore[call-overload]
            for r in store.rollup_users(*JAN, by_event=True)
        ),
        "first_seen": {
            day: frozenset(users)  # type: ignore[call-overload]
            for day, users in store.first_seen_users(*JAN).items()
        },
        "cohorts": build_cohorts(store, DateRange(*JAN), "week", 4, date(2026, 2, 1)),
    }


def dense(users: bitmap.UserBitmap) -> bytes:
    """The layout before schema 5: bit n of a little-endian integer = ordinal n."""
    bits = sum(1 << ordinal for ordinal in users)
    return bits.to_bytes((bits.bit_length() + 7) // 8, "little")


def downgrade_to_schema_4(path: Path) -> None:
    """Rewrite the sets as the release before schema 5 stored them."""
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE daily_users (day TEXT NOT NULL, platform TEXT NOT NULL, "
            "event TEXT NOT NULL, bits BLOB NOT NULL, PRIMARY KEY (day, platform, event)) "
            "WITHOUT ROWID"
        )
        rows = conn.execute("SELECT day, platform, event, users FROM daily_user_sets").fetchall()
        conn.executemany(
            "INSERT INTO daily_users VALUES (?,?,?,?)",
            [(d, p, e, dense(bitmap.decode(users))) for d, p, e, users in rows],
        )
        conn.execute("DROP TABLE daily_user_sets")
        conn.execute("DROP TABLE first_seen_sets")
        conn.execute("CREATE INDEX first_seen_by_day ON first_seen (day)")
        conn.execute("PRAGMA user_version = 4")
    conn.close()


def test_a_schema_4_database_is_converted_on_open_and_answers_as_before(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    store = SqliteEventStore(path)
    consume(
        store,
        track("ann", "open", jan(2)),
        track("bob", "open", jan(3), platform="ios"),
        track("bob", "buy", jan(9), platform="ios"),
        visit("a-1", jan(1), "open"),
        track("cy", "open", jan(12)),
    )
    consume(store, identify_as("cy", "a-1", jan(12, 13)))  # cy first seen on the 1st
    store.delete_user("ann", jan(20))  # ordinals with a gap
    before = answers(store)
    store.close()
    downgrade_to_schema_4(path)

    store = SqliteEventStore(path)
    assert answers(store) == before
    with sqlite3.connect(path) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        version = conn.execute("PRAGMA user_version").fetchone()[0]
    conn.close()
    assert "daily_users" not in tables
    assert "first_seen_by_day" not in tables
    assert version == SCHEMA_VERSION
    # Converted sets take new members like any other.
    consume(store, track("dee", "open", jan(3)))
    first_seen = store.first_seen_users(date(2026, 1, 3), date(2026, 1, 3))
    assert len(first_seen[date(2026, 1, 3)]) == 2  # bob and dee
    store.close()


def test_cached_reads_follow_this_store_s_writes_and_another_connection_s(
    tmp_path: Path,
) -> None:
    """Reads of an unchanged database are cached (`user_sets.ReadCache`): a write through
    this store, an erasure, a link or another connection's commit must be seen at once."""
    path = tmp_path / "events.db"
    store = SqliteEventStore(path)
    other = SqliteEventStore(path)

    def fresh() -> dict[str, Any]:
        reader = SqliteEventStore(path)  # no cache of its own yet
        try:
            return answers(reader)
        finally:
            reader.close()

    consume(store, track("ann", "open", jan(2)), visit("a-1", jan(3), "open"))
    assert answers(store) == fresh()
    assert store.rollup_users(*JAN, by_event=True)[0].users is (
        store.rollup_users(*JAN, by_event=True)[0].users
    )  # unchanged: the cached sets
    consume(store, track("bob", "open", jan(2), platform="ios"))
    assert answers(store) == fresh()
    before = store.rollup_users(*JAN, by_event=True)
    consume(other, track("cy", "buy", jan(4)))
    assert answers(store) == fresh()
    after = store.rollup_users(*JAN, by_event=True)
    kept = {id(row.users) for row in before}
    assert 0 < sum(id(row.users) in kept for row in after) < len(after)  # only changes decoded
    consume(other, identify_as("cy", "a-1", jan(5)))
    assert answers(store) == fresh()
    other.delete_user("ann", jan(6))
    assert answers(store) == fresh()
    store.delete_user("bob", jan(6))
    assert answers(store) == fresh()
    store.close()
    other.close()
