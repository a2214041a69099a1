"""The forward ledger: which messages each analytics provider has accepted.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-22

One row per (provider, user, message) a provider accepted, written by the forwarders of
every process (`storage.postgres.ledger`), so a message redelivered to another pod is not
sent twice to a provider that cannot deduplicate (GA4). Rows are kept for a week; the index
on forwarded_at serves the ledger's periodic delete of older ones, the one on user_id an
erasure's delete of the person's rows. Additive only, so the
release still serving during a deploy keeps working.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_UPGRADE = [
    """
    CREATE TABLE forward_ledger (
        provider     text COLLATE "C" NOT NULL,
        user_id      text COLLATE "C" NOT NULL,
        message_id   text COLLATE "C" NOT NULL,
        forwarded_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (provider, user_id, message_id)
    )
    """,
    "CREATE INDEX forward_ledger_by_time ON forward_ledger (forwarded_at)",
    # An erasure deletes the person's rows (the primary key leads with the provider).
    "CREATE INDEX forward_ledger_by_user ON forward_ledger (user_id)",
]

_DOWNGRADE = ["DROP TABLE forward_ledger"]


def upgrade() -> None:
    for statement in _UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in _DOWNGRADE:
        op.execute(statement)
