"""PostgreSQL (Aurora PostgreSQL on AWS) storage: events, profiles, exact daily rollups.

Ingest is a bulk path: COPY into a per-connection temporary stage table, one
`INSERT … ON CONFLICT DO NOTHING RETURNING` into events, then the rollup delta of exactly
the rows that were new, all in one transaction. A redelivered batch therefore adds nothing,
and rollup work grows with the distinct (day, platform, event) keys and users of a batch,
not with its events. docs/postgres.md describes the data model.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Protocol

import psycopg
from psycopg import postgres, sql
from psycopg.adapt import Dumper
from psycopg.pq import Format, TransactionStatus

from mysoulmate.analytics.models import (
    AuditEntry,
    AuditPage,
    EventPage,
    Profile,
    QueuedMessage,
    StoredEvent,
)
from mysoulmate.analytics.ports import (
    ANY_EVENT,
    CountRow,
    ErasureResult,
    EventPoint,
    MessageKey,
    ProfileUpdate,
    RevenueRow,
    StorageUnavailableError,
    StoreResult,
    UserSet,
    UsersRow,
    time_key,
)
from mysoulmate.analytics.rollups import UNKNOWN_PLATFORM, RollupDelta, rollup_delta
from mysoulmate.core.errors import InvalidRequestError
from mysoulmate.storage.bitmap import Bitmap
from mysoulmate.storage.paging import decode_cursor, next_page_cursor
from mysoulmate.storage.postgres.connection import (
    CONNECT_TIMEOUT_SECONDS,
    describe,
    require_head,
    safe_error,
)

Conn = psycopg.Connection[tuple[Any, ...]]

CHUNK_SHIFT = 16  # a daily_users row holds 2^16 ordinals (8 KiB): see migration 0001
CHUNK_MASK = (1 << CHUNK_SHIFT) - 1
IDLE_CHECK_SECONDS = 30.0  # a Lambda connection idle this long may have been cut while frozen
PROFILE_ATTEMPTS = 5
FUNNEL_FETCH_ROWS = 2000

_EVENT_COLUMNS = (
    "user_id, message_id, type, event, ts, received_at, platform, anonymous_id, properties, context"
)
_EVENT_TYPES = (
    "text", "text", "text", "text", "timestamptz", "timestamptz", "text", "text", "jsonb", "jsonb"
)  # fmt: skip
_STAGE_DDL = "CREATE TEMP TABLE IF NOT EXISTS events_stage (LIKE events) ON COMMIT DELETE ROWS"
_ESCAPED_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")
# json.dumps(value, ensure_ascii=False, allow_nan=False) without building an encoder per
# call; compact separators (jsonb keeps no formatting, so what is stored is the same).
_to_json = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode


class _JsonbTextDumper(Dumper):
    """jsonb for a binary COPY from JSON text _event_row already serialized and checked: the
    binary form is a version byte (1) and the text, which the server parses as it would
    the text form. Registered by oid only, on the COPY's cursor (after `set_types`)."""

    format = Format.BINARY
    oid = postgres.types["jsonb"].oid

    def dump(self, obj: str) -> bytes:
        return b"\x01" + obj.encode()


class UnstorableMessageError(ValueError):
    """A message PostgreSQL cannot hold as is (NUL characters, NaN, lone surrogates)."""


# -- connections ----------------------------------------------------------------------------


def _connect(info: str) -> Conn:
    return psycopg.connect(info, autocommit=True, connect_timeout=CONNECT_TIMEOUT_SECONDS)


class _Connections(Protocol):
    def connection(self) -> Any: ...  # a context manager yielding a Conn
    def close(self) -> None: ...


