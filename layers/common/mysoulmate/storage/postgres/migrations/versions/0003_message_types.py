"""Every Segment message type: page, screen, group and alias join track and identify.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06

Page and screen views carry an event name (``$page:<name>``, ``$screen:<name>``) and count
like track events, so the reads select counted events by ``event IS NOT NULL`` instead of
``type = 'track'``; the funnel index follows. Queries of the release still serving during a
deploy (``type = 'track' AND event = …``) imply the new predicate and keep using the index.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TYPES = "('track', 'identify', 'page', 'screen', 'group', 'alias')"

_UPGRADE = [
    "ALTER TABLE events DROP CONSTRAINT IF EXISTS events_type_check",
    f"ALTER TABLE events ADD CONSTRAINT events_type_check CHECK (type IN {_TYPES})",
    "DROP INDEX IF EXISTS events_by_event_time",
    "CREATE INDEX events_by_event_time ON events (event, ts) INCLUDE (user_id) "
    "WHERE event IS NOT NULL",
]

_DOWNGRADE = [
    "ALTER TABLE events DROP CONSTRAINT IF EXISTS events_type_check",
    "ALTER TABLE events ADD CONSTRAINT events_type_check CHECK (type IN ('track', 'identify'))"
    " NOT VALID",
    "DROP INDEX IF EXISTS events_by_event_time",
    "CREATE INDEX events_by_event_time ON events (event, ts) INCLUDE (user_id) "
    "WHERE type = 'track'",
]


def upgrade() -> None:
    for statement in _UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in _DOWNGRADE:
        op.execute(statement)
