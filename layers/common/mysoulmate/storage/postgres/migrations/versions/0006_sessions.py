"""Automatic sessions: each event's session id, and each person's current session.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-20

``events.session_id`` is the session the consumer assigned the event to (NULL for messages
without an event name, and for events stored before this release). ``session_marks`` holds
one row per person: the id, first and last event time of their current session, which the
consumer continues from and moves in the ingest transaction that stores the events. Session
figures themselves are daily counts under reserved event names (`rollups.SESSION_EVENTS`),
so no rollup table changes. Additive only: a nullable column without a default is a catalog
change (no table rewrite), and the release still serving during a deploy, whose stage table
copies the events table (``LIKE events``), leaves the new column NULL.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_UPGRADE = [
    'ALTER TABLE events ADD COLUMN session_id text COLLATE "C"',
    """
    CREATE TABLE session_marks (
        user_id    text COLLATE "C" PRIMARY KEY,
        session_id text COLLATE "C" NOT NULL,
        start      timestamptz NOT NULL,
        last       timestamptz NOT NULL
    )
    """,
]

_DOWNGRADE = [
    "DROP TABLE session_marks",
    "ALTER TABLE events DROP COLUMN session_id",
]


def upgrade() -> None:
    for statement in _UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in _DOWNGRADE:
        op.execute(statement)
