"""Events, profiles, exact daily rollups (counts, revenue, user bitmaps), audit log.

Revision ID: 0001
Revises:
Create Date: 2026-02-01

Text keys use COLLATE "C" (byte order): cursors and tie-breaks by messageId must order
exactly as in the SQLite and DynamoDB backends, whatever the database's default locale,
and byte comparison is also the cheapest.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_UPGRADE = [
    # One row per stored event; the primary key is the idempotency key.
    """
    CREATE TABLE events (
        user_id      text COLLATE "C" NOT NULL,
        message_id   text COLLATE "C" NOT NULL,
        type         text NOT NULL CHECK (type IN ('track', 'identify')),
        event        text COLLATE "C",
        ts           timestamptz NOT NULL,
        received_at  timestamptz NOT NULL,
        platform     text COLLATE "C",
        anonymous_id text,
        properties   jsonb NOT NULL,
        context      jsonb NOT NULL,
        PRIMARY KEY (user_id, message_id)
    )
    """,
    # A user's timeline newest first (list_events keyset pages, per-user points, erasure).
    "CREATE INDEX events_by_user_time ON events (user_id, ts DESC, message_id DESC)",
    # Funnel step 1: who did event X in a time window, answered from the index alone.
    "CREATE INDEX events_by_event_time ON events (event, ts) INCLUDE (user_id) "
    "WHERE type = 'track'",
    # Time-range scans across users (retention purges, backfills).
    "CREATE INDEX events_by_time ON events (ts)",
    """
    CREATE TABLE profiles (
        user_id text COLLATE "C" PRIMARY KEY,
        doc     jsonb NOT NULL,
        version bigint NOT NULL
    )
    """,
    # Dense per-user bit positions for the user bitmaps. An erased user's row stays as a
    # tombstone (user_id NULL) so the ordinal is never handed to anyone else.
    """
    CREATE TABLE user_ordinals (
        ordinal   bigint GENERATED ALWAYS AS IDENTITY (MINVALUE 0 START WITH 0) PRIMARY KEY,
        user_id   text COLLATE "C" UNIQUE,
        erased_at timestamptz
    )
    """,
    """
    CREATE TABLE daily_counts (
        day      date NOT NULL,
        platform text COLLATE "C" NOT NULL,
        event    text COLLATE "C" NOT NULL,
        events   bigint NOT NULL,
        PRIMARY KEY (day, platform, event)
    )
    """,
    """
    CREATE TABLE daily_revenue (
        day      date NOT NULL,
        platform text COLLATE "C" NOT NULL,
        currency text COLLATE "C" NOT NULL,
        micros   bigint NOT NULL,
        PRIMARY KEY (day, platform, currency)
    )
    """,
    # Users active per (day, platform, event); event '' = any event. A bitmap is split in
    # chunks of 2^16 ordinals (8 KiB) so a batch rewrites only the chunks its users fall in,
    # not a bitmap as large as the whole user base.
    """
    CREATE TABLE daily_users (
        day      date NOT NULL,
        platform text COLLATE "C" NOT NULL,
        event    text COLLATE "C" NOT NULL,
        chunk    integer NOT NULL,
        bits     bytea NOT NULL,
        PRIMARY KEY (day, platform, event, chunk)
    )
    """,
    """
    CREATE TABLE first_seen (
        user_id text COLLATE "C" PRIMARY KEY,
        day     date NOT NULL
    )
    """,
    "CREATE INDEX first_seen_by_day ON first_seen (day)",
    """
    CREATE TABLE audit_log (
        id      text COLLATE "C" PRIMARY KEY,
        at      timestamptz NOT NULL,
        actor   text NOT NULL,
        action  text NOT NULL,
        subject text COLLATE "C" NOT NULL,
        details jsonb NOT NULL
    )
    """,
    "CREATE INDEX audit_log_by_time ON audit_log (at DESC, id DESC)",
    "CREATE INDEX audit_log_by_subject ON audit_log (subject, at DESC, id DESC)",
]

_TABLES = (
    "audit_log",
    "first_seen",
    "daily_users",
    "daily_revenue",
    "daily_counts",
    "user_ordinals",
    "profiles",
    "events",
)


def upgrade() -> None:
    for statement in _UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for table in _TABLES:
        op.execute(f"DROP TABLE {table}")
