"""The embedded store's schema, its upgrades, and how a message becomes a row."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from mysoulmate.analytics.models import QueuedMessage
from mysoulmate.analytics.ports import time_key

# PRAGMA user_version: 1 = the spine's events/profiles only; 2 = rollups; 3 = erasure
# tombstones and fixed-width time keys; 4 = session ids and marks; 5 = Roaring user sets
# (daily_user_sets replaces the dense daily_users bitmaps) and first-seen sets per day;
# 6 = per-user summaries (`user_summaries`); 7 = weekly user sets (`user_sets`); 8 = the
# perf ledger's receipts (an erasure keeps the entries of messages received after it).
SCHEMA_VERSION = 8

SCHEMA = """
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
    session_id   TEXT,
    PRIMARY KEY (user_id, message_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS events_by_user_time ON events (user_id, ts DESC, message_id DESC);
CREATE INDEX IF NOT EXISTS events_by_name_time ON events (event, ts);
-- Funnels (`funnel_step_times`): one step's events in user order, each user's oldest first.
CREATE INDEX IF NOT EXISTS events_by_name_user_time ON events (event, user_id, ts);
CREATE TABLE IF NOT EXISTS profiles (
    user_id TEXT PRIMARY KEY,
    doc     TEXT NOT NULL,
    version INTEGER NOT NULL
);
-- AUTOINCREMENT: an erased user's ordinal is never handed to anyone else.
CREATE TABLE IF NOT EXISTS user_ordinals (
    ordinal INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS daily_counts (
    day TEXT NOT NULL, platform TEXT NOT NULL, event TEXT NOT NULL,
    events INTEGER NOT NULL,
    PRIMARY KEY (day, platform, event)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS daily_revenue (
    day TEXT NOT NULL, platform TEXT NOT NULL, currency TEXT NOT NULL,
    micros INTEGER NOT NULL,
    PRIMARY KEY (day, platform, currency)
) WITHOUT ROWID;
-- User sets (`storage.bitmap`: Roaring, portable serialization) over user_ordinals.
CREATE TABLE IF NOT EXISTS daily_user_sets (
    day TEXT NOT NULL, platform TEXT NOT NULL, event TEXT NOT NULL,
    users BLOB NOT NULL,
    PRIMARY KEY (day, platform, event)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS first_seen (
    user_id TEXT PRIMARY KEY,
    day     TEXT NOT NULL
) WITHOUT ROWID;
-- The users with a track event in an ISO week (its Monday), any platform: weekly cohorts.
CREATE TABLE IF NOT EXISTS weekly_user_sets (
    week  TEXT PRIMARY KEY,
    users BLOB NOT NULL
) WITHOUT ROWID;
-- The users whose first_seen day it is, one set per day: what cohorts read.
CREATE TABLE IF NOT EXISTS first_seen_sets (
    day   TEXT PRIMARY KEY,
    users BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS audit_log (
    id TEXT PRIMARY KEY, at TEXT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
    subject TEXT NOT NULL, details TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS audit_by_time ON audit_log (at DESC, id DESC);
CREATE INDEX IF NOT EXISTS audit_by_subject ON audit_log (subject, at DESC, id DESC);
-- An anonymous id linked to a user (the first link wins): its history is the user's.
CREATE TABLE IF NOT EXISTS identity_links (
    anonymous_id TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL,
    linked_at    TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS identity_links_by_user ON identity_links (user_id);
-- Each person's current session (`sessions.SessionMark`): where their next event may join.
CREATE TABLE IF NOT EXISTS session_marks (
    user_id    TEXT PRIMARY KEY,
    session_id TEXT NOT NULL,
    start      TEXT NOT NULL,
    last       TEXT NOT NULL
) WITHOUT ROWID;
-- One row per erased user: messages received up to erased_at are never stored again.
CREATE TABLE IF NOT EXISTS erasures (
    user_id   TEXT PRIMARY KEY,
    erased_at TEXT NOT NULL
) WITHOUT ROWID;
-- Sketch counters (`analytics.perf_sketch`): one row per (cell, bucket), only ever added to.
CREATE TABLE IF NOT EXISTS perf_counters (
    day TEXT NOT NULL, metric TEXT NOT NULL, name TEXT NOT NULL, app_version TEXT NOT NULL,
    platform TEXT NOT NULL, device_class TEXT NOT NULL, bucket INTEGER NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (metric, name, day, app_version, platform, device_class, bucket)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS perf_counters_by_day ON perf_counters (metric, day);
-- Perf messages already counted, by (user, message id); no measurement is kept here.
-- received_at (a time key; NULL on rows of version 7 and before) is what an erasure compares.
CREATE TABLE IF NOT EXISTS perf_ledger (
    user_id     TEXT NOT NULL,
    message_id  TEXT NOT NULL,
    recorded_at REAL NOT NULL,
    received_at TEXT,
    PRIMARY KEY (user_id, message_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS perf_ledger_by_time ON perf_ledger (recorded_at);
"""
_TIME_KEY_LENGTH = len("2026-01-31T12:00:00.000000Z")


def repair_time_keys(conn: sqlite3.Connection) -> None:
    """Before version 3, `time_key` wrote years before 1000 with three digits ("999-…"),
    which broke string order and every read of such a row; pad them to the fixed width."""
    for table, columns in (("events", ("ts", "received_at")), ("audit_log", ("at",))):
        for column in columns:
            conn.execute(
                f"UPDATE {table} SET {column} = substr('0000' || {column}, -{_TIME_KEY_LENGTH}) "  # noqa: S608 - constant names
                f"WHERE length({column}) < {_TIME_KEY_LENGTH}"
            )


EVENT_COLUMNS = (
    "message_id, type, event, ts, received_at, platform, anonymous_id, properties, context, "
    "session_id"
)
EVENT_INSERT = "INSERT OR IGNORE INTO events VALUES (?,?,?,?,?,?,?,?,?,?,?)"


def add_column(conn: sqlite3.Connection, table: str, column: str) -> None:
    """A nullable TEXT column SCHEMA has but an older file's table lacks (SCHEMA only
    creates tables): events' session_id (version 4), perf_ledger's received_at (8)."""
    columns = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
    if column not in columns:
        conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} TEXT")


def event_row(m: QueuedMessage) -> tuple[Any, ...]:
    """One message as a row of the events table (the column order of SCHEMA)."""
    return (
        m.userId,
        m.messageId,
        m.type,
        m.event,
        time_key(m.timestamp),
        time_key(m.receivedAt),
        m.platform,
        m.anonymousId,
        json.dumps(m.stored_properties()),
        json.dumps(m.context),
        m.sessionId,
    )
