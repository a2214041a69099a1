"""Embedded storage for the laptop shape: one SQLite file under DATA_DIR.

Idempotency comes from the primary key (user_id, message_id): inside one IMMEDIATE
transaction each row is inserted with ``INSERT OR IGNORE`` and only the rows that really
went in feed the rollups, so a redelivered or re-posted message is stored and counted once
even when two writers race. User sets are Roaring bitmaps over ordinals (`user_sets`).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Collection, Iterator, Mapping, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any

from mysoulmate.analytics.date_range import DateRange
from mysoulmate.analytics.models import (
    AuditEntry,
    AuditPage,
    EventPage,
    Profile,
    QueuedMessage,
    SessionMark,
    StoredEvent,
)
from mysoulmate.analytics.ports import (
    CountRow,
    ErasureResult,
    EventPoint,
    LinkResult,
    ProfileResults,
    ProfileUpdate,
    RevenueRow,
    SessionRow,
    StorageUnavailableError,
    StoreResult,
    UserSet,
    UsersRow,
    UserSummary,
    time_key,
)
from mysoulmate.analytics.rollups import RollupDelta, rollup_delta, split_session_rows
from mysoulmate.analytics.user_summary import summary_delta
from mysoulmate.storage import bitmap
from mysoulmate.storage.paging import decode_cursor, next_page_cursor
from mysoulmate.storage.profile_updates import update_each
from mysoulmate.storage.sqlite import erasure, funnel_reads, identity, user_sets, user_summaries
from mysoulmate.storage.sqlite.connection import (
    open_sqlite,
    rows_by_key,
    write_transaction,
)
from mysoulmate.storage.sqlite.perf import SqlitePerf
from mysoulmate.storage.sqlite.schema import (
    EVENT_COLUMNS,
    EVENT_INSERT,
    SCHEMA,
    SCHEMA_VERSION,
    add_column,
    event_row,
    repair_time_keys,
)

MMAP_BYTES = 1 << 30  # the file's first GiB is read through the map, the rest with pread


class SqliteEventStore(SqlitePerf):
    def __init__(self, path: Path) -> None:
        self._conn = open_sqlite(path, synchronous="NORMAL")
        # Read the file through a memory map. A funnel or a dashboard scans the events
        # table, which empties SQLite's own page cache (2 MB; a larger one is emptied by the
        # next funnel just as well), and the Roaring sets live in overflow pages: at 1M
        # events a cohort read loaded ~70 pages again per call, each a pread. Mapped, they
        # are memory reads of the OS's page cache (weekly cohorts after a dashboard: 1.24 ->
        # 1.06 ms at 1M, 10k unchanged). It costs address space, not memory; the price is
        # that a disk error while reading is a SIGBUS instead of an exception.
        self._conn.execute(f"PRAGMA mmap_size = {MMAP_BYTES}")
        self._lock = threading.Lock()
        self._users_read = user_sets.ReadCache()
        with self._lock:
            self._conn.executescript(SCHEMA)
        with write_transaction(self._conn, self._lock):
            version = self._conn.execute("PRAGMA user_version").fetchone()[0]
            if version < 2:
                self._backfill_rollups()
            if version < 3:
                repair_time_keys(self._conn)
            if version < 4:
                add_column(self._conn, "events", "session_id")
            if 2 <= version < 5:  # below 2, the backfill above built the sets
                user_sets.convert_legacy(self._conn)
            if version < 6:
                user_summaries.create(self._conn)
            if version < 7:
                user_sets.build_weekly(self._conn)
            if version < 8:
                add_column(self._conn, "perf_ledger", "received_at")
            if version < SCHEMA_VERSION:
                self._conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    # -- writes -------------------------------------------------------------------------

    def insert_events(self, messages: Sequence[QueuedMessage]) -> StoreResult:
        erased: set[tuple[str, str]] = set()
        try:
            with write_transaction(self._conn, self._lock):
                new: list[QueuedMessage] = []
                seen: set[tuple[str, str]] = set()
                erasures = self._erasures({m.userId for m in messages})
                for m in messages:
                    if m.key in seen:
                        continue
                    seen.add(m.key)
                    erased_at = erasures.get(m.userId)
                    if erased_at is not None and time_key(m.receivedAt) <= erased_at:
                        erased.add(m.key)
                        continue
                    cursor = self._conn.execute(EVENT_INSERT, event_row(m))
                    if cursor.rowcount == 1:
                        new.append(m)
                self._apply(rollup_delta(new))
                user_summaries.add(self._conn, summary_delta(new))
        except sqlite3.Error as exc:
            reason = f"sqlite: {exc}"
            return StoreResult(failed={m.key: reason for m in messages})
        return StoreResult(
            written=len(new),
            duplicates=len(messages) - len(new) - len(erased),
            new_keys={m.key for m in new},
            erased=erased,
        )

    def _erasures(self, users: set[str]) -> dict[str, str]:
        """Erasure time keys of those of ``users`` who were erased (caller holds the lock)."""
        return self._by_user("erasures", "erased_at", sorted(users))

    def _by_user(self, table: str, column: str, users: Sequence[str]) -> dict[str, Any]:
        """``{user_id: column}`` for the users with a row in ``table`` (caller holds the lock)."""
        return rows_by_key(self._conn, table, "user_id", column, users)

    def _apply(self, delta: RollupDelta) -> None:
        """Add one batch's rollup delta (caller holds the write transaction)."""
        if not delta:
            return
        conn = self._conn
        conn.executemany(
            "INSERT INTO daily_counts VALUES (?,?,?,?) ON CONFLICT DO UPDATE "
            "SET events = events + excluded.events",
            [(d.isoformat(), p, e, n) for (d, p, e), n in delta.counts.items()],
        )
        conn.executemany(
            "INSERT INTO daily_revenue VALUES (?,?,?,?) ON CONFLICT DO UPDATE "
            "SET micros = micros + excluded.micros",
            [(d.isoformat(), p, c, n) for (d, p, c), n in delta.revenue.items()],
        )
        user_sets.add_batch(conn, delta)
        conn.executemany(
            "INSERT INTO session_marks VALUES (?,?,?,?) ON CONFLICT DO UPDATE "
            "SET session_id = excluded.session_id, start = excluded.start, last = excluded.last "
            "WHERE excluded.last >= session_marks.last",
            [
                (user, mark.session_id, time_key(mark.start), time_key(mark.last))
                for user, mark in delta.session_marks.items()
            ],
        )

    def _backfill_rollups(self) -> None:
        """A database from before the read side: derive its rollups once from its events."""
        rows = self._conn.execute(
            "SELECT user_id, message_id, event, ts, platform, properties FROM events "
            "WHERE event IS NOT NULL"
        )
        while chunk := rows.fetchmany(5000):
            self._apply(
                rollup_delta(
                    QueuedMessage(
                        type="track",
                        userId=user,
                        messageId=mid,
                        event=name,
                        timestamp=ts,
                        receivedAt=ts,
                        platform=platform,
                        properties=json.loads(props),
                    )
                    for user, mid, name, ts, platform, props in chunk
                )
            )

    def update_profiles(
        self, updates: Mapping[str, tuple[ProfileUpdate, datetime]]
    ) -> ProfileResults:
        return update_each(self, updates)

    def update_profile(
        self, user_id: str, update: ProfileUpdate, *, received_at: datetime | None = None
    ) -> Profile | None:
        with write_transaction(self._conn, self._lock):
            if received_at is not None:
                erased_at = self._erasures({user_id}).get(user_id)
                if erased_at is not None and time_key(received_at) <= erased_at:
                    return None
            current = self._load_profile(user_id)
            merged = update(current)
            merged.version = (current.version if current else 0) + 1
            self._conn.execute(
                "INSERT INTO profiles VALUES (?,?,?) ON CONFLICT(user_id) DO UPDATE "
                "SET doc = excluded.doc, version = excluded.version",
                (user_id, merged.model_dump_json(), merged.version),
            )
        return merged

    # -- per-user reads -----------------------------------------------------------------

    def get_profile(self, user_id: str) -> Profile | None:
        with self._lock:
            return self._load_profile(user_id)

    def _load_profile(self, user_id: str) -> Profile | None:
        row = self._conn.execute(
            "SELECT doc FROM profiles WHERE user_id = ?", (user_id,)
        ).fetchone()
        return Profile.model_validate_json(row[0]) if row else None

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
        query = f"SELECT {EVENT_COLUMNS} FROM events WHERE user_id = ?"  # noqa: S608 - constant
        args: list[Any] = [user_id]
        if start is not None:
            query += " AND ts >= ?"
            args.append(time_key(start))
        if end is not None:
            query += " AND ts <= ?"
            args.append(time_key(end))
        if event is not None:
            query += " AND event = ?"
            args.append(event)
        if cursor:
            position = decode_cursor(cursor, {"ts", "id"})
            query += " AND (ts < ? OR (ts = ? AND message_id < ?))"
            args += [position["ts"], position["ts"], position["id"]]
        query += " ORDER BY ts DESC, message_id DESC LIMIT ?"
        args.append(limit + 1)
        rows = self._read(query, args)
        events = [_row_to_event(row) for row in rows[:limit]]
        next_cursor = next_page_cursor(rows, limit, lambda row: {"ts": row[3], "id": row[0]})
        return EventPage(events=events, next_cursor=next_cursor)

    def user_event_points(self, user_id: str) -> list[EventPoint]:
        rows = self._read(
            "SELECT ts, event, message_id, session_id FROM events "
            "WHERE user_id = ? AND event IS NOT NULL ORDER BY ts, message_id",
            (user_id,),
        )
        return [EventPoint(*row) for row in rows]

    def user_summary(self, user_id: str, days: DateRange | None, max_sessions: int) -> UserSummary:
        """From the summary rows, read in one snapshot (`user_summaries`)."""
        conn = self._conn
        try:
            with self._lock:
                conn.execute("BEGIN")
                try:
                    return user_summaries.read(
                        lambda query, args: conn.execute(query, args).fetchall(),
                        user_id,
                        days,
                        max_sessions,
                    )
                finally:
                    conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            raise StorageUnavailableError(f"sqlite: {exc}") from exc

    def session_marks(
        self, users: Collection[str], identified: Collection[str] = ()
    ) -> dict[str, SessionMark]:
        with self._lock:
            rows = rows_by_key(
                self._conn, "session_marks", "user_id", "session_id, start, last", sorted(users)
            )
        return {
            user: SessionMark(sid, datetime.fromisoformat(start), datetime.fromisoformat(last))
            for user, (sid, start, last) in rows.items()
        }

    # -- rollups ------------------------------------------------------------------------

    def rollup_count_rows(self, start: date, end: date) -> list[CountRow]:
        rows = self._read(
            "SELECT day, platform, event, events FROM daily_counts WHERE day BETWEEN ? AND ?",
            (start.isoformat(), end.isoformat()),
        )
        return [CountRow(date.fromisoformat(d), p, e, n) for d, p, e, n in rows]

    def rollup_counts(self, start: date, end: date) -> list[CountRow]:
        return split_session_rows(self.rollup_count_rows(start, end))[0]

    def rollup_sessions(self, start: date, end: date) -> list[SessionRow]:
        return split_session_rows(self.rollup_count_rows(start, end))[1]

    def rollup_revenue(self, start: date, end: date) -> list[RevenueRow]:
        rows = self._read(
            "SELECT day, platform, currency, micros FROM daily_revenue WHERE day BETWEEN ? AND ?",
            (start.isoformat(), end.isoformat()),
        )
        return [RevenueRow(date.fromisoformat(d), p, c, n) for d, p, c, n in rows]

    def rollup_users(self, start: date, end: date, *, by_event: bool) -> list[UsersRow]:
        """A read of an unchanged database is the cached one (`user_sets.ReadCache`)."""
        key = (start, end, by_event)
        try:
            with self._lock:  # the generation first: a write after it makes the next read miss
                generation = self._users_read.generation(self._conn)
                rows = self._users_read.get(generation, key)
                if rows is None:
                    rows = self._users_read.read(self._conn, start, end, by_event)
                    self._users_read.put(generation, key, rows)
        except sqlite3.OperationalError as exc:
            raise StorageUnavailableError(f"sqlite: {exc}") from exc
        return list(rows)

    def first_seen_users(self, start: date, end: date) -> dict[date, UserSet]:
        """One row per day (`user_sets`: first_seen_sets), not one per user."""
        try:
            with self._lock:
                return dict(user_sets.read_first_seen(self._conn, start, end))
        except sqlite3.OperationalError as exc:
            raise StorageUnavailableError(f"sqlite: {exc}") from exc

    def weekly_active_users(self, start: date, end: date) -> dict[date, UserSet]:
        """One row per week (`user_sets`: weekly_user_sets)."""
        try:
            with self._lock:
                return dict(user_sets.read_weekly(self._conn, start, end))
        except sqlite3.OperationalError as exc:
            raise StorageUnavailableError(f"sqlite: {exc}") from exc

    def empty_user_set(self) -> UserSet:
        return bitmap.UserBitmap()

    def funnel_candidates(
        self,
        first_event: str,
        starts_from: datetime,
        starts_to: datetime,
        until: datetime,
        events: frozenset[str] | None,
    ) -> Iterator[tuple[str, list[EventPoint]]]:
        return funnel_reads.candidates(
            self._read, first_event, starts_from, starts_to, until, events
        )

    def funnel_step_times(
        self,
        first_event: str,
        starts_from: datetime,
        starts_to: datetime,
        until: datetime,
        events: frozenset[str],
    ) -> Iterator[tuple[str, dict[str, list[str]]]]:
        return funnel_reads.step_times(self._read, events, starts_from, until)

    def funnel_next_times(
        self, steps: Sequence[str], chained: bool, starts_from: datetime, starts_to: datetime
    ) -> Iterator[tuple[str, datetime, list[datetime | None]]]:
        return funnel_reads.next_times(self._read, steps, chained, starts_from, starts_to)

    # -- GDPR ---------------------------------------------------------------------------

    def delete_user(self, user_id: str, erased_at: datetime) -> ErasureResult:
        with write_transaction(self._conn, self._lock):
            return erasure.erase(self._conn, user_id, erased_at)

    def erased_users(self, users: Collection[str]) -> dict[str, datetime]:
        with self._lock:
            found = self._erasures(set(users))
        return {user: datetime.fromisoformat(at) for user, at in found.items()}

    # -- identity -----------------------------------------------------------------------

    def linked_users(self, anonymous_ids: Collection[str]) -> dict[str, str]:
        with self._lock:
            return identity.linked_users(self._conn, anonymous_ids)

    def link_anonymous(self, anonymous_id: str, user_id: str, received_at: datetime) -> LinkResult:
        with write_transaction(self._conn, self._lock):
            return identity.link(self._conn, anonymous_id, user_id, received_at)

    def append_audit(self, entry: AuditEntry) -> None:
        with write_transaction(self._conn, self._lock):
            self._conn.execute(
                "INSERT INTO audit_log VALUES (?,?,?,?,?,?)",
                (
                    entry.id,
                    time_key(entry.at),
                    entry.actor,
                    entry.action,
                    entry.subject,
                    json.dumps(entry.details),
                ),
            )

    def list_audit(self, limit: int, cursor: str | None, subject: str | None = None) -> AuditPage:
        query = "SELECT id, at, actor, action, subject, details FROM audit_log WHERE 1 = 1"
        args: list[Any] = []
        if subject is not None:
            query += " AND subject = ?"
            args.append(subject)
        if cursor:
            position = decode_cursor(cursor, {"at", "id"})
            query += " AND (at < ? OR (at = ? AND id < ?))"
            args += [position["at"], position["at"], position["id"]]
        query += " ORDER BY at DESC, id DESC LIMIT ?"
        args.append(limit + 1)
        rows = self._read(query, args)
        entries = [
            AuditEntry(
                id=i,
                at=datetime.fromisoformat(at),
                actor=actor,
                action=action,
                subject=subj,
                details=json.loads(details),
            )
            for i, at, actor, action, subj, details in rows[:limit]
        ]
        next_cursor = next_page_cursor(rows, limit, lambda row: {"at": row[1], "id": row[0]})
        return AuditPage(entries=entries, next_cursor=next_cursor)

    # -- plumbing -----------------------------------------------------------------------

    def _read(self, query: str, args: Sequence[Any]) -> list[Any]:
        try:
            with self._lock:
                return self._conn.execute(query, args).fetchall()
        except sqlite3.OperationalError as exc:
            raise StorageUnavailableError(f"sqlite: {exc}") from exc

    def ping(self) -> None:
        self._read("SELECT 1 FROM events LIMIT 1", ())

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _row_to_event(row: tuple[Any, ...]) -> StoredEvent:
    message_id, type_, event, ts, received_at, platform, anonymous_id, props, ctx, sid = row
    return StoredEvent(
        messageId=message_id,
        type=type_,
        event=event,
        timestamp=datetime.fromisoformat(ts),
        receivedAt=datetime.fromisoformat(received_at),
        platform=platform,
        anonymousId=anonymous_id,
        properties=json.loads(props),
        context=json.loads(ctx),
        sessionId=sid,
    )
