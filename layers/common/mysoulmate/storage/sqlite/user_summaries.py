"""Per-user summaries on the embedded store (`analytics.user_summary`).

``user_day_counts`` holds each user's track events per (day, event) with the first and last
time; ``user_sessions`` one row per (user, session id). Both are added to in the write
transaction that stores the events (`add`), rebuilt from a user's events when their history
moves (`rebuild`), and deleted with the user. Events without a session id (stored before
session ids existed) are found through a partial index and grouped when read.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

from mysoulmate.analytics.date_range import DateRange
from mysoulmate.analytics.ports import EventPoint, SessionFigures, UserSummary
from mysoulmate.analytics.user_summary import (
    SummaryDelta,
    TimeBounds,
    bounds_of,
    clipped_sessions,
    newest_first,
    unnamed_sessions,
)

Reader = Callable[[str, Sequence[Any]], list[Any]]

# Run in the upgrade to schema 6, after the session id column exists (schema 4).
CREATE = (
    "CREATE TABLE IF NOT EXISTS user_day_counts ("
    " user_id TEXT NOT NULL, day TEXT NOT NULL, event TEXT NOT NULL,"
    " events INTEGER NOT NULL, first_ts TEXT NOT NULL, last_ts TEXT NOT NULL,"
    " PRIMARY KEY (user_id, day, event)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS user_sessions ("
    " user_id TEXT NOT NULL, session_id TEXT NOT NULL,"
    " start TEXT NOT NULL, last TEXT NOT NULL, events INTEGER NOT NULL,"
    " PRIMARY KEY (user_id, session_id)) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS user_sessions_by_start"
    " ON user_sessions (user_id, start DESC, session_id DESC)",
    # A range's sessions: those ending after its start (recent ranges are the usual ones).
    "CREATE INDEX IF NOT EXISTS user_sessions_by_last ON user_sessions (user_id, last)",
    "CREATE INDEX IF NOT EXISTS events_without_session ON events (user_id, ts, message_id)"
    " WHERE session_id IS NULL AND event IS NOT NULL",
)

_ADD_COUNTS = (
    "INSERT INTO user_day_counts VALUES (?,?,?,?,?,?) ON CONFLICT DO UPDATE SET "
    "events = events + excluded.events, first_ts = min(first_ts, excluded.first_ts), "
    "last_ts = max(last_ts, excluded.last_ts)"
)
_ADD_SESSIONS = (
    "INSERT INTO user_sessions VALUES (?,?,?,?,?) ON CONFLICT DO UPDATE SET "
    "start = min(start, excluded.start), last = max(last, excluded.last), "
    "events = events + excluded.events"
)


def create(conn: sqlite3.Connection) -> None:
    """The tables and indexes, filled from the events already stored (caller's transaction)."""
    for statement in CREATE:
        conn.execute(statement)
    rebuild(conn, None)


def add(conn: sqlite3.Connection, delta: SummaryDelta) -> None:
    """Add newly stored events (caller holds the write transaction)."""
    if not delta:
        return
    conn.executemany(
        _ADD_COUNTS,
        [(u, d, e, s.events, s.first, s.last) for (u, d, e), s in delta.day_counts.items()],
    )
    conn.executemany(
        _ADD_SESSIONS,
        [(u, sid, s.first, s.last, s.events) for (u, sid), s in delta.sessions.items()],
    )


def remove(conn: sqlite3.Connection, user_id: str) -> None:
    conn.execute("DELETE FROM user_day_counts WHERE user_id = ?", (user_id,))
    conn.execute("DELETE FROM user_sessions WHERE user_id = ?", (user_id,))


def rebuild(conn: sqlite3.Connection, user_id: str | None) -> None:
    """Derive the summaries of one user (None: everyone) from their stored events again."""
    where, args = ("user_id = ? AND", (user_id,)) if user_id else ("", ())
    if user_id is not None:
        remove(conn, user_id)
    else:  # a database opened by an older release after a newer one: start over
        conn.execute("DELETE FROM user_day_counts")
        conn.execute("DELETE FROM user_sessions")
    counts = "user_id, substr(ts, 1, 10), event, count(*), min(ts), max(ts)"
    conn.execute(
        f"INSERT INTO user_day_counts SELECT {counts} FROM events WHERE {where} "  # noqa: S608 - constants
        "event IS NOT NULL GROUP BY 1, 2, 3",
        args,
    )
    sessions = "user_id, session_id, min(ts), max(ts), count(*)"
    conn.execute(
        f"INSERT INTO user_sessions SELECT {sessions} FROM events WHERE {where} "  # noqa: S608 - constants
        "event IS NOT NULL AND session_id IS NOT NULL GROUP BY 1, 2",
        args,
    )


def read(run: Reader, user_id: str, days: DateRange | None, max_sessions: int) -> UserSummary:
    """The summary from the summary rows: the user's days (within ``days``) and sessions, and
    only those events of a session that crosses an end of the range."""
    bounds = bounds_of(days)
    first = run(
        "SELECT min(first_ts) FROM user_day_counts WHERE user_id = ? AND day = "
        "(SELECT min(day) FROM user_day_counts WHERE user_id = ?)",
        (user_id, user_id),
    )[0][0]
    last = run(
        "SELECT max(last_ts) FROM user_day_counts WHERE user_id = ? AND day = "
        "(SELECT max(day) FROM user_day_counts WHERE user_id = ?)",
        (user_id, user_id),
    )[0][0]
    count_query = "SELECT event, sum(events) FROM user_day_counts WHERE user_id = ?"
    count_args: list[Any] = [user_id]
    if days is not None:
        count_query += " AND day BETWEEN ? AND ?"
        count_args += [days.start.isoformat(), days.end.isoformat()]
    counts = {event: int(n) for event, n in run(count_query + " GROUP BY event", count_args)}
    unnamed = unnamed_sessions(_unnamed_points(run, user_id, bounds))
    if bounds is None:
        total = run("SELECT count(*) FROM user_sessions WHERE user_id = ?", (user_id,))[0][0]
        named = _sessions(
            run(
                "SELECT session_id, start, last, events FROM user_sessions WHERE user_id = ? "
                "ORDER BY start DESC, session_id DESC LIMIT ?",
                (user_id, max_sessions),
            )
        )
    else:
        overlapping = _sessions(
            run(
                "SELECT session_id, start, last, events FROM user_sessions "
                "INDEXED BY user_sessions_by_last WHERE user_id = ? AND start <= ? AND last >= ?",
                (user_id, bounds[1], bounds[0]),
            )
        )
        named = clipped_sessions(overlapping, bounds, lambda s, b: _inside(run, user_id, s, b))
        total = len(named)
    return UserSummary(
        first_seen=first,
        last_seen=last,
        event_counts=counts,
        sessions=int(total) + len(unnamed),
        recent_sessions=newest_first(named + unnamed)[:max_sessions],
    )


def _sessions(rows: list[Any]) -> list[SessionFigures]:
    return [SessionFigures(sid, start, last, int(n)) for sid, start, last, n in rows]


def _unnamed_points(run: Reader, user_id: str, bounds: TimeBounds | None) -> list[EventPoint]:
    query = (
        "SELECT ts, event, message_id FROM events INDEXED BY events_without_session "
        "WHERE user_id = ? AND session_id IS NULL AND event IS NOT NULL"
    )
    args: list[Any] = [user_id]
    if bounds is not None:
        query += " AND ts BETWEEN ? AND ?"
        args += list(bounds)
    return [EventPoint(*row) for row in run(query + " ORDER BY ts, message_id", args)]


def _inside(
    run: Reader, user_id: str, session: SessionFigures, bounds: TimeBounds
) -> SessionFigures | None:
    first, last, n = run(
        "SELECT min(ts), max(ts), count(*) FROM events WHERE user_id = ? AND session_id = ? "
        "AND event IS NOT NULL AND ts BETWEEN ? AND ?",
        (user_id, session.session_id, *bounds),
    )[0]
    return SessionFigures(session.session_id, first, last, int(n)) if n else None
