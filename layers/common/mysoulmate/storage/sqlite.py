"""Embedded storage for the laptop shape: one SQLite file under DATA_DIR.

Idempotency comes from the primary key (user_id, message_id) with INSERT OR IGNORE, so a
redelivered or re-posted message is stored once even when two writers race.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from mysoulmate.analytics.models import EventPage, Profile, QueuedMessage, StoredEvent
from mysoulmate.sqlite_connection import open_sqlite, write_transaction
from mysoulmate.storage.base import (
    ProfileUpdate,
    StorageUnavailableError,
    StoreResult,
    decode_cursor,
    encode_cursor,
    time_key,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    user_id      TEXT NOT NULL,
    message_id   TEXT NOT NULL,
    type         TEXT NOT NULL,
    event        TEXT,
    ts           TEXT NOT NULL,
    received_at  TEXT NOT NULL,
    platform     TEXT,
    anonymous_id TEXT,
    properties   TEXT NOT NULL,
    context      TEXT NOT NULL,
    PRIMARY KEY (user_id, message_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS events_by_user_time ON events (user_id, ts DESC, message_id DESC);
CREATE TABLE IF NOT EXISTS profiles (
    user_id TEXT PRIMARY KEY,
    doc     TEXT NOT NULL,
    version INTEGER NOT NULL
);
"""


def event_row(m: QueuedMessage) -> tuple[Any, ...]:
    """One message as a row of the events table (the column order of _SCHEMA)."""
    return (
        m.userId,
        m.messageId,
        m.type,
        m.event,
        time_key(m.timestamp),
        time_key(m.receivedAt),
        m.platform,
        m.anonymousId,
        json.dumps(m.properties if m.type == "track" else m.traits),
        json.dumps(m.context),
    )


class SqliteEventStore:
    def __init__(self, path: Path) -> None:
        self._conn = open_sqlite(path, synchronous="NORMAL")
        self._lock = threading.Lock()
        with self._lock:
            self._conn.executescript(_SCHEMA)

    def insert_events(self, messages: Sequence[QueuedMessage]) -> StoreResult:
        rows = [event_row(m) for m in messages]
        try:
            with write_transaction(self._conn, self._lock):
                before = self._conn.total_changes
                self._conn.executemany(
                    "INSERT OR IGNORE INTO events VALUES (?,?,?,?,?,?,?,?,?,?)", rows
                )
                written = self._conn.total_changes - before
        except sqlite3.Error as exc:
            reason = f"sqlite: {exc}"
            return StoreResult(failed={m.key: reason for m in messages})
        return StoreResult(written=written, duplicates=len(rows) - written)

    def update_profile(self, user_id: str, update: ProfileUpdate) -> Profile:
        with write_transaction(self._conn, self._lock):
            current = self._load_profile(user_id)
            merged = update(current)
            merged.version = (current.version if current else 0) + 1
            self._conn.execute(
                "INSERT INTO profiles VALUES (?,?,?) ON CONFLICT(user_id) DO UPDATE "
                "SET doc = excluded.doc, version = excluded.version",
                (user_id, merged.model_dump_json(), merged.version),
            )
        return merged

    def get_profile(self, user_id: str) -> Profile | None:
        with self._lock:
            return self._load_profile(user_id)

    def _load_profile(self, user_id: str) -> Profile | None:
        row = self._conn.execute(
            "SELECT doc FROM profiles WHERE user_id = ?", (user_id,)
        ).fetchone()
        return Profile.model_validate_json(row[0]) if row else None

    def list_events(self, user_id: str, limit: int, cursor: str | None) -> EventPage:
        query = (
            "SELECT message_id, type, event, ts, received_at, platform, anonymous_id, "
            "properties, context FROM events WHERE user_id = ?"
        )
        args: list[Any] = [user_id]
        if cursor:
            position = decode_cursor(cursor, {"ts", "id"})
            query += " AND (ts < ? OR (ts = ? AND message_id < ?))"
            args += [position["ts"], position["ts"], position["id"]]
        query += " ORDER BY ts DESC, message_id DESC LIMIT ?"
        args.append(limit + 1)
        with self._lock:
            rows = self._conn.execute(query, args).fetchall()
        events = [_row_to_event(row) for row in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            last = rows[limit - 1]
            next_cursor = encode_cursor({"ts": last[3], "id": last[0]})
        return EventPage(events=events, next_cursor=next_cursor)

    def ping(self) -> None:
        try:
            with self._lock:
                self._conn.execute("SELECT 1 FROM events LIMIT 1").fetchall()
        except sqlite3.Error as exc:
            raise StorageUnavailableError(f"sqlite: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _row_to_event(row: tuple[Any, ...]) -> StoredEvent:
    message_id, type_, event, ts, received_at, platform, anonymous_id, props, ctx = row
    return StoredEvent(
        messageId=message_id,
        type=type_,
        event=event,
        timestamp=datetime.fromisoformat(ts),
        receivedAt=datetime.fromisoformat(received_at),
        platform=platform,
        anonymousId=anonymous_id,
        properties=json.loads(props),
        context=json.loads(ctx),
    )
