"""Sessions by their last event: a range's sessions cost the range, not the user's history.

Revision ID: 0014
Revises: 0013
Create Date: 2027-02-02

`GET /user/{id}` with a range reads the sessions overlapping it: ``start <= high AND last >=
low``. With only ``user_sessions_by_start`` that meant every session that started before the
range ends, all of a long history for a recent range (1,000 against 2,000 index entries for
the benchmark's 20k and 40k-event users, `bench/user_reads.py`). An index on (user, last) reads
the sessions that end within or after the range, as SQLite's ``user_sessions_by_last`` does.

Its price is on ingest: a session's ``last`` moves as events extend it, so such updates are
no longer HOT. Measured with two scratch databases at head, one with the index, the consumer
alternating batches of 1,000 (`docs/performance.md`): sessions extended batch after batch,
0.99 x; `pg_ingest`'s data, nearly one new session per event (the worst case), 0.95-0.97 x.

The index is built in the migration's transaction: writes to user_sessions (ingest) wait for
it, as they did for 0011's, and nothing is lost (a consumer that times out is redelivered).
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0014"
down_revision: str | Sequence[str] | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("CREATE INDEX user_sessions_by_last ON user_sessions (user_id, last)")


def downgrade() -> None:
    op.execute("DROP INDEX user_sessions_by_last")
