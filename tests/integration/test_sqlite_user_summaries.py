"""The embedded store's per-user summaries: a database from before schema 6 gets them from
its events when opened, and a user's page reads through indexes whose cost follows the
limit, not the history."""

from __future__ import annotations

import sqlite3
from datetime import date
from pathlib import Path

from mysoulmate.analytics.date_range import DateRange
from mysoulmate.analytics.user_summary import summary_from_points
from mysoulmate.storage.sqlite.schema import SCHEMA_VERSION
from mysoulmate.storage.sqlite.store import SqliteEventStore

from tests.support.messages import consume, jan, track

JAN_2 = DateRange(date(2026, 1, 2), date(2026, 1, 2))


def test_a_schema_5_database_gets_summaries_from_its_events(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    store = SqliteEventStore(path)
    consume(store, *(track("ann", "open", jan(1 + i // 6, 18 + i % 6, 30)) for i in range(12)))
    store.insert_events([track("ann", "legacy", jan(5, 9))])  # no session id
    store.close()
    with sqlite3.connect(path) as conn:
        for table in ("user_day_counts", "user_sessions"):
            conn.execute(f"DROP TABLE {table}")
        conn.execute("DROP INDEX events_without_session")
        conn.execute("PRAGMA user_version = 5")
    upgraded = SqliteEventStore(path)
    points = upgraded.user_event_points("ann")
    for days in (None, JAN_2):
        assert upgraded.user_summary("ann", days, 100) == summary_from_points(points, days, 100)
    assert upgraded.user_summary("ann", None, 100).event_counts == {"legacy": 1, "open": 12}
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def plan(store: SqliteEventStore, query: str, *args: object) -> str:
    rows = store._read(f"EXPLAIN QUERY PLAN {query}", args)
    return " | ".join(str(row[-1]) for row in rows)


def test_the_newest_sessions_and_the_unnamed_events_are_read_through_indexes(
    tmp_path: Path,
) -> None:
    store = SqliteEventStore(tmp_path / "plans.db")
    newest = plan(
        store,
        "SELECT session_id, start, last, events FROM user_sessions WHERE user_id = ? "
        "ORDER BY start DESC, session_id DESC LIMIT ?",
        "ann",
        100,
    )
    assert "user_sessions_by_start" in newest
    assert "TEMP B-TREE" not in newest
    unnamed = plan(
        store,
        "SELECT ts FROM events WHERE user_id = ? AND session_id IS NULL "
        "AND event IS NOT NULL ORDER BY ts, message_id",
        "ann",
    )
    assert "events_without_session" in unnamed
    assert "TEMP B-TREE" not in unnamed