class _ProcessConnection:
    """Lambda: one connection per process, reused across invocations.

    A container serves one request at a time, so a pool would only add threads that are
    frozen between invocations anyway. After an idle spell the connection is checked once
    (the proxy or server may have cut it while the sandbox was frozen) and replaced if dead.
    A call made while the connection is busy (a funnel stream being consumed) gets a
    short-lived one of its own instead of corrupting the stream.
    """

    def __init__(self, info: str) -> None:
        self._info = info
        self._conn: Conn | None = None
        self._busy = False
        self._last_used = 0.0
        self._lock = threading.Lock()
        try:  # Lambda SnapStart: a connection restored from a snapshot is a dead socket
            from snapshot_restore_py import register_after_restore  # type: ignore[import-not-found]
        except ImportError:
            pass
        else:
            register_after_restore(self.close)

    @contextmanager
    def connection(self) -> Iterator[Conn]:
        with self._lock:
            borrowed = not self._busy
            self._busy = True
        if not borrowed:
            with _connect(self._info) as extra:
                yield extra
            return
        try:
            conn = self._ready()
            yield conn
            if conn.info.transaction_status != TransactionStatus.IDLE:
                conn.close()  # abandoned mid-stream or mid-transaction: start clean next time
        except BaseException:
            if self._conn is not None and (
                self._conn.broken or self._conn.info.transaction_status != TransactionStatus.IDLE
            ):
                self._conn.close()
            raise
        finally:
            self._last_used = time.monotonic()
            with self._lock:
                self._busy = False

    def _ready(self) -> Conn:
        conn = self._conn
        if conn is not None and not conn.closed and not conn.broken:
            if time.monotonic() - self._last_used < IDLE_CHECK_SECONDS:
                return conn
            try:
                conn.execute("SELECT 1")
                return conn
            except psycopg.Error:
                conn.close()
        self._conn = _connect(self._info)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class _Pool:
    """Containers: request threads and the worker thread share a small pool."""

    def __init__(self, info: str, size: int) -> None:
        from psycopg_pool import ConnectionPool

        self._pool: Any = ConnectionPool(
            info,
            min_size=1,
            max_size=size,
            kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT_SECONDS},
            check=ConnectionPool.check_connection,  # drop connections the server closed
            open=False,
            timeout=CONNECT_TIMEOUT_SECONDS * 2,
            name="mysoulmate",
        )
        self._pool.open(wait=True, timeout=CONNECT_TIMEOUT_SECONDS * 2)

    def connection(self) -> Any:
        return self._pool.connection()

    def close(self) -> None:
        self._pool.close()


# -- the store ------------------------------------------------------------------------------


