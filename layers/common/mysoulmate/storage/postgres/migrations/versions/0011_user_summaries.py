"""Per-user summaries: event counts per (user, day, event) and one row per (user, session).

Revision ID: 0011
Revises: 0010
Create Date: 2027-01-12

``user_day_counts`` and ``user_sessions`` (`storage.postgres.user_summaries`) let GET
/user/{id} cost the user's days and sessions in its range, not a pass over their whole
history. The partial index finds the few events stored before session ids (0006), which are
grouped when read.

The summaries are kept by the database: a statement trigger on ``events`` adds the rows each
INSERT really inserted (its transition table: a conflicting, redelivered row is not in it) in
the same transaction, aggregated per statement. So every writer keeps them exact, the
previous release still serving during a deploy included, and a link's move adds what it
moved. Deletes are the writers' part (an erasure, a visitor's rows after a link).

Both tables are filled here from the stored events, the day being the UTC date of ``ts`` as
in the rollups. The partial index is built and the trigger created first: their locks make
writes to events wait until this migration commits, so the backfill misses nothing before
and the trigger everything after. Additive only.

fillfactor 90: ingest updates each active user's current day and session rows again and
again; the room left in a page keeps those updates HOT (they rarely change an indexed column).
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_UPGRADE = [
    # First: its lock keeps events as they are until commit, so the backfill is complete.
    "CREATE INDEX events_without_session ON events (user_id, ts, message_id) "
    "WHERE session_id IS NULL AND event IS NOT NULL",
    """
    CREATE TABLE user_day_counts (
        user_id  text COLLATE "C" NOT NULL,
        day      date NOT NULL,
        event    text COLLATE "C" NOT NULL,
        events   bigint NOT NULL,
        first_ts timestamptz NOT NULL,
        last_ts  timestamptz NOT NULL,
        PRIMARY KEY (user_id, day, event)
    ) WITH (fillfactor = 90)
    """,
    """
    CREATE TABLE user_sessions (
        user_id    text COLLATE "C" NOT NULL,
        session_id text COLLATE "C" NOT NULL,
        start      timestamptz NOT NULL,
        last       timestamptz NOT NULL,
        events     bigint NOT NULL,
        PRIMARY KEY (user_id, session_id)
    ) WITH (fillfactor = 90)
    """,
    # Rows in key order: concurrent batches queue on them rather than deadlock (events first,
    # then these, then the rollups, as every writer does).
    """
    CREATE FUNCTION user_summaries_add() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO user_day_counts AS t
        SELECT user_id, (ts AT TIME ZONE 'UTC')::date, event, count(*), min(ts), max(ts)
        FROM new_events WHERE event IS NOT NULL GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
        ON CONFLICT (user_id, day, event) DO UPDATE SET events = t.events + excluded.events,
            first_ts = LEAST(t.first_ts, excluded.first_ts),
            last_ts = GREATEST(t.last_ts, excluded.last_ts);
        INSERT INTO user_sessions AS t
        SELECT user_id, session_id, min(ts), max(ts), count(*)
        FROM new_events WHERE event IS NOT NULL AND session_id IS NOT NULL
        GROUP BY 1, 2 ORDER BY 1, 2
        ON CONFLICT (user_id, session_id) DO UPDATE SET start = LEAST(t.start, excluded.start),
            last = GREATEST(t.last, excluded.last), events = t.events + excluded.events;
        RETURN NULL;
    END
    $$
    """,
    "CREATE TRIGGER user_summaries_add AFTER INSERT ON events "
    "REFERENCING NEW TABLE AS new_events FOR EACH STATEMENT EXECUTE FUNCTION user_summaries_add()",
    "INSERT INTO user_day_counts (user_id, day, event, events, first_ts, last_ts) "
    "SELECT user_id, (ts AT TIME ZONE 'UTC')::date, event, count(*), min(ts), max(ts) "
    "FROM events WHERE event IS NOT NULL GROUP BY 1, 2, 3",
    "INSERT INTO user_sessions (user_id, session_id, start, last, events) "
    "SELECT user_id, session_id, min(ts), max(ts), count(*) FROM events "
    "WHERE event IS NOT NULL AND session_id IS NOT NULL GROUP BY 1, 2",
    # After the backfill: one sort instead of an index insert per row.
    "CREATE INDEX user_sessions_by_start ON user_sessions (user_id, start DESC, session_id DESC)",
]

_DOWNGRADE = [
    "DROP TRIGGER user_summaries_add ON events",
    "DROP FUNCTION user_summaries_add()",
    "DROP INDEX IF EXISTS events_without_session",
    "DROP TABLE user_sessions",
    "DROP TABLE user_day_counts",
]


def upgrade() -> None:
    for statement in _UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in _DOWNGRADE:
        op.execute(statement)
