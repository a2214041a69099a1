"""The read side of PostgresEventStore, as a mixin whose methods borrow a connection through
the store's `_conn` and never write: profiles, a user's events (keyset pages on (ts,
message_id)) and summary (`user_summaries`), people's current sessions, the daily rollups
(counts, session figures, revenue, Roaring user sets, first-seen sets), funnel candidates
streamed in user order, and audit pages.
"""

from __future__ import annotations

import itertools
from collections.abc import Collection, Generator, Iterator, Sequence
from contextlib import AbstractContextManager, closing, contextmanager
from datetime import UTC, date, datetime
from operator import itemgetter
from typing import TYPE_CHECKING, Any, cast

from psycopg import sql

from mysoulmate.analytics.date_range import DateRange
from mysoulmate.analytics.models import AuditEntry, AuditPage, EventPage, Profile, SessionMark
from mysoulmate.analytics.ports import (
    ANY_EVENT,
    CountRow,
    EventPoint,
    RevenueRow,
    SessionRow,
    UserSet,
    UsersRow,
    UserSummary,
    time_key,
)
from mysoulmate.analytics.rollups import split_session_rows
from mysoulmate.storage import bitmap
from mysoulmate.storage.paging import decode_cursor, next_page_cursor
from mysoulmate.storage.postgres import user_sets, user_summaries
from mysoulmate.storage.postgres.pooling import Conn
from mysoulmate.storage.postgres.rollups import WEEK_PLATFORM
from mysoulmate.storage.postgres.rows import (
    _STORED_COLUMNS,
    _cursor_text,
    _cursor_time,
    _storable_text,
    _stored_event,
    _utc,
)

FUNNEL_FETCH_ROWS = 2000
# `ports.time_key` in to_char's words (on the UTC wall time): the keys the funnel engine compares.
_TIME_KEY_FORMAT = 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'


def _stream(cur: Any, query: Any, params: Any) -> Generator[tuple[Any, ...], None, None]:
    """`Cursor.stream` (a generator, typed as an iterator), to be closed by the caller."""
    return cast(
        "Generator[tuple[Any, ...], None, None]", cur.stream(query, params, size=FUNNEL_FETCH_ROWS)
    )


