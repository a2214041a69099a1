"""Erasure tombstones: an erased user's messages received before the erasure never come back.

Revision ID: 0002
Revises: 0001
Create Date: 2026-02-20

One row per erased user, keyed by the identifier itself (user_ordinals forgets it): ingest
and profile updates read it under the user's advisory lock (see storage.postgres.store), so
an in-flight message received at or before erased_at is dropped, never written back.
Additive only, so the release still serving during a deploy keeps working.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_UPGRADE = [
    # erased_at only ever moves later (the latest erasure wins).
    """
    CREATE TABLE erasures (
        user_id   text COLLATE "C" PRIMARY KEY,
        erased_at timestamptz NOT NULL
    )
    """,
]


def upgrade() -> None:
    for statement in _UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE erasures")