class PostgresEventStore:
    def __init__(self, conninfo: str, *, pool_size: int | None = None) -> None:
        """Connect and refuse to serve unless the schema is at this release's head.

        ``pool_size`` None: one reused connection (Lambda); else a pool of that many.
        """
        from psycopg_pool import PoolTimeout

        database, host = describe(conninfo)
        try:
            self._connections: _Connections = (
                _ProcessConnection(conninfo) if pool_size is None else _Pool(conninfo, pool_size)
            )
            with self._connections.connection() as conn:
                require_head(conn, conninfo)
        except (psycopg.Error, PoolTimeout) as exc:
            raise StorageUnavailableError(
                f"cannot reach PostgreSQL database {database} on {host}: {safe_error(exc)}"
            ) from None
        self._staged: weakref.WeakSet[Conn] = weakref.WeakSet()

    def close(self) -> None:
        self._connections.close()

    def pool_stats(self) -> dict[str, int] | None:
        """psycopg_pool's figures (pool_max, pool_size, pool_available, requests_waiting, …)
        when pooled (containers; read by /metrics); None for Lambda's one connection."""
        pool = getattr(self._connections, "_pool", None)
        return None if pool is None else dict(pool.get_stats())

    @contextmanager
    def _conn(self) -> Iterator[Conn]:
        """A connection; unreachable database or dropped connection → StorageUnavailableError."""
        from psycopg_pool import PoolTimeout

        try:
            with self._connections.connection() as conn:
                yield conn
        except (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout) as exc:
            raise StorageUnavailableError(f"postgres: {safe_error(exc)}") from exc

    # -- writes ------------------------------------------------------------------------------

    def insert_events(self, messages: Sequence[QueuedMessage]) -> StoreResult:
        # One pass: the first copy of a key wins, and only it is converted.
        staged: dict[MessageKey, QueuedMessage] = {}
        rows: list[tuple[Any, ...]] = []
        failed: dict[MessageKey, str] = {}
        for message in messages:
            key = message.key
            if key in staged or key in failed:
                continue
            try:
                rows.append(_event_row(message))
            except UnstorableMessageError as exc:
                failed[key] = f"postgres: {exc}"
            else:
                staged[key] = message
        new_keys: set[MessageKey] = set()
        if rows:
            try:
                with self._conn() as conn:
                    new_keys = self._insert(conn, rows, staged)
            except (psycopg.Error, StorageUnavailableError) as exc:
                reason = f"postgres: {safe_error(exc)}"
                return StoreResult(failed={m.key: reason for m in messages})
        rejected = sum(1 for m in messages if m.key in failed) if failed else 0
        return StoreResult(
            written=len(new_keys),
            duplicates=len(messages) - len(new_keys) - rejected,
            failed=failed,
            new_keys=new_keys,
        )

    def _insert(
        self,
        conn: Conn,
        rows: list[tuple[Any, ...]],
        messages: dict[MessageKey, QueuedMessage],
    ) -> set[MessageKey]:
        """Stage ``rows`` (the rows of ``messages``), insert them, and apply the rollup delta
        of the new ones, in one transaction; the keys of the new rows.

        Round trips: BEGIN, the COPY, then a pipeline (COPY cannot run in pipeline mode,
        hence the explicit BEGIN/COMMIT): the user-state lookup; the INSERT; the
        counts/revenue upserts with the bitmap chunks' INSERT and SELECT … FOR UPDATE; the
        bitmap UPDATE and first_seen upsert with the COMMIT. The rollups are worked out
        while the server looks up and inserts, as if every row were new (the usual case),
        and worked out again from the rows actually inserted when some were not.
        """
        conn.execute("BEGIN")
        try:
            if conn not in self._staged:
                conn.execute(_STAGE_DDL)
            with conn.cursor() as cur:
                cur.adapters.register_dumper(None, _JsonbTextDumper)
                with cur.copy(
                    f"COPY events_stage ({_EVENT_COLUMNS}) FROM STDIN (FORMAT BINARY)"
                ) as copy:
                    copy.set_types(_EVENT_TYPES)
                    for row in rows:
                        copy.write_row(row)
            with conn.pipeline():
                # The batch's users come from the stage table, not from a parameter: a large
                # text[] costs more to build in Python than the whole lookup costs the server.
                # Distinct users first: one index probe per user, not per event. It takes no
                # locks; _apply_delta copes with anything that changes after it (see there).
                found = conn.execute(
                    "SELECT s.user_id, o.ordinal, f.day FROM "
                    "(SELECT DISTINCT user_id FROM events_stage WHERE type = 'track') s "
                    "LEFT JOIN user_ordinals o ON o.user_id = s.user_id "
                    "LEFT JOIN first_seen f ON f.user_id = s.user_id"
                )
                # Python works while the server does: the delta as if every row were new
                # (the usual case) during the lookup, the plan during the INSERT. (Fetching a
                # result waits for every statement sent before it, hence this order.)
                delta = rollup_delta(messages.values())
                state = found.fetchall()
                # Sorted by key: two consumers inserting overlapping batches lock index
                # entries in the same order and cannot deadlock.
                inserted = conn.execute(
                    "INSERT INTO events SELECT * FROM events_stage "
                    "ORDER BY user_id, message_id ON CONFLICT DO NOTHING "
                    "RETURNING user_id, message_id"
                )
                plan = _plan(delta, state)
                new_keys: list[MessageKey] = inserted.fetchall()
                if len(new_keys) < len(messages):  # some were stored before: their share goes
                    plan = _plan(rollup_delta([messages[key] for key in new_keys]), state)
                if plan is not None:
                    _apply_delta(conn, plan)
                conn.execute("COMMIT")
        except BaseException:
            if not conn.closed and conn.info.transaction_status != TransactionStatus.IDLE:
                try:
                    conn.rollback()
                except psycopg.Error:
                    conn.close()  # cannot tell what state it is in: start clean next time
            raise
        self._staged.add(conn)
        return set(new_keys)

    def update_profile(self, user_id: str, update: ProfileUpdate) -> Profile:
        with self._conn() as conn:
            for _ in range(PROFILE_ATTEMPTS):
                with conn.transaction():
                    row = conn.execute(
                        "SELECT doc FROM profiles WHERE user_id = %s FOR UPDATE", (user_id,)
                    ).fetchone()
                    current = Profile.model_validate(row[0]) if row else None
                    merged = update(current)
                    merged.version = (current.version if current else 0) + 1
                    doc = merged.model_dump_json()
                    if current is not None:
                        conn.execute(
                            "UPDATE profiles SET doc = %s, version = %s WHERE user_id = %s",
                            (doc, merged.version, user_id),
                        )
                        return merged
                    # No row to lock: create it, and if another writer created it first,
                    # start over so its update is merged rather than overwritten.
                    created = conn.execute(
                        "INSERT INTO profiles (user_id, doc, version) VALUES (%s, %s, %s) "
                        "ON CONFLICT (user_id) DO NOTHING RETURNING 1",
                        (user_id, doc, merged.version),
                    ).fetchone()
                    if created:
                        return merged
        raise StorageUnavailableError(
            f"profile of {user_id!r} kept changing: gave up after {PROFILE_ATTEMPTS} attempts"
        )

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
            conditions.append(sql.SQL("type = 'track' AND event = %s"))
            args.append(event)
        if not all(_storable_text(a) for a in args if isinstance(a, str)):
            return EventPage(events=[])
        query = sql.SQL(
            "SELECT message_id, type, event, ts, received_at, platform, anonymous_id, "
            "properties, context FROM events WHERE {} "
            "ORDER BY ts DESC, message_id DESC LIMIT %s"
        ).format(sql.SQL(" AND ").join(conditions))
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
                "SELECT ts, event, message_id FROM events WHERE user_id = %s "
                "AND type = 'track' AND event IS NOT NULL ORDER BY ts, message_id",
                (user_id,),
            ).fetchall()
        return [EventPoint(time_key(ts.astimezone(UTC)), event, mid) for ts, event, mid in rows]

    # -- rollups -----------------------------------------------------------------------------

    def rollup_counts(self, start: date, end: date) -> list[CountRow]:
        with self._conn() as conn:
            rows = conn.execute(
                "SELECT day, platform, event, events FROM daily_counts "
                "WHERE day BETWEEN %s AND %s ORDER BY day, platform, event",
                (start, end),
            ).fetchall()
        return [CountRow(day, platform, event, int(n)) for day, platform, event, n in rows]

    def rollup_revenue(self, start: date, end: date) -> list[RevenueRow]:
        with self._conn() as conn:
            rows = conn.execute(
                "SELECT day, platform, currency, micros FROM daily_revenue "
                "WHERE day BETWEEN %s AND %s ORDER BY day, platform, currency",
                (start, end),
            ).fetchall()
        return [RevenueRow(day, platform, cur, int(micros)) for day, platform, cur, micros in rows]

    def rollup_users(self, start: date, end: date, *, by_event: bool) -> list[UsersRow]:
        with self._conn() as conn:
            rows = conn.execute(
                "SELECT day, platform, event, chunk, bits FROM daily_users "
                "WHERE day BETWEEN %s AND %s AND (%s OR event = %s) "
                "ORDER BY day, platform, event, chunk",
                (start, end, by_event, ANY_EVENT),
            ).fetchall()
        result: list[UsersRow] = []
        for (day, platform, event), chunks in itertools.groupby(rows, key=lambda r: r[:3]):
            bits = 0
            for *_, chunk, data in chunks:
                bits |= int.from_bytes(data, "little") << (chunk << CHUNK_SHIFT)
            if bits:  # a set emptied by erasures is no data
                result.append(UsersRow(day, platform, event, Bitmap(bits)))
        return result

    def first_seen_users(self, start: date, end: date) -> dict[date, UserSet]:
        with self._conn() as conn:
            rows = conn.execute(
                "SELECT f.day, o.ordinal FROM first_seen f "
                "JOIN user_ordinals o ON o.user_id = f.user_id "
                "WHERE f.day BETWEEN %s AND %s ORDER BY f.day",
                (start, end),
            ).fetchall()
        return {
            day: _bitmap_of(ordinal for _, ordinal in group)
            for day, group in itertools.groupby(rows, key=lambda r: r[0])
        }

    def empty_user_set(self) -> Bitmap:
        return Bitmap()

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
            "WITH starters AS (SELECT DISTINCT user_id FROM events WHERE type = 'track' "
            "AND event = %(first)s AND ts BETWEEN %(from)s AND %(to)s) "
            "SELECT e.user_id, e.ts, e.event, e.message_id FROM events e "
            "JOIN starters s ON s.user_id = e.user_id "
            "WHERE e.type = 'track' AND e.event IS NOT NULL "
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
        with self._conn() as conn, conn.cursor() as cur:
            rows = cur.stream(query, params, size=FUNNEL_FETCH_ROWS)
            for user_id, group in itertools.groupby(rows, key=lambda r: r[0]):
                yield (
                    user_id,
                    [
                        EventPoint(time_key(ts.astimezone(UTC)), event, mid)
                        for _, ts, event, mid in group
                    ],
                )

    # -- GDPR --------------------------------------------------------------------------------

    def delete_user(self, user_id: str) -> ErasureResult:
        if not _storable_text(user_id):
            return ErasureResult(events=0, profile=False)
        with self._conn() as conn, conn.transaction():
            # The user's bits can only be in the sets of (day, platform, event) keys their
            # stored events roll up to: find those instead of scanning every bitmap.
            keys = conn.execute(
                "SELECT DISTINCT (ts AT TIME ZONE 'UTC')::date, "
                "COALESCE(NULLIF(platform, ''), %s), event FROM events "
                "WHERE user_id = %s AND type = 'track' AND event IS NOT NULL",
                (UNKNOWN_PLATFORM, user_id),
            ).fetchall()
            found = conn.execute(
                "SELECT ordinal FROM user_ordinals WHERE user_id = %s", (user_id,)
            ).fetchone()
            if found is not None and keys:
                ordinal = int(found[0])
                day_keys = {(d, p, e) for d, p, e in keys} | {(d, p, ANY_EVENT) for d, p, _ in keys}
                _clear_bit(conn, sorted(day_keys), ordinal)
            deleted = conn.execute("DELETE FROM events WHERE user_id = %s", (user_id,)).rowcount
            profile = conn.execute("DELETE FROM profiles WHERE user_id = %s", (user_id,)).rowcount
            conn.execute("DELETE FROM first_seen WHERE user_id = %s", (user_id,))
            # Tombstone: the identifier goes, the ordinal stays taken forever.
            conn.execute(
                "UPDATE user_ordinals SET user_id = NULL, erased_at = now() WHERE user_id = %s",
                (user_id,),
            )
        return ErasureResult(events=deleted, profile=profile > 0)

    def append_audit(self, entry: AuditEntry) -> None:
        with self._conn() as conn:
            conn.execute(
                "INSERT INTO audit_log (id, at, actor, action, subject, details) "
                "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING",
                (
                    entry.id,
                    _utc(entry.at),
                    entry.actor,
                    entry.action,
                    entry.subject,
                    json.dumps(entry.details),
                ),
            )

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

    def ping(self) -> None:
        try:
            with self._conn() as conn:
                conn.execute("SELECT 1").fetchall()
        except psycopg.Error as exc:
            raise StorageUnavailableError(f"postgres: {safe_error(exc)}") from exc