class PostgresReads:
    """Queries of PostgresEventStore that only read; the store supplies `_conn` and
    `_daily_set_cache`."""

    _daily_set_cache: user_sets.DailySetCache

    if TYPE_CHECKING:

        def _conn(self) -> AbstractContextManager[Conn]: ...

    def get_profile(self, user_id: str) -> Profile | None:
        if not _storable_text(user_id):
            return None
        with self._conn() as conn:
            row = conn.execute("SELECT doc FROM profiles WHERE user_id = %s", (user_id,)).fetchone()
        return Profile.model_validate(row[0]) if row else None

    # -- event reads -------------------------------------------------------------------------

    def list_events(
        self,
        user_id: str,
        limit: int,
        cursor: str | None,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        event: str | None = None,
    ) -> EventPage:
        conditions = [sql.SQL("user_id = %s")]
        args: list[Any] = [user_id]
        if cursor:
            position = decode_cursor(cursor, {"ts", "id"})
            conditions.append(sql.SQL("(ts, message_id) < (%s, %s)"))
            args += [_cursor_time(position["ts"]), _cursor_text(position["id"])]
        if start is not None:
            conditions.append(sql.SQL("ts >= %s"))
            args.append(_utc(start))
        if end is not None:
            conditions.append(sql.SQL("ts <= %s"))
            args.append(_utc(end))
        if event is not None:
            conditions.append(sql.SQL("event = %s"))
            args.append(event)
        if not all(_storable_text(a) for a in args if isinstance(a, str)):
            return EventPage(events=[])
        query = sql.SQL(
            "SELECT {} FROM events WHERE {} ORDER BY ts DESC, message_id DESC LIMIT %s"
        ).format(sql.SQL(_STORED_COLUMNS), sql.SQL(" AND ").join(conditions))
        args.append(limit + 1)
        with self._conn() as conn:
            rows = conn.execute(query, args).fetchall()
        events = [_stored_event(row) for row in rows]
        next_cursor = next_page_cursor(
            events, limit, lambda e: {"ts": time_key(e.timestamp), "id": e.messageId}
        )
        return EventPage(events=events[:limit], next_cursor=next_cursor)

    def user_event_points(self, user_id: str) -> list[EventPoint]:
        if not _storable_text(user_id):
            return []
        with self._conn() as conn:
            rows = conn.execute(
                "SELECT ts, event, message_id, session_id FROM events WHERE user_id = %s "
                "AND event IS NOT NULL ORDER BY ts, message_id",
                (user_id,),
            ).fetchall()
        return [
            EventPoint(time_key(ts.astimezone(UTC)), event, mid, sid)
            for ts, event, mid, sid in rows
        ]

    def user_summary(self, user_id: str, days: DateRange | None, max_sessions: int) -> UserSummary:
        """From the summary rows, in one read-only snapshot (`user_summaries`)."""
        if not _storable_text(user_id):  # nothing of such a user can be stored
            return UserSummary(None, None, {}, 0, [])
        with self._conn() as conn:
            return user_summaries.read(conn, user_id, days, max_sessions)

    def session_marks(
        self, users: Collection[str], identified: Collection[str] = ()
    ) -> dict[str, SessionMark]:
        wanted = sorted({u for u in users if _storable_text(u)})
        if not wanted:
            return {}
        with self._conn() as conn:
            rows = conn.execute(
                "SELECT user_id, session_id, start, last FROM session_marks "
                "WHERE user_id = ANY(%s::text[])",
                (wanted,),
            ).fetchall()
        return {
            user: SessionMark(sid, start.astimezone(UTC), last.astimezone(UTC))
            for user, sid, start, last in rows
        }

    def erased_users(self, users: Collection[str]) -> dict[str, datetime]:
        wanted = sorted({u for u in users if _storable_text(u)})
        if not wanted:
            return {}
        with self._conn() as conn:
            rows = conn.execute(
                "SELECT user_id, erased_at FROM erasures WHERE user_id = ANY(%s::text[])",
                (wanted,),
            ).fetchall()
        return {user: erased_at.astimezone(UTC) for user, erased_at in rows}

    # -- rollups -----------------------------------------------------------------------------

    def rollup_count_rows(self, start: date, end: date) -> list[CountRow]:
        """daily_counts as stored: event counts and the session figures beside them."""
        with self._conn() as conn:
            rows = conn.execute(
                "SELECT day, platform, event, events FROM daily_counts "
                "WHERE day BETWEEN %s AND %s ORDER BY day, platform, event",
                (start, end),
            ).fetchall()
        return [CountRow(day, platform, event, int(n)) for day, platform, event, n in rows]

    def rollup_counts(self, start: date, end: date) -> list[CountRow]:
        return split_session_rows(self.rollup_count_rows(start, end))[0]

    def rollup_sessions(self, start: date, end: date) -> list[SessionRow]:
        return split_session_rows(self.rollup_count_rows(start, end))[1]

    def rollup_revenue(self, start: date, end: date) -> list[RevenueRow]:
        with self._conn() as conn:
            rows = conn.execute(
                "SELECT day, platform, currency, micros FROM daily_revenue "
                "WHERE day BETWEEN %s AND %s ORDER BY day, platform, currency",
                (start, end),
            ).fetchall()
        return [RevenueRow(day, platform, cur, int(micros)) for day, platform, cur, micros in rows]

    def rollup_users(self, start: date, end: date, *, by_event: bool) -> list[UsersRow]:
        """Through the store's `user_sets.DailySetCache`: unchanged rows are not fetched."""
        params = {
            "start": start,
            "end": end,
            "all": by_event,
            "any": ANY_EVENT,
            "week": WEEK_PLATFORM,
        }
        with self._conn() as conn:
            rows = user_sets.read_daily(
                conn,
                self._daily_set_cache,
                sql.SQL(
                    "day BETWEEN %(start)s AND %(end)s AND (%(all)s OR event = %(any)s) "
                    "AND platform <> %(week)s"
                ),
                params,
                recent=end,  # ingest writes today's rows: a range's last day may have changed
                read=(start, end, by_event),
            )
        result: list[UsersRow] = []
        for (day, platform, event), chunks in itertools.groupby(rows, key=itemgetter(0, 1, 2)):
            users = bitmap.union_frozen([chunk[4] for chunk in chunks])
            if users:  # a set emptied by erasures is no data
                result.append(UsersRow(day, platform, event, users))
        return result

    def first_seen_users(self, start: date, end: date) -> dict[date, UserSet]:
        """One row per day and chunk of 2^18 users (first_seen_sets), not one per user."""
        with self._conn() as conn:
            rows = conn.execute(
                "SELECT day, users FROM first_seen_sets WHERE day BETWEEN %s AND %s "
                "ORDER BY day, chunk",
                (start, end),
                binary=True,
            ).fetchall()
        return _sets_by_day(rows)

    def weekly_active_users(self, start: date, end: date) -> dict[date, UserSet]:
        """One row per week and chunk of 2^18 users (activity_sets, migration 0012)."""
        with self._conn() as conn:
            rows = conn.execute(
                "SELECT day, users FROM activity_sets WHERE platform = %s AND event = %s "
                "AND day BETWEEN %s AND %s ORDER BY day, chunk",
                (WEEK_PLATFORM, ANY_EVENT, start, end),
                binary=True,
            ).fetchall()
        return _sets_by_day(rows)

    def empty_user_set(self) -> bitmap.UserBitmap:
        return bitmap.UserBitmap()

    @contextmanager
    def _analytic_stream(self, query: Any, params: Any) -> Iterator[Iterator[tuple[Any, ...]]]:
        """The rows of a funnel read, streamed a few thousand at a time, with JIT off: these
        queries' estimates pass `jit_above_cost`, and compiling never paid off (at 1M events,
        the next-times seeks: 643 ms with JIT, 521 ms without; step times and strict funnels
        within noise). `SET LOCAL` lasts for this read's transaction only.

        closing(): a stream left early (the caller stopped or failed) is ended here, which
        cancels the query; else its lock on the connection outlives it and a pool's
        rollback of the returned connection waits on that lock forever."""
        with self._conn() as conn, conn.transaction(), conn.cursor() as cur:
            cur.execute("SET LOCAL jit = off")
            with closing(_stream(cur, query, params)) as rows:
                yield rows

    def funnel_candidates(
        self,
        first_event: str,
        starts_from: datetime,
        starts_to: datetime,
        until: datetime,
        events: frozenset[str] | None,
    ) -> Iterator[tuple[str, list[EventPoint]]]:
        """Streamed in user order from one query, a few thousand rows at a time."""
        names = None if events is None else sorted(e for e in events if _storable_text(e))
        if not _storable_text(first_event):
            return
        query = (
            "WITH starters AS (SELECT DISTINCT user_id FROM events WHERE event IS NOT NULL "
            "AND event = %(first)s AND ts BETWEEN %(from)s AND %(to)s) "
            "SELECT e.user_id, e.ts, e.event, e.message_id FROM events e "
            "JOIN starters s ON s.user_id = e.user_id "
            "WHERE e.event IS NOT NULL "
            "AND e.ts BETWEEN %(from)s AND %(until)s "
            "AND (%(all)s OR e.event = ANY(%(names)s::text[])) "
            "ORDER BY e.user_id, e.ts, e.message_id"
        )
        params = {
            "first": first_event,
            "from": _utc(starts_from),
            "to": _utc(starts_to),
            "until": _utc(until),
            "all": names is None,
            "names": names or [],
        }
        with self._analytic_stream(query, params) as rows:
            for user_id, group in itertools.groupby(rows, key=lambda r: r[0]):
                yield (
                    user_id,
                    [
                        EventPoint(time_key(ts.astimezone(UTC)), event, mid)
                        for _, ts, event, mid in group
                    ],
                )

    def funnel_step_times(
        self,
        first_event: str,
        starts_from: datetime,
        starts_to: datetime,
        until: datetime,
        events: frozenset[str],
    ) -> Iterator[tuple[str, dict[str, list[str]]]]:
        """One query streamed in user order: per step name, an index-only scan of
        `events_by_name_user_time` aggregated per user (their time keys), the names merged
        by user id (a Merge Append, no sort)."""
        names = sorted(e for e in events if _storable_text(e))
        if not names or not _storable_text(first_event):
            return
        arm = sql.SQL(
            "(SELECT user_id, event, string_agg(to_char(ts AT TIME ZONE 'UTC', {key}), ',') "
            "FROM events WHERE event IS NOT NULL AND event = {name} "
            "AND ts BETWEEN %(from)s AND %(until)s GROUP BY user_id, event)"
        )
        query = sql.SQL("{} ORDER BY user_id").format(
            sql.SQL(" UNION ALL ").join(
                arm.format(key=sql.Literal(_TIME_KEY_FORMAT), name=sql.Literal(name))
                for name in names
            )
        )
        params = {"from": _utc(starts_from), "until": _utc(until)}
        with self._analytic_stream(query, params) as rows:
            for user_id, group in itertools.groupby(rows, key=itemgetter(0)):
                times = {name: joined.split(",") for _, name, joined in group}
                for keys in times.values():
                    keys.sort()  # the scan's order, but string_agg does not promise it
                yield user_id, times

    def funnel_next_times(
        self, steps: Sequence[str], chained: bool, starts_from: datetime, starts_to: datetime
    ) -> Iterator[tuple[str, datetime, list[datetime | None]]]:
        """One query streamed: the distinct starts from an index-only scan of
        `events_by_name_user_time`, then per step a LATERAL seek in the same index (the
        first time of that user and name at or after the anchor: LIMIT 1 on the index order)."""
        names = list(itertools.takewhile(_storable_text, steps))  # no event can carry the rest
        if not names:
            return
        seek = sql.SQL(
            "LEFT JOIN LATERAL (SELECT ts FROM events WHERE event IS NOT NULL "
            "AND event = {name} AND user_id = s.user_id AND ts >= {anchor}{gate} "
            "ORDER BY ts LIMIT 1) {alias} ON true"
        )
        # Not chained, a step after a missing one is not sought (a one-time filter); chained,
        # its NULL anchor finds nothing anyway.
        gate = sql.SQL(" AND {} IS NOT NULL")
        seeks = [
            seek.format(
                name=sql.Literal(name),
                anchor=sql.Identifier(f"x{k - 1}" if chained and k > 1 else "s", "ts"),
                gate=gate.format(sql.Identifier(f"x{k - 1}", "ts"))
                if not chained and k > 1
                else sql.SQL(""),
                alias=sql.Identifier(f"x{k}"),
            )
            for k, name in enumerate(names[1:], 1)
        ]
        query = sql.SQL(
            "SELECT s.user_id, s.ts{later} FROM (SELECT DISTINCT user_id, ts FROM events "
            "WHERE event IS NOT NULL AND event = {first} AND ts BETWEEN %(from)s AND %(to)s) s "
            "{seeks} ORDER BY s.user_id, s.ts"  # (the planner then reads starts in index order)
        ).format(
            later=sql.SQL("").join(
                sql.SQL(", {}").format(sql.Identifier(f"x{k}", "ts")) for k in range(1, len(names))
            ),
            first=sql.Literal(names[0]),
            seeks=sql.SQL(" ").join(seeks),
        )
        params = {"from": _utc(starts_from), "to": _utc(starts_to)}
        with self._analytic_stream(query, params) as rows:
            for user_id, start, *later in rows:
                yield user_id, start, later

    # -- audit -------------------------------------------------------------------------------

    def list_audit(self, limit: int, cursor: str | None, subject: str | None = None) -> AuditPage:
        conditions = [sql.SQL("TRUE")]
        args: list[Any] = []
        if subject is not None:
            if not _storable_text(subject):
                return AuditPage(entries=[])
            conditions.append(sql.SQL("subject = %s"))
            args.append(subject)
        if cursor:
            position = decode_cursor(cursor, {"at", "id"})
            conditions.append(sql.SQL("(at, id) < (%s, %s)"))
            args += [_cursor_time(position["at"]), _cursor_text(position["id"])]
        query = sql.SQL(
            "SELECT id, at, actor, action, subject, details FROM audit_log WHERE {} "
            "ORDER BY at DESC, id DESC LIMIT %s"
        ).format(sql.SQL(" AND ").join(conditions))
        args.append(limit + 1)
        with self._conn() as conn:
            rows = conn.execute(query, args).fetchall()
        entries = [
            AuditEntry(
                id=id_, at=at.astimezone(UTC), actor=actor, action=action, subject=subj, details=det
            )
            for id_, at, actor, action, subj, det in rows
        ]
        next_cursor = next_page_cursor(entries, limit, lambda e: {"at": time_key(e.at), "id": e.id})
        return AuditPage(entries=entries[:limit], next_cursor=next_cursor)


def _sets_by_day(rows: Sequence[Sequence[Any]]) -> dict[date, UserSet]:
    """(day, chunk's users) rows in day order → each day's set, its chunks unioned; a set
    emptied by erasures is no data."""
    found: dict[date, UserSet] = {}
    for day, chunks in itertools.groupby(rows, key=lambda r: r[0]):
        users = bitmap.union_all([bitmap.decode(data) for _, data in chunks])
        if users:
            found[day] = users
    return found
