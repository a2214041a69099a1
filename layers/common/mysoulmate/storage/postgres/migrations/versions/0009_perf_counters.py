"""Client performance telemetry: sketch counters and the ledger of counted perf messages.

Revision ID: 0009
Revises: 0008
Create Date: 2027-01-05

``perf_counters`` holds one row per (cell, bucket) of the quantile sketches
(`analytics.perf_sketch`): a cell is (UTC day, metric, name, app version, platform, device
class); ``count`` is only ever added to, in the transaction that records the messages in
``perf_ledger``, so a redelivered message counts once. Its key leads with (metric, name, day)
for one screen's summary; the (metric, day) index serves reads across every name. The
ledger holds (user, message id) and when it was recorded, nothing measured: rows older than
15 days are deleted by the store (the index on recorded_at), and an erasure deletes the
person's rows (the key leads with user_id). Additive only, so the release still serving
during a deploy keeps working.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_UPGRADE = [
    """
    CREATE TABLE perf_counters (
        day          date NOT NULL,
        metric       text COLLATE "C" NOT NULL,
        name         text COLLATE "C" NOT NULL,
        app_version  text COLLATE "C" NOT NULL,
        platform     text COLLATE "C" NOT NULL,
        device_class text COLLATE "C" NOT NULL,
        bucket       integer NOT NULL,
        count        bigint NOT NULL,
        PRIMARY KEY (metric, name, day, app_version, platform, device_class, bucket)
    )
    """,
    "CREATE INDEX perf_counters_by_day ON perf_counters (metric, day)",
    """
    CREATE TABLE perf_ledger (
        user_id     text COLLATE "C" NOT NULL,
        message_id  text COLLATE "C" NOT NULL,
        recorded_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (user_id, message_id)
    )
    """,
    "CREATE INDEX perf_ledger_by_time ON perf_ledger (recorded_at)",
]

_DOWNGRADE = ["DROP TABLE perf_ledger", "DROP TABLE perf_counters"]


def upgrade() -> None:
    for statement in _UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in _DOWNGRADE:
        op.execute(statement)