# -- rollup application -----------------------------------------------------------------------


ChunkKey = tuple[date, str, str, int]


@dataclass
class _Plan:
    """One batch's rollup delta, ready to send: statement parameters (column lists) and
    the bitmap chunks to OR in, which need every user's ordinal (``missing`` have none)."""

    delta: RollupDelta
    ordinals: dict[str, int]
    missing: list[str]
    earlier: list[tuple[str, date]]  # users whose first-seen day this batch moves back
    counts: list[list[Any]]
    revenue: list[list[Any]]
    chunks: dict[ChunkKey, bytes] | None


def _plan(delta: RollupDelta, state: Sequence[Sequence[Any]]) -> _Plan | None:
    """The work of applying ``delta``, given the batch's track users' (user, ordinal,
    first-seen day) as read at the start of the transaction; None when there is none."""
    if not delta:
        return None
    ordinals: dict[str, int] = {}
    earlier: list[tuple[str, date]] = []
    for user, ordinal, seen in state:
        day = delta.first_seen.get(user)
        if day is None:  # only redelivered events of this user in the batch
            continue
        if ordinal is not None:
            ordinals[user] = ordinal
        if seen is None or day < seen:
            earlier.append((user, day))
    missing = [user for user in sorted(delta.first_seen) if user not in ordinals]
    return _Plan(
        delta=delta,
        ordinals=ordinals,
        missing=missing,
        earlier=sorted(earlier),
        counts=_columns([(*key, n) for key, n in sorted(delta.counts.items())], 4),
        revenue=_columns([(*key, n) for key, n in sorted(delta.revenue.items())], 4),
        chunks=None if missing else _chunks(delta.users, ordinals),
    )


