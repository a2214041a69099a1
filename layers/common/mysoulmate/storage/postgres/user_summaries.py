"""Per-user summaries in PostgreSQL (`analytics.user_summary`; migration 0011).

``user_day_counts`` holds each user's track events per (UTC day, event) with the first and
last time; ``user_sessions`` one row per (user, session id). A statement trigger on
``events`` (migration 0011) adds the rows every INSERT really inserted, in its transaction:
ingest's batch and a link's move alike, so they count exactly once, as `summary_delta` would,
whichever release wrote them. Deletes are ours: an erasure's and a linked visitor's rows
(`remove`). Rows are upserted in key order right after the events, so concurrent batches
queue rather than deadlock. A read is one REPEATABLE READ snapshot.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from psycopg.cursor import Cursor

from mysoulmate.analytics.date_range import DateRange
from mysoulmate.analytics.ports import EventPoint, SessionFigures, UserSummary, time_key
from mysoulmate.analytics.user_summary import (
    TimeBounds,
    bounds_of,
    clipped_sessions,
    newest_first,
    unnamed_sessions,
)
from mysoulmate.storage.postgres.pooling import Conn

# First and last seen over the whole history: the earliest and latest day rows only.
_SEEN = (
    "SELECT (SELECT min(first_ts) FROM user_day_counts WHERE user_id = %(user)s AND day = "
    "(SELECT min(day) FROM user_day_counts WHERE user_id = %(user)s)), "
    "(SELECT max(last_ts) FROM user_day_counts WHERE user_id = %(user)s AND day = "
    "(SELECT max(day) FROM user_day_counts WHERE user_id = %(user)s))"
)
_COUNTS = "SELECT event, sum(events) FROM user_day_counts WHERE user_id = %(user)s"
# Matches the partial index events_without_session: old events only, none on recent data.
_UNNAMED = (
    "SELECT ts, event, message_id FROM events "
    "WHERE user_id = %(user)s AND session_id IS NULL AND event IS NOT NULL"
)
_SESSIONS = "SELECT session_id, start, last, events FROM user_sessions WHERE user_id = %(user)s"


def remove(conn: Conn, user_id: str) -> None:
    """Delete the user's rows (caller's transaction, the user's lock held)."""
    conn.execute("DELETE FROM user_day_counts WHERE user_id = %s", (user_id,))
    conn.execute("DELETE FROM user_sessions WHERE user_id = %s", (user_id,))


def read(conn: Conn, user_id: str, days: DateRange | None, max_sessions: int) -> UserSummary:
    """The summary from the summary rows, in one snapshot and (but for sessions crossing an
    end of the range, read from their events) one round trip."""
    bounds = bounds_of(days)
    args: dict[str, Any] = {"user": user_id, "most": max_sessions}
    counts, unnamed, sessions = _COUNTS, _UNNAMED, _SESSIONS
    if days is not None and bounds is not None:
        args |= {"first": days.start, "last": days.end, "low": bounds[0], "high": bounds[1]}
        counts += " AND day BETWEEN %(first)s AND %(last)s"
        unnamed += " AND ts BETWEEN %(low)s::timestamptz AND %(high)s::timestamptz"
        sessions += " AND start <= %(high)s::timestamptz AND last >= %(low)s::timestamptz"
    else:
        sessions += " ORDER BY start DESC, session_id DESC LIMIT %(most)s"
    with conn.pipeline(), conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        seen = conn.execute(_SEEN, args)
        by_event = conn.execute(counts + " GROUP BY event ORDER BY event", args)
        old = conn.execute(unnamed + " ORDER BY ts, message_id", args)
        total = (
            conn.execute("SELECT count(*) FROM user_sessions WHERE user_id = %(user)s", args)
            if bounds is None
            else None
        )
        found = _sessions(conn.execute(sessions, args))
        first, last = seen.fetchone() or (None, None)
        event_counts = {event: int(n) for event, n in by_event.fetchall()}
        unnamed_found = unnamed_sessions([EventPoint(_key(t), e, m) for t, e, m in old])
        if total is None:
            named = clipped_sessions(found, bounds, lambda s, b: _inside(conn, user_id, s, b))
            listed = len(named)
        else:
            named, listed = found, int((total.fetchone() or (0,))[0])
    return UserSummary(
        first_seen=None if first is None else _key(first),
        last_seen=None if last is None else _key(last),
        event_counts=event_counts,
        sessions=listed + len(unnamed_found),
        recent_sessions=newest_first(named + unnamed_found)[:max_sessions],
    )


def _key(moment: datetime) -> str:
    return time_key(moment.astimezone(UTC))


def _sessions(cursor: Cursor[Any]) -> list[SessionFigures]:
    rows = cursor.fetchall()
    return [SessionFigures(sid, _key(start), _key(end), int(n)) for sid, start, end, n in rows]


def _inside(
    conn: Conn, user_id: str, session: SessionFigures, bounds: TimeBounds
) -> SessionFigures | None:
    """The part of ``session`` between ``bounds``, from its events there."""
    first, last, n = conn.execute(
        "SELECT min(ts), max(ts), count(*) FROM events WHERE user_id = %s AND session_id = %s "
        "AND event IS NOT NULL AND ts BETWEEN %s::timestamptz AND %s::timestamptz",
        (user_id, session.session_id, *bounds),
    ).fetchone() or (None, None, 0)
    if not n:
        return None
    return SessionFigures(session.session_id, _key(first), _key(last), int(n))
