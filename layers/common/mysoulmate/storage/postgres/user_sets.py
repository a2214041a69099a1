"""User sets in PostgreSQL: Roaring bitmaps (`storage.bitmap`) over `user_ordinals`, each set
split in rows of 2^`rollups.CHUNK_SHIFT` ordinals (migrations 0010, 0012):

- ``activity_sets (day, platform, event, chunk, users)``: who had a track event on that day
  and platform, with that event name (ANY_EVENT: any); and, under `rollups.WEEK_PLATFORM`
  with the Monday as the day, who had one that ISO week on any platform;
- ``first_seen_sets (day, chunk, users)``: whose ``first_seen`` day it is. A user is in the
  set of their first-seen day and in no other, so cohorts read one row per day (and chunk).

Ingest, erasure and identity links change them in the same order: the daily set rows, then
``first_seen``, then the first-seen set rows, each table's rows locked by one statement in
key order, so concurrent transactions queue behind each other instead of deadlocking. A row
that a change empties stays; the reads skip empty sets.

Reads of the daily sets go through `DailySetCache` (`read_daily`): a row's bytes are fetched
and decoded again only when its version changed since they were cached.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from typing import Any

import psycopg
from psycopg import sql
from pyroaring import FrozenBitMap

from mysoulmate.storage import bitmap
from mysoulmate.storage.postgres.pooling import Conn
from mysoulmate.storage.postgres.rollups import (
    CHUNK_SHIFT,
    ChunkKey,
    DayKey,
    _columns,
    memberships,
)

Cursor = psycopg.Cursor[tuple[Any, ...]]


# -- daily sets ---------------------------------------------------------------------------------


def lock_daily(conn: Conn, wanted: Mapping[ChunkKey, bitmap.UserBitmap]) -> Cursor:
    """Create the rows of ``wanted`` that do not exist (holding just the wanted users), then
    lock every one of them in key order; returns the locking SELECT, for `merge_daily`.
    Both travel in the caller's pipeline: locking the rows just created (already right)
    costs less than a round trip to tell them apart."""
    keys = sorted(wanted)
    columns = _columns([(*k, bitmap.encode(wanted[k])) for k in keys], 5)
    conn.execute(
        "INSERT INTO activity_sets (day, platform, event, chunk, users) "
        "SELECT * FROM unnest(%s::date[], %s::text[], %s::text[], %s::int[], %s::bytea[]) "
        "ON CONFLICT DO NOTHING",
        columns,
    )
    return conn.execute(
        "SELECT day, platform, event, chunk, users FROM activity_sets "
        "WHERE (day, platform, event, chunk) IN "
        "(SELECT * FROM unnest(%s::date[], %s::text[], %s::text[], %s::int[])) "
        "ORDER BY day, platform, event, chunk FOR UPDATE",
        columns[:4],
    )


def merge_daily(conn: Conn, wanted: Mapping[ChunkKey, bitmap.UserBitmap], locked: Cursor) -> None:
    """OR the wanted users into the rows `lock_daily` locked; write only those that grew
    (most batches add users a day's set already holds)."""
    changed: list[tuple[Any, ...]] = []
    for day, platform, event, chunk, data in locked.fetchall():
        users = bitmap.decode(data)
        before = len(users)
        users |= wanted[(day, platform, event, chunk)]
        if len(users) != before:
            changed.append((day, platform, event, chunk, bitmap.encode(users)))
    write_daily(conn, changed)


def write_daily(conn: Conn, changed: Sequence[Sequence[Any]]) -> None:
    """Overwrite locked rows: (day, platform, event, chunk, users) each, in one statement."""
    if not changed:
        return
    conn.execute(
        "UPDATE activity_sets t SET users = v.users FROM unnest("
        "%s::date[], %s::text[], %s::text[], %s::int[], %s::bytea[]) "
        "AS v(day, platform, event, chunk, users) WHERE t.day = v.day "
        "AND t.platform = v.platform AND t.event = v.event AND t.chunk = v.chunk",
        _columns(changed, 5),
    )


def move_daily(conn: Conn, keys: Sequence[DayKey], source: int, target: int | None) -> None:
    """In every set of a person whose events roll up to ``keys`` (`rollups.memberships`):
    take ordinal ``source`` out and put ``target`` in (unless None). The rows of both (their
    chunks may differ) are locked in one sorted statement."""
    columns = _columns(memberships(keys), 3)
    chunks = [source >> CHUNK_SHIFT]
    if target is not None:
        chunks.append(target >> CHUNK_SHIFT)
        # Rows of the target's chunk that do not exist yet start with just the target.
        conn.execute(
            "INSERT INTO activity_sets (day, platform, event, chunk, users) "
            "SELECT d, p, e, %s, %s FROM unnest(%s::date[], %s::text[], %s::text[]) "
            "AS k(d, p, e) ORDER BY d, p, e ON CONFLICT DO NOTHING",
            (chunks[-1], bitmap.encode(bitmap.of([target])), *columns),
        )
    rows = conn.execute(
        "SELECT day, platform, event, chunk, users FROM activity_sets "
        "WHERE chunk = ANY(%s::int[]) AND (day, platform, event) IN "
        "(SELECT * FROM unnest(%s::date[], %s::text[], %s::text[])) "
        "ORDER BY day, platform, event, chunk FOR UPDATE",
        (chunks, *columns),
    ).fetchall()
    changed = []
    for *key, data in rows:
        users = bitmap.decode(data)
        before = users.copy()
        users.discard(source)
        if target is not None and key[3] == target >> CHUNK_SHIFT:
            users.add(target)
        if users != before:
            changed.append((*key, bitmap.encode(users)))
    write_daily(conn, changed)


# -- cached reads of the daily sets -------------------------------------------------------------

CACHE_BYTES = 64 << 20  # serialized bytes held per store (1M events' 30 days: 2.6 MiB)
# A row's key and version: its xmin (the transaction that wrote it; an UPDATE writes a new
# version) and its size (read without detoasting), so that only an xid reused after
# wraparound, with the same size, could pass a changed row as unchanged.
_VERSIONED = sql.SQL("day, platform, event, chunk, xmin::text, octet_length(users)")
_STALE = sql.SQL(
    "(day, platform, event, chunk) IN (SELECT * FROM unnest("
    "%(d)s::date[], %(p)s::text[], %(e)s::text[], %(c)s::int[]))"
)
Version = tuple[str, int]
SetRow = tuple[date, str, str, int, FrozenBitMap]


class DailySetCache:
    """Decoded activity_sets rows by (day, platform, event, chunk), each with the version it
    was decoded from; least recently used rows go first beyond `CACHE_BYTES`. At 1M events a
    30-day dashboard's sets are 2.6 MB: fetched (5 ms over a local socket) and decoded (1.3
    ms) on every read, they made it grow 2.5 x from 10k events; the versions alone take 1.4
    ms. Sets are frozen: callers share them."""

    READS = 8  # whole reads kept by snapshot: a dashboard, cohorts, active-user windows

    def __init__(self, max_bytes: int = CACHE_BYTES) -> None:
        self._rows: OrderedDict[ChunkKey, tuple[Version, int, FrozenBitMap]] = OrderedDict()
        self._bytes = 0
        self._max = max_bytes
        self._reads: OrderedDict[Any, tuple[str, list[SetRow]]] = OrderedDict()
        self._lock = threading.Lock()

    def __bool__(self) -> bool:
        return bool(self._rows)

    def read_in(self, read: Any, snapshot: str) -> list[SetRow] | None:
        """The sets of ``read`` if it was made in the same snapshot (see `read_daily`)."""
        with self._lock:
            kept = self._reads.get(read)
            return list(kept[1]) if kept is not None and kept[0] == snapshot else None

    def keep(self, read: Any, snapshot: str, rows: list[SetRow]) -> list[SetRow]:
        with self._lock:
            self._reads.pop(read, None)
            self._reads[read] = (snapshot, rows)
            if len(self._reads) > self.READS:
                self._reads.popitem(last=False)
        return list(rows)

    def resolve(self, rows: Sequence[Sequence[Any]]) -> tuple[list[SetRow], list[ChunkKey]]:
        """(key, xmin, size, bytes or None) rows → each row's set, the cached one if its
        version is the cached one, else decoded from its bytes; and the keys of the rows
        that had neither (then the sets are not all there). One lock for all the rows: a
        lock per row cost 1 ms of a 1M-event dashboard."""
        found: list[SetRow] = []
        stale: list[ChunkKey] = []
        with self._lock:
            for day, platform, event, chunk, xmin, size, data in rows:
                key = (day, platform, event, chunk)
                cached = self._rows.get(key)
                if cached is not None and cached[0] == (xmin, size):
                    self._rows.move_to_end(key)
                    users = cached[2]
                elif data is not None:
                    users = bitmap.decode_frozen(data)
                    if cached is not None:
                        self._bytes -= cached[1]
                        del self._rows[key]
                    self._rows[key] = ((xmin, size), len(data), users)
                    self._bytes += len(data)
                else:
                    stale.append(key)
                    continue
                found.append((*key, users))
            while self._bytes > self._max and self._rows:
                self._bytes -= self._rows.popitem(last=False)[1][1]
        return found, stale


def read_daily(
    conn: Conn,
    cache: DailySetCache,
    where: sql.Composable,
    params: dict[str, Any],
    recent: date,
    read: Any,
) -> list[SetRow]:
    """The activity_sets rows matching ``where`` in key order, each try from one snapshot.

    The same ``read`` made in the same snapshot (the same transactions committed, anywhere
    in the cluster: nothing changed) is the kept one, for a round trip. Else one statement
    reads every row's version, with the bytes of the rows from ``recent`` on (where ingest
    writes); if other rows are not cached as they are, a second reads their bytes (and every
    version again); if rows changed in between, a third reads all. The versions read 612
    heap pages at 1M events: 1.4 ms, 4-7 ms when the funnels have left them out of cache."""
    # Taken first: if a transaction commits before the reads below, every later snapshot
    # differs from this one, so what they read is never given for a snapshot it may not match.
    snapshot = conn.execute("SELECT pg_current_snapshot()::text").fetchone()
    assert snapshot is not None
    kept = cache.read_in(read, snapshot[0])
    if kept is not None:
        return kept
    return cache.keep(read, snapshot[0], _read_versions(conn, cache, where, params, recent))


def _read_versions(
    conn: Conn, cache: DailySetCache, where: sql.Composable, params: dict[str, Any], recent: date
) -> list[SetRow]:
    rows = sql.SQL("FROM activity_sets WHERE {} ORDER BY day, platform, event, chunk").format(where)
    fetch = sql.SQL("SELECT {}, CASE WHEN {} THEN users END {}")
    if cache:
        found, stale = cache.resolve(
            conn.execute(
                fetch.format(_VERSIONED, sql.SQL("day >= %(recent)s"), rows),
                {**params, "recent": recent},
                binary=True,
            ).fetchall()
        )
        if not stale:
            return found
        if len(stale) * 2 <= len(found):  # a few changed (late events, erasures, links)
            found, stale = cache.resolve(
                conn.execute(
                    fetch.format(_VERSIONED, _STALE, rows),
                    {**params, **dict(zip(("d", "p", "e", "c"), _columns(stale, 4), strict=True))},
                    binary=True,
                ).fetchall()
            )
            if not stale:
                return found
    every = conn.execute(fetch.format(_VERSIONED, sql.SQL("TRUE"), rows), params, binary=True)
    return cache.resolve(every.fetchall())[0]


# -- first-seen sets ----------------------------------------------------------------------------


def change_first_seen(
    conn: Conn, added: Iterable[tuple[date, int]], removed: Iterable[tuple[date, int]]
) -> None:
    """Put each (day, ordinal) of ``added`` in that day's set, take those of ``removed`` out.
    The caller has changed ``first_seen`` to match, under its row locks."""
    adds: defaultdict[tuple[date, int], bitmap.UserBitmap] = defaultdict(bitmap.UserBitmap)
    drops: defaultdict[tuple[date, int], bitmap.UserBitmap] = defaultdict(bitmap.UserBitmap)
    for day, ordinal in added:
        adds[(day, ordinal >> CHUNK_SHIFT)].add(ordinal)
    for day, ordinal in removed:
        drops[(day, ordinal >> CHUNK_SHIFT)].add(ordinal)
    keys = sorted(adds.keys() | drops.keys())
    if not keys:
        return
    if adds:
        conn.execute(
            "INSERT INTO first_seen_sets (day, chunk, users) "
            "SELECT * FROM unnest(%s::date[], %s::int[], %s::bytea[]) ON CONFLICT DO NOTHING",
            _columns([(*k, bitmap.encode(adds[k])) for k in sorted(adds)], 3),
        )
    rows = conn.execute(
        "SELECT day, chunk, users FROM first_seen_sets WHERE (day, chunk) IN "
        "(SELECT * FROM unnest(%s::date[], %s::int[])) ORDER BY day, chunk FOR UPDATE",
        _columns(keys, 2),
    ).fetchall()
    changed = []
    for day, chunk, data in rows:
        users = bitmap.decode(data)
        before = users.copy()
        users -= drops.get((day, chunk), bitmap.UserBitmap())
        users |= adds.get((day, chunk), bitmap.UserBitmap())
        if users != before:
            changed.append((day, chunk, bitmap.encode(users)))
    if changed:
        conn.execute(
            "UPDATE first_seen_sets t SET users = v.users FROM unnest("
            "%s::date[], %s::int[], %s::bytea[]) AS v(day, chunk, users) "
            "WHERE t.day = v.day AND t.chunk = v.chunk",
            _columns(changed, 3),
        )


def lock_batch_first_seen(conn: Conn, earlier: Sequence[tuple[str, date]]) -> tuple[Cursor, Cursor]:
    """Ingest: create the ``first_seen`` rows of users who have none (in user order, so two
    batches creating the same users cannot deadlock), then lock the rows of all of
    ``earlier`` (user, batch day), now holding the committed or just-created day."""
    columns = _columns(earlier, 2)
    created = conn.execute(
        "INSERT INTO first_seen (user_id, day) SELECT * FROM unnest(%s::text[], %s::date[]) "
        "ORDER BY 1 ON CONFLICT (user_id) DO NOTHING RETURNING user_id",
        columns,
    )
    locked = conn.execute(
        "SELECT user_id, day FROM first_seen WHERE user_id = ANY(%s::text[]) "
        "ORDER BY user_id FOR UPDATE",
        columns[:1],
    )
    return created, locked


def move_batch_first_seen(
    conn: Conn,
    earlier: Sequence[tuple[str, date]],
    ordinals: Mapping[str, int],
    created: Cursor,
    locked: Cursor,
) -> None:
    """Ingest, after `lock_batch_first_seen`: users whose row was just created join their
    day's set; users whose batch day is earlier than their locked day move to it."""
    new = {user for (user,) in created.fetchall()}
    held: dict[str, date] = dict(locked.fetchall())
    added: list[tuple[date, int]] = []
    removed: list[tuple[date, int]] = []
    moved: list[tuple[str, date]] = []
    for user, day in earlier:
        if user in new:
            added.append((day, ordinals[user]))
        elif user in held and day < held[user]:
            added.append((day, ordinals[user]))
            removed.append((held[user], ordinals[user]))
            moved.append((user, day))
    if moved:
        conn.execute(
            "UPDATE first_seen t SET day = v.day FROM unnest(%s::text[], %s::date[]) "
            "AS v(user_id, day) WHERE t.user_id = v.user_id",
            _columns(moved, 2),
        )
    change_first_seen(conn, added, removed)
