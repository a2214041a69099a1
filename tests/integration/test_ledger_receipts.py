"""The ledgers' receipts on the SQL stores' older data: a SQLite file of schema 7 and a
PostgreSQL database at migration 0012 hold perf (and, on PostgreSQL, forward) ledger rows
without a receipt. After the upgrade an erasure still deletes those (they may be of messages
it covers), new rows carry their receipt, and the row of a message received after the
erasure's time stays (the contract suites check that rule on every backend)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import psycopg
from mysoulmate.storage.postgres.connection import HEAD_REVISION
from mysoulmate.storage.postgres.migrate import migrate
from mysoulmate.storage.postgres.store import PostgresEventStore
from mysoulmate.storage.sqlite.schema import SCHEMA_VERSION
from mysoulmate.storage.sqlite.store import SqliteEventStore

from tests.support.messages import jan
from tests.support.perf_stores import perf, render
from tests.support.postgres import alembic, scratch_database


def test_a_schema_7_file_gets_receipts_and_its_old_rows_go_with_an_erasure(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    SqliteEventStore(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("ALTER TABLE perf_ledger DROP COLUMN received_at")
        # Recorded now: the ledger's prune (rows older than the ledger days) leaves it alone.
        conn.execute("INSERT INTO perf_ledger VALUES ('erin', 'old', ?)", (time.time(),))
        conn.execute("PRAGMA user_version = 7")
    store = SqliteEventStore(path)
    store.record_perf([perf("erin", [render(10)], at=jan(11), message_id="after")])
    with sqlite3.connect(path) as conn:
        before = conn.execute("SELECT message_id, received_at FROM perf_ledger ORDER BY 1")
        assert before.fetchall() == [("after", "2026-01-11T12:00:00.000000Z"), ("old", None)]
    store.delete_user("erin", jan(10))
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT message_id, received_at FROM perf_ledger").fetchall()
        version = conn.execute("PRAGMA user_version").fetchone()[0]
    assert rows == [("after", "2026-01-11T12:00:00.000000Z")]
    assert version == SCHEMA_VERSION
    store.close()


def test_migration_0013_keeps_old_rows_and_an_erasure_deletes_them() -> None:
    with scratch_database() as info:
        alembic(info, "upgrade", "0012")
        with psycopg.connect(info, autocommit=True) as conn:
            conn.execute("INSERT INTO perf_ledger (user_id, message_id) VALUES ('erin', 'old')")
            conn.execute(
                "INSERT INTO forward_ledger (provider, user_id, message_id, forwarded_at) "
                "VALUES ('ga4', 'erin', 'old', now())"
            )
        assert migrate(info) == HEAD_REVISION
        store = PostgresEventStore(info)
        try:
            store.record_perf([perf("erin", [render(10)], at=jan(11), message_id="after")])
            with psycopg.connect(info) as conn:
                before = conn.execute(
                    "SELECT message_id, received_at FROM perf_ledger ORDER BY 1"
                ).fetchall()
            assert before == [("after", jan(11)), ("old", None)]
            store.delete_user("erin", jan(10))
            with psycopg.connect(info) as conn:
                after = conn.execute("SELECT message_id FROM perf_ledger").fetchall()
                forwarded = conn.execute("SELECT message_id FROM forward_ledger").fetchall()
            assert after == [("after",)]
            assert forwarded == []
        finally:
            store.close()