def _apply_delta(conn: Conn, plan: _Plan) -> None:
    """Add one batch's delta, inside the caller's pipeline: statements whose results are
    not needed travel with the next one whose result is.

    Every statement touches its keys in sorted order, and the tables in a fixed order
    (counts, revenue, ordinals, bitmaps, first_seen), so concurrent consumers queue behind
    each other instead of deadlocking. The user state read before the events were inserted
    may be out of date by now, which changes nothing: a user without an ordinal gets one
    with ON CONFLICT (or the one a concurrent batch gave them), and first_seen is upserted
    with the minimum, so a day written meanwhile by a concurrent batch is kept if earlier.
    """
    conn.execute(
        "INSERT INTO daily_counts AS t (day, platform, event, events) "
        "SELECT * FROM unnest(%s::date[], %s::text[], %s::text[], %s::bigint[]) "
        "ON CONFLICT (day, platform, event) DO UPDATE SET events = t.events + excluded.events",
        plan.counts,
    )
    if plan.delta.revenue:
        conn.execute(
            "INSERT INTO daily_revenue AS t (day, platform, currency, micros) "
            "SELECT * FROM unnest(%s::date[], %s::text[], %s::text[], %s::bigint[]) "
            "ON CONFLICT (day, platform, currency) "
            "DO UPDATE SET micros = t.micros + excluded.micros",
            plan.revenue,
        )
    chunks = plan.chunks
    if chunks is None:
        ordinals = plan.ordinals | _allocate_ordinals(conn, plan.missing)
        chunks = _chunks(plan.delta.users, ordinals)
    _merge_bitmaps(conn, chunks)
    if plan.earlier:
        conn.execute(
            "INSERT INTO first_seen AS t (user_id, day) "
            "SELECT * FROM unnest(%s::text[], %s::date[]) "
            "ON CONFLICT (user_id) DO UPDATE SET day = excluded.day WHERE excluded.day < t.day",
            _columns(plan.earlier, 2),
        )


