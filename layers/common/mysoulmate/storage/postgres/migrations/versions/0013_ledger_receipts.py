"""The ledgers' receipts: an erasure keeps the entries of messages received after it.

Revision ID: 0013
Revises: 0012
Create Date: 2027-01-26

An erasure is requested at its time and runs a moment later; a message received in between
is new data and may be counted (perf) or forwarded (to GA4, Mixpanel) before the erasure runs.
Its ledger row must stay, or its redelivery would be counted or forwarded again: the erasure
deletes only the rows of messages received at or before its tombstone
(`storage.postgres.store._erase_person`). ``received_at`` is NULL on older rows and on rows
the previous release writes during a deploy; an erasure deletes those, as before.

Additive only: a nullable column without a default rewrites no stored row.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


_LEDGERS = ("perf_ledger", "forward_ledger")


def upgrade() -> None:
    for table in _LEDGERS:
        op.execute(f"ALTER TABLE {table} ADD COLUMN received_at timestamptz")


def downgrade() -> None:
    for table in _LEDGERS:
        op.execute(f"ALTER TABLE {table} DROP COLUMN received_at")
