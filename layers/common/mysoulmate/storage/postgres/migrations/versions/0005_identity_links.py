"""Identity links: an anonymous visitor linked to the user it turned out to be.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-14

One row per linked anonymousId (the first link wins, so it is the primary key); the
consumer looks anonymous messages up by it before storing them. The index on user_id
serves `delete_user`, which forgets the links of the user it erases. Additive only, so
the release still serving during a deploy keeps working.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_UPGRADE = [
    """
    CREATE TABLE identity_links (
        anonymous_id text COLLATE "C" PRIMARY KEY,
        user_id      text COLLATE "C" NOT NULL,
        linked_at    timestamptz NOT NULL DEFAULT now()
    )
    """,
    "CREATE INDEX identity_links_by_user ON identity_links (user_id)",
]


def upgrade() -> None:
    for statement in _UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE identity_links")
