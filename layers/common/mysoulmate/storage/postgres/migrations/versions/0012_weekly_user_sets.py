"""Weekly user sets: activity_sets takes over from daily_user_sets, with one set per ISO week.

Revision ID: 0012
Revises: 0011
Create Date: 2027-01-19

``activity_sets`` has daily_user_sets' columns and rows, plus, per ISO week (its Monday) and
chunk of 2^18 ordinals, the users with a track event that week on any platform, under the
platform name ``"\\x1fweek"`` (`rollups.WEEK_PLATFORM`) and the any-event name: the union of
the week's any-event daily sets, built here. Weekly cohorts read one row per week instead of
one per day and platform.

Expand, then fence, as 0010: ``daily_user_sets`` is kept (the previous release, still serving
during a deploy, reads it) but a statement trigger refuses every write to it, so that release
cannot change a day's set behind its week's back: such a transaction fails whole and is
retried (the queue redelivers the batch, to the new release once it serves; an erasure or
link request fails and is sent again). The trigger is created first: its lock holds every
write to daily_user_sets until this migration commits, so the copy misses nothing. The next
release drops daily_user_sets and the trigger. Downgrade drops activity_sets and the fence.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from typing import Any

from alembic import op

from mysoulmate.storage import bitmap

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen here: the names this revision writes.
WEEK_PLATFORM = "\x1fweek"
ANY_EVENT = ""
WRITE_ROWS = 1000

_FENCE = [
    """
    CREATE FUNCTION daily_user_sets_retired() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'daily_user_sets is read-only since migration 0012 (user sets are in '
            'activity_sets): this release is older than the database schema'
            USING ERRCODE = 'read_only_sql_transaction';
    END
    $$
    """,
    # Per statement: an UPDATE or DELETE that matches no row is refused too.
    "CREATE TRIGGER daily_user_sets_retired BEFORE INSERT OR UPDATE OR DELETE "
    "ON daily_user_sets FOR EACH STATEMENT EXECUTE FUNCTION daily_user_sets_retired()",
]

_CREATE = [
    "CREATE TABLE activity_sets (LIKE daily_user_sets INCLUDING ALL)",
    "INSERT INTO activity_sets SELECT * FROM daily_user_sets",
]

_DOWNGRADE = [
    "DROP TRIGGER daily_user_sets_retired ON daily_user_sets",
    "DROP FUNCTION daily_user_sets_retired()",
    "DROP TABLE activity_sets",
]


def upgrade() -> None:
    for statement in [*_FENCE, *_CREATE]:
        op.execute(statement)
    conn: Any = op.get_bind().connection.driver_connection
    weeks = list(_weekly_sets(conn))
    with conn.cursor() as cursor:
        for start in range(0, len(weeks), WRITE_ROWS):
            cursor.executemany(
                "INSERT INTO activity_sets (day, platform, event, chunk, users) "
                "VALUES (%s, %s, %s, %s, %s)",
                weeks[start : start + WRITE_ROWS],
            )


def downgrade() -> None:
    for statement in _DOWNGRADE:
        op.execute(statement)


def _weekly_sets(conn: Any) -> Iterator[tuple[Any, ...]]:
    """The any-event daily rows, unioned per (ISO week, chunk)."""
    with conn.cursor(name="any_event_sets") as rows:
        rows.itersize = WRITE_ROWS
        rows.execute(
            "SELECT day - (extract(isodow FROM day)::int - 1), chunk, users FROM daily_user_sets "
            "WHERE event = %s ORDER BY 1, 2",
            (ANY_EVENT,),
        )
        for (week, chunk), group in itertools.groupby(rows, key=lambda r: (r[0], r[1])):
            users = bitmap.union_all([bitmap.decode(data) for *_, data in group])
            if users:
                yield week, WEEK_PLATFORM, ANY_EVENT, chunk, bitmap.encode(users)
