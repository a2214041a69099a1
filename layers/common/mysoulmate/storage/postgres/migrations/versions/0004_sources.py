"""Write-key sources: one row per source, its key stored only as a SHA-256.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-10

The UNIQUE key_hash index is what authenticates a write key (one index lookup per cache
miss). Additive only, so the release still serving during a deploy keeps working.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_UPGRADE = [
    # revoked_at is set once: the first revocation time stays.
    """
    CREATE TABLE sources (
        id         text COLLATE "C" PRIMARY KEY,
        name       text NOT NULL,
        kind       text NOT NULL CHECK (kind IN ('client', 'server')),
        key_hash   text COLLATE "C" NOT NULL UNIQUE,
        key_hint   text NOT NULL,
        created_at timestamptz NOT NULL,
        revoked_at timestamptz
    )
    """,
]


def upgrade() -> None:
    for statement in _UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE sources")