def _allocate_ordinals(conn: Conn, users: list[str]) -> dict[str, int]:
    """Ordinals for users that had none. Only those are inserted: an INSERT … ON CONFLICT
    for known users would burn a sequence value each and make the bitmaps sparse."""
    found: dict[str, int] = dict(
        conn.execute(
            "INSERT INTO user_ordinals (user_id) SELECT u FROM unnest(%s::text[]) AS u "
            "ORDER BY u ON CONFLICT (user_id) DO NOTHING RETURNING user_id, ordinal",
            (users,),
        ).fetchall()
    )
    raced = [u for u in users if u not in found]
    if raced:  # allocated by a concurrent batch that committed while we waited
        found.update(
            conn.execute(
                "SELECT user_id, ordinal FROM user_ordinals WHERE user_id = ANY(%s::text[])",
                (raced,),
            ).fetchall()
        )
    return found


def _chunks(
    users: Mapping[tuple[date, str, str], set[str]], ordinals: dict[str, int]
) -> dict[ChunkKey, bytes]:
    """The batch's user sets as bitmap chunks to OR into daily_users."""
    positions: dict[ChunkKey, list[int]] = {}
    for (day, platform, event), members in users.items():
        for user in members:
            ordinal = ordinals[user]
            key = (day, platform, event, ordinal >> CHUNK_SHIFT)
            positions.setdefault(key, []).append(ordinal & CHUNK_MASK)
    return {key: _bitmap_of(bits).to_bytes() for key, bits in positions.items()}


