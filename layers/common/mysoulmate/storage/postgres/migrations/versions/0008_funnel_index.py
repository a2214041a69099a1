"""The funnel index: one step's events in user order, each user's oldest first.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-28

`funnel_step_times` reads, per step name, the events of that name in the range in user order,
from the index alone (an index-only scan per name, merged by user id without a sort), so an
ordered or any funnel reads its step events and nothing else. The old path read every event of
every user with a start. Additive only, so the release still serving during a deploy keeps
working; the build takes a SHARE lock on events (writes wait) for as long as it runs, as the
migrations run in one transaction (no CONCURRENTLY): about 2 s per million events measured.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_UPGRADE = [
    "CREATE INDEX events_by_name_user_time ON events (event, user_id, ts, message_id) "
    "WHERE event IS NOT NULL",
]

_DOWNGRADE = ["DROP INDEX IF EXISTS events_by_name_user_time"]


def upgrade() -> None:
    for statement in _UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in _DOWNGRADE:
        op.execute(statement)
