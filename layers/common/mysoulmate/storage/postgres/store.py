"""PostgreSQL (Aurora PostgreSQL on AWS) storage: events, profiles, exact daily rollups.

Ingest is a bulk path: COPY into a per-connection temporary stage table, one
`INSERT … ON CONFLICT DO NOTHING RETURNING` into events, then the rollup delta of exactly
the rows that were new (session figures, people's current sessions and per-user
summaries included), all in one transaction. A redelivered batch therefore adds nothing,
and rollup work grows with the distinct (day, platform, event) keys and users of a batch,
not with its events.
docs/postgres.md describes the data model.

This module keeps the store class, its write path and the SQL that applies rollup deltas;
beside it are `reads` (the read-side mixin), `pooling` (connection reuse), `rows`
(message ↔ row conversion) and `rollups` (the pure rollup plan).
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.pq import TransactionStatus

from mysoulmate.analytics.models import ANONYMOUS_PREFIX, AuditEntry, Profile, QueuedMessage
from mysoulmate.analytics.ports import (
    ErasureResult,
    LinkResult,
    MessageKey,
    ProfileResults,
    ProfileUpdate,
    StorageUnavailableError,
    StoreResult,
)
from mysoulmate.analytics.rollups import UNKNOWN_PLATFORM, rollup_delta
from mysoulmate.storage.postgres import identity, user_sets, user_summaries
from mysoulmate.storage.postgres.connection import describe, require_head, safe_error
from mysoulmate.storage.postgres.erasures import (
    erased_at_or_after,
    erased_keys,
    lock_and_read,
    lock_exclusive,
    lock_for_erasure,
    record_tombstones,
)
from mysoulmate.storage.postgres.perf import PostgresPerf
from mysoulmate.storage.postgres.pooling import Conn, _Connections, _Pool, _ProcessConnection
from mysoulmate.storage.postgres.reads import PostgresReads
from mysoulmate.storage.postgres.rollups import PERSON_KEYS, _chunks, _Plan, _plan
from mysoulmate.storage.postgres.rows import (
    _EVENT_COLUMNS,
    _EVENT_TYPES,
    UnstorableMessageError,
    _event_row,
    _JsonbTextDumper,
    _storable_text,
    _utc,
)
from mysoulmate.storage.profile_updates import update_each

PROFILE_ATTEMPTS = 5
_STAGE_DDL = "CREATE TEMP TABLE IF NOT EXISTS events_stage (LIKE events) ON COMMIT DELETE ROWS"
# The per-user summaries follow in the same statement: the trigger of migration 0011 adds
# the rows it really inserted (`user_summaries`).
_INSERT_EVENTS = (
    "INSERT INTO events SELECT * FROM events_stage "
    "ORDER BY user_id, message_id ON CONFLICT DO NOTHING "
    "RETURNING user_id, message_id"
)


# -- the store ------------------------------------------------------------------------------


class PostgresEventStore(PostgresReads, PostgresPerf):
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
        self._daily_set_cache = user_sets.DailySetCache()

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
        erased: set[MessageKey] = set()
        if rows:
            try:
                with self._conn() as conn:
                    new_keys, erased = self._insert(conn, rows, staged)
            except (psycopg.Error, StorageUnavailableError) as exc:
                reason = f"postgres: {safe_error(exc)}"
                return StoreResult(failed={m.key: reason for m in messages})
        skipped = failed.keys() | erased
        rejected = sum(1 for m in messages if m.key in skipped) if skipped else 0
        return StoreResult(
            written=len(new_keys),
            duplicates=len(messages) - len(new_keys) - rejected,
            failed=failed,
            new_keys=new_keys,
            erased=erased,
        )

    def _insert(
        self,
        conn: Conn,
        rows: list[tuple[Any, ...]],
        messages: dict[MessageKey, QueuedMessage],
    ) -> tuple[set[MessageKey], set[MessageKey]]:
        """Stage ``rows`` (the rows of ``messages``), insert them, and apply the rollup delta
        of the new ones, in one transaction; the keys of the new rows, and those of the
        messages dropped because their user was erased after receiving them.

        Round trips: BEGIN with the batch's user locks and tombstones (`erasures`), the
        COPY of the rows that survive them, then a pipeline (COPY cannot run in pipeline
        mode, hence the explicit BEGIN/COMMIT): the user-state lookup; the INSERT (whose
        trigger upserts the per-user summaries); the counts/revenue upserts with the user-set
        chunks' INSERT and SELECT … FOR UPDATE (and, for users first seen earlier than
        stored, first_seen's); the user-set UPDATE (and the first-seen sets' lock and
        UPDATE), session_marks with the COMMIT. The rollups are worked out while the server
        looks up and inserts, as if every row were new (the usual case), and worked out
        again from the rows actually inserted when some were not.
        """
        try:
            with conn.pipeline():
                conn.execute("BEGIN")
                if conn not in self._staged:
                    conn.execute(_STAGE_DDL)
                # Before anything is staged: an erased message must count nowhere, not in
                # the events, the rollup delta, or the user state looked up below.
                erasures = lock_and_read(conn, sorted({m.userId for m in messages.values()}))
            erased = erased_keys(messages.values(), erasures)
            if erased:
                rows = [row for row, key in zip(rows, messages, strict=True) if key not in erased]
                messages = {k: m for k, m in messages.items() if k not in erased}
            if not rows:
                conn.execute("COMMIT")
                self._staged.add(conn)
                return set(), erased
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
                    "(SELECT DISTINCT user_id FROM events_stage WHERE event IS NOT NULL) s "
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
                inserted = conn.execute(_INSERT_EVENTS)
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
        return set(new_keys), erased

    def update_profiles(
        self, updates: Mapping[str, tuple[ProfileUpdate, datetime]]
    ) -> ProfileResults:
        return update_each(self, updates)

    def update_profile(
        self, user_id: str, update: ProfileUpdate, *, received_at: datetime | None = None
    ) -> Profile | None:
        with self._conn() as conn:
            for _ in range(PROFILE_ATTEMPTS):
                with conn.transaction():
                    # Under the user's lock, held until commit: delete_user cannot run
                    # between this check and the write.
                    if received_at is not None and erased_at_or_after(conn, user_id, received_at):
                        return None
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

    # -- identity ----------------------------------------------------------------------------

    def linked_users(self, anonymous_ids: Collection[str]) -> dict[str, str]:
        if not anonymous_ids:
            return {}
        with self._conn() as conn:
            return identity.linked_users(conn, anonymous_ids)

    def link_anonymous(self, anonymous_id: str, user_id: str, received_at: datetime) -> LinkResult:
        """One transaction under the visitor's and the user's locks: see `identity`."""
        with self._conn() as conn:
            return identity.link_anonymous(conn, anonymous_id, user_id, received_at)

    # -- GDPR --------------------------------------------------------------------------------

    def delete_user(self, user_id: str, erased_at: datetime) -> ErasureResult:
        """Everything stored of the user, and of each visitor linked to them (what a move
        cut short, a failed link re-check, left under the visitor is theirs too), in one
        transaction; the links go last."""
        if not _storable_text(user_id):  # nothing of such a user can ever be stored
            return ErasureResult(events=0, profile=False)
        with self._conn() as conn, conn.transaction():
            # First: waits for in-flight writes about them, keeps new ones out until commit,
            # after which they see the tombstone. The visitors are read before the locks,
            # so all are taken in key order; once the user's is held no link can appear.
            visitors = _linked_visitors(conn, user_id)
            lock_for_erasure(conn, user_id, visitors, erased_at)
            late = sorted(set(_linked_visitors(conn, user_id)) - set(visitors))
            if late:  # linked between the read and the lock: correct, if out of key order
                lock_exclusive(conn, late)
                record_tombstones(conn, late, erased_at)
                visitors += late
            events, profile = 0, False
            for person in [user_id, *visitors]:
                erased_events, erased_profile = _erase_person(conn, person)
                events, profile = events + erased_events, profile or erased_profile
            # Their anonymous ids' history was merged into theirs: those ids are forgotten too.
            identity.forget_links(conn, user_id)
        return ErasureResult(events=events, profile=profile)

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

    def ping(self) -> None:
        try:
            with self._conn() as conn:
                conn.execute("SELECT 1").fetchall()
        except psycopg.Error as exc:
            raise StorageUnavailableError(f"postgres: {safe_error(exc)}") from exc


# -- rollup application -----------------------------------------------------------------------


def _apply_delta(conn: Conn, plan: _Plan) -> None:
    """Add one batch's delta, inside the caller's pipeline: statements whose results are
    not needed travel with the next one whose result is.

    Every statement touches its keys in sorted order, and the tables in a fixed order
    (after events and the per-user summaries, which the INSERT writes: counts, revenue,
    ordinals, user sets, first_seen, first-seen sets, session_marks), so concurrent
    consumers queue behind each other instead of deadlocking. The user state read
    before the events were inserted may be out of date by now, which changes nothing: a user
    without an ordinal gets one with ON CONFLICT (or the one a concurrent batch gave them);
    first_seen rows are created or locked before a user's first-seen set changes, so a day
    written meanwhile by a concurrent batch is seen (and kept if earlier); a session mark is
    replaced only by one with a later last event.
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
    chunks, ordinals = plan.chunks, plan.ordinals
    if chunks is None:
        ordinals = plan.ordinals | _allocate_ordinals(conn, plan.missing)
        chunks = _chunks(plan.delta.users, ordinals)
    locked = user_sets.lock_daily(conn, chunks)
    # Sent before the daily rows are fetched, so they cost no round trip of their own.
    first_seen = user_sets.lock_batch_first_seen(conn, plan.earlier) if plan.earlier else None
    user_sets.merge_daily(conn, chunks, locked)
    if first_seen is not None:
        user_sets.move_batch_first_seen(conn, plan.earlier, ordinals, *first_seen)
    if plan.delta.session_marks:
        # A mark is replaced only by a later one: a batch of older events (a late delivery,
        # or a consumer that lost a race) leaves the person's newer session where it is.
        # Binary parameters: psycopg dumps a timestamptz[] of a batch's people ten times
        # faster in binary than in text (about 1 ms instead of 10 for 1,000 times).
        conn.execute(
            "INSERT INTO session_marks AS t (user_id, session_id, start, last) "
            "SELECT * FROM unnest(%b::text[], %b::text[], %b::timestamptz[], %b::timestamptz[]) "
            "ON CONFLICT (user_id) DO UPDATE SET session_id = excluded.session_id, "
            "start = excluded.start, last = excluded.last WHERE excluded.last >= t.last",
            plan.marks,
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


def _linked_visitors(conn: Conn, user_id: str) -> list[str]:
    """The people (``anon:`` ids) of the visitors linked to ``user_id``."""
    rows = conn.execute(
        "SELECT anonymous_id FROM identity_links WHERE user_id = %s", (user_id,)
    ).fetchall()
    return [ANONYMOUS_PREFIX + anonymous_id for (anonymous_id,) in rows]


def _erase_person(conn: Conn, person: str) -> tuple[int, bool]:
    """Delete what is stored of ``person`` (caller's transaction, their lock held):
    (events deleted, whether a profile was)."""
    # The person can only be in the sets their stored events roll up to: find those instead
    # of scanning every set.
    keys = conn.execute(PERSON_KEYS, (UNKNOWN_PLATFORM, person)).fetchall()
    found = conn.execute(
        "SELECT ordinal FROM user_ordinals WHERE user_id = %s", (person,)
    ).fetchone()
    if found is not None and keys:
        user_sets.move_daily(conn, keys, int(found[0]), None)
    seen = conn.execute(
        "DELETE FROM first_seen WHERE user_id = %s RETURNING day", (person,)
    ).fetchone()
    if found is not None and seen is not None:
        user_sets.change_first_seen(conn, [], [(seen[0], int(found[0]))])
    deleted = conn.execute("DELETE FROM events WHERE user_id = %s", (person,)).rowcount
    profile = conn.execute("DELETE FROM profiles WHERE user_id = %s", (person,)).rowcount
    conn.execute("DELETE FROM session_marks WHERE user_id = %s", (person,))
    # A message received after the erasure's time is new data, and may have been counted or
    # forwarded before the erasure ran: its entry stays, or its redelivery would go again.
    for table in ("forward_ledger", "perf_ledger"):
        conn.execute(
            sql.SQL(
                "DELETE FROM {} WHERE user_id = %(person)s AND (received_at IS NULL OR "
                "received_at <= (SELECT erased_at FROM erasures WHERE user_id = %(person)s))"
            ).format(sql.Identifier(table)),
            {"person": person},
        )
    user_summaries.remove(conn, person)
    # Tombstone: the identifier goes, the ordinal stays taken forever.
    conn.execute(
        "UPDATE user_ordinals SET user_id = NULL, erased_at = now() WHERE user_id = %s",
        (person,),
    )
    return deleted, profile > 0