def _merge_bitmaps(conn: Conn, wanted: dict[ChunkKey, bytes]) -> None:
    """OR the batch's users into the daily bitmaps, chunk by chunk."""
    keys = sorted(wanted)
    columns = _columns([(*k, wanted[k]) for k in keys], 5)
    # New rows get their bits directly; then every row of the batch's keys is locked
    # (sorted) and merged: in one pipeline sync, so locking the rows just created (their
    # bits are already the wanted ones) costs less than a round trip to tell them apart.
    conn.execute(
        "INSERT INTO daily_users (day, platform, event, chunk, bits) "
        "SELECT * FROM unnest(%s::date[], %s::text[], %s::text[], %s::int[], %s::bytea[]) "
        "ON CONFLICT DO NOTHING",
        columns,
    )
    rows = conn.execute(
        "SELECT day, platform, event, chunk, bits FROM daily_users "
        "WHERE (day, platform, event, chunk) IN "
        "(SELECT * FROM unnest(%s::date[], %s::text[], %s::text[], %s::int[])) "
        "ORDER BY day, platform, event, chunk FOR UPDATE",
        columns[:4],
    ).fetchall()
    changed: list[tuple[Any, ...]] = []
    for day, platform, event, chunk, bits in rows:
        old = int.from_bytes(bits, "little")
        merged = old | int.from_bytes(wanted[(day, platform, event, chunk)], "little")
        if merged != old:  # most batches add users a day's set already holds
            changed.append((day, platform, event, chunk, Bitmap(merged).to_bytes()))
    if changed:
        conn.execute(
            "UPDATE daily_users t SET bits = v.bits FROM unnest("
            "%s::date[], %s::text[], %s::text[], %s::int[], %s::bytea[]) "
            "AS v(day, platform, event, chunk, bits) WHERE t.day = v.day "
            "AND t.platform = v.platform AND t.event = v.event AND t.chunk = v.chunk",
            _columns(changed, 5),
        )


def _clear_bit(conn: Conn, keys: list[tuple[date, str, str]], ordinal: int) -> None:
    chunk, bit = ordinal >> CHUNK_SHIFT, ordinal & CHUNK_MASK
    columns = _columns(keys, 3)
    conn.execute(
        "SELECT 1 FROM daily_users WHERE chunk = %s AND (day, platform, event) IN "
        "(SELECT * FROM unnest(%s::date[], %s::text[], %s::text[])) "
        "ORDER BY day, platform, event FOR UPDATE",
        (chunk, *columns),
    )
    conn.execute(
        "UPDATE daily_users SET bits = set_bit(bits, %s, 0) "
        "WHERE chunk = %s AND octet_length(bits) * 8 > %s AND (day, platform, event) IN "
        "(SELECT * FROM unnest(%s::date[], %s::text[], %s::text[]))",
        (bit, chunk, bit, *columns),
    )


# -- conversions ------------------------------------------------------------------------------


def _event_row(m: QueuedMessage) -> tuple[Any, ...]:
    """A message as a stage row (column order of _EVENT_COLUMNS). Raises
    UnstorableMessageError for values PostgreSQL rejects, so one such message fails alone
    instead of failing its whole batch."""
    properties = m.properties if m.type == "track" else m.traits
    try:
        props = _to_json(properties) if properties else "{}"
        ctx = _to_json(m.context) if m.context else "{}"
    except ValueError:
        raise UnstorableMessageError("NaN or Infinity in properties or context") from None
    # One check over all text fields at once: a NUL or a lone surrogate in any of them is in
    # their concatenation. (isascii() is O(1): only non-ASCII text is encoded to check it.)
    text = (
        f"{m.userId}{m.messageId}{m.event or ''}{m.platform or ''}{m.anonymousId or ''}{props}{ctx}"
    )
    if "\x00" in text or not (text.isascii() or _encodable(text)):
        raise UnstorableMessageError("NUL character or invalid Unicode in a text field")
    if ("\\u0000" in props and _ESCAPED_NUL.search(props)) or (
        "\\u0000" in ctx and _ESCAPED_NUL.search(ctx)
    ):
        raise UnstorableMessageError("NUL character (\\u0000) in properties or context")
    return (
        m.userId,
        m.messageId,
        m.type,
        m.event,
        m.timestamp,
        m.receivedAt,
        m.platform,
        m.anonymousId,
        props,
        ctx,
    )


def _encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _storable_text(text: str) -> bool:
    if "\x00" in text:
        return False
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _stored_event(row: tuple[Any, ...]) -> StoredEvent:
    message_id, type_, event, ts, received_at, platform, anonymous_id, props, ctx = row
    return StoredEvent(
        messageId=message_id,
        type=type_,
        event=event,
        timestamp=ts.astimezone(UTC),
        receivedAt=received_at.astimezone(UTC),
        platform=platform,
        anonymousId=anonymous_id,
        properties=props,
        context=ctx,
    )


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _invalid_cursor() -> InvalidRequestError:
    return InvalidRequestError(
        code="invalid_cursor", details=[{"field": "cursor", "type": "invalid_cursor"}]
    )


def _cursor_time(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise _invalid_cursor() from None
    if moment.tzinfo is None:
        raise _invalid_cursor()
    return moment


def _cursor_text(text: str) -> str:
    if not _storable_text(text):
        raise _invalid_cursor()
    return text


def _columns(rows: Sequence[Sequence[Any]], width: int) -> list[list[Any]]:
    """Rows → one list per column, the shape `unnest(%s::type[], …)` takes."""
    columns: list[list[Any]] = [[] for _ in range(width)]
    for row in rows:
        for column, value in zip(columns, row, strict=True):
            column.append(value)
    return columns


def _bitmap_of(ordinals: Iterable[int]) -> Bitmap:
    """A bitmap built in one pass over a byte buffer: OR-ing big integers one bit at a time
    would copy the whole integer per user."""
    values = list(ordinals)
    if not values:
        return Bitmap()
    buffer = bytearray(max(values) // 8 + 1)
    for ordinal in values:
        buffer[ordinal >> 3] |= 1 << (ordinal & 7)
    return Bitmap(int.from_bytes(buffer, "little"))
