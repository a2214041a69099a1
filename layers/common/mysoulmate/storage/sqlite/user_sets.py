"""User sets on the embedded store: who was active per (day, platform, event), and who was
first seen per day, as Roaring bitmaps over the users' ordinals (`storage.bitmap`).

``daily_user_sets`` holds one set per (day, platform, event) and ``first_seen_sets`` one per
day: a user is in the set of their ``first_seen`` day and in no other, so cohorts read one row
per day. ``weekly_user_sets`` holds, per ISO week (its Monday), the users with any track event
in it on any platform: the union of the week's any-event daily sets, which weekly cohorts read
as one row instead of a row per day and platform. Every function runs inside the caller's
write transaction (SQLite has one writer), so a set always agrees with the events and
``first_seen`` rows committed with it.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import date
from typing import Any

from pyroaring import FrozenBitMap

from mysoulmate.analytics.date_range import week_start
from mysoulmate.analytics.ports import ANY_EVENT, UsersRow
from mysoulmate.analytics.rollups import RollupDelta
from mysoulmate.storage import bitmap
from mysoulmate.storage.sqlite.connection import rows_by_key

SetKey = tuple[str, str, str]  # (day, platform, event)

_DAILY_READ = "SELECT users FROM daily_user_sets WHERE day = ? AND platform = ? AND event = ?"
_DAILY_WRITE = (
    "INSERT INTO daily_user_sets VALUES (?,?,?,?) ON CONFLICT DO UPDATE SET users = excluded.users"
)
_WEEKLY_READ = "SELECT users FROM weekly_user_sets WHERE week = ?"
_WEEKLY_WRITE = (
    "INSERT INTO weekly_user_sets VALUES (?,?) ON CONFLICT DO UPDATE SET users = excluded.users"
)
_FIRST_READ = "SELECT users FROM first_seen_sets WHERE day = ?"
_FIRST_WRITE = (
    "INSERT INTO first_seen_sets VALUES (?,?) ON CONFLICT DO UPDATE SET users = excluded.users"
)


def add_batch(conn: sqlite3.Connection, delta: RollupDelta) -> None:
    """Add one batch's users to their daily sets and first-seen sets (and ordinals)."""
    users = sorted(delta.first_seen)
    if not users:
        return
    conn.executemany(
        "INSERT OR IGNORE INTO user_ordinals (user_id) VALUES (?)", [(u,) for u in users]
    )
    ordinals: dict[str, int] = rows_by_key(conn, "user_ordinals", "user_id", "ordinal", users)
    weekly: defaultdict[str, set[int]] = defaultdict(set)
    for (day, platform, event), members in sorted(delta.users.items()):
        members_ordinals = {ordinals[u] for u in members}
        key = (day.isoformat(), platform, event)
        _change(conn, _DAILY_READ, _DAILY_WRITE, key, members_ordinals, None)
        if event == ANY_EVENT:  # each week once below, not once per day and platform
            weekly[week_of(day.isoformat())] |= members_ordinals
    for week, week_ordinals in sorted(weekly.items()):
        _change(conn, _WEEKLY_READ, _WEEKLY_WRITE, (week,), week_ordinals, None)
    known: dict[str, str] = rows_by_key(conn, "first_seen", "user_id", "day", users)
    added: defaultdict[str, set[int]] = defaultdict(set)
    removed: defaultdict[str, set[int]] = defaultdict(set)
    moved: list[tuple[str, str]] = []
    for user, first in delta.first_seen.items():
        seen, before = first.isoformat(), known.get(user)
        if before is not None and before <= seen:
            continue
        added[seen].add(ordinals[user])
        if before is not None:
            removed[before].add(ordinals[user])
        moved.append((user, seen))
    change_first_seen(conn, added, removed)
    conn.executemany(
        "INSERT INTO first_seen VALUES (?,?) ON CONFLICT DO UPDATE SET day = excluded.day",
        sorted(moved),
    )


def change_daily(
    conn: sqlite3.Connection,
    keys: Iterable[SetKey],
    add: set[int] | None = None,
    remove: int | None = None,
) -> None:
    """Put ``add`` into each set of ``keys`` and take ``remove`` out; the weekly sets of
    the any-event keys' days follow."""
    keys = sorted(keys)
    for key in keys:
        _change(conn, _DAILY_READ, _DAILY_WRITE, key, add, remove)
    for week in sorted({week_of(day) for day, _, event in keys if event == ANY_EVENT}):
        _change(conn, _WEEKLY_READ, _WEEKLY_WRITE, (week,), add, remove)


def _change(
    conn: sqlite3.Connection,
    read: str,
    write: str,
    key: tuple[str, ...],
    add: set[int] | None,
    remove: int | None,
) -> None:
    row = conn.execute(read, key).fetchone()
    if row is None and not add:
        return
    users = bitmap.decode(row[0] if row else None)
    before = len(users)
    if remove is not None:
        users.discard(remove)
    changed = len(users) != before
    if add:
        before = len(users)
        users.update(add)
        changed = changed or len(users) != before
    if changed or row is None:
        conn.execute(write, (*key, bitmap.encode(users)))


class ReadCache:
    """The latest reads of the daily sets (`rollup_users`), under the database's generation
    at the time: ``PRAGMA data_version`` (changes with every commit of another connection)
    and the connection's ``total_changes`` (with every row it writes). While both stay, no
    set changed, and a read is the cached one: at 1M events a 30-day dashboard's 838 sets
    (2.6 MB in overflow pages) took 2.2 ms to fetch and 1.7 ms to decode (0.9 and 0.8 at
    10k). After a change, a set whose bytes are those already decoded is that same frozen
    set (not decoded again; `dashboard.FrozenUnions` keeps its unions). Callers share them."""

    SIZE = 8  # reads kept: one dashboard, a cohort table and the active-user windows need 4
    BYTES = 64 << 20  # decoded sets kept for their bytes (1M events' 30 days: 2.6 MiB)

    def __init__(self) -> None:
        self._generation: tuple[int, int] | None = None
        self._reads: dict[tuple[Any, ...], list[UsersRow]] = {}
        self._sets: dict[tuple[str, str, str], tuple[bytes, FrozenBitMap]] = {}
        self._bytes = 0

    @staticmethod
    def generation(conn: sqlite3.Connection) -> tuple[int, int]:
        return conn.execute("PRAGMA data_version").fetchone()[0], conn.total_changes

    def get(self, generation: tuple[int, int], key: tuple[Any, ...]) -> list[UsersRow] | None:
        return self._reads.get(key) if generation == self._generation else None

    def read(
        self, conn: sqlite3.Connection, start: date, end: date, by_event: bool
    ) -> list[UsersRow]:
        """The daily sets of the days, frozen; the caller holds the connection's lock."""
        query = "SELECT day, platform, event, users FROM daily_user_sets WHERE day BETWEEN ? AND ?"
        if not by_event:
            query += " AND event = ''"
        found = []
        for day, platform, event, data in conn.execute(query, (start.isoformat(), end.isoformat())):
            known = self._sets.get((day, platform, event))
            if known is not None and known[0] == data:
                users = known[1]
            else:
                users = bitmap.decode_frozen(data)
                self._bytes -= len(known[0]) if known else 0
                if self._bytes + len(data) > self.BYTES:
                    self._sets, self._bytes = {}, 0
                self._sets[(day, platform, event)] = (data, users)
                self._bytes += len(data)
            found.append(UsersRow(date.fromisoformat(day), platform, event, users))
        return found

    def put(self, generation: tuple[int, int], key: tuple[Any, ...], rows: list[UsersRow]) -> None:
        if generation != self._generation:
            self._generation, self._reads = generation, {}
        elif len(self._reads) >= self.SIZE:
            del self._reads[next(iter(self._reads))]  # the oldest
        self._reads[key] = rows


def week_of(day: str) -> str:
    """The Monday (ISO text) of the ISO week of ``day`` (ISO text)."""
    return week_start(date.fromisoformat(day)).isoformat()


def read_weekly(conn: sqlite3.Connection, start: date, end: date) -> dict[date, bitmap.UserBitmap]:
    rows = conn.execute(
        "SELECT week, users FROM weekly_user_sets WHERE week BETWEEN ? AND ?",
        (start.isoformat(), end.isoformat()),
    ).fetchall()
    return {date.fromisoformat(week): bitmap.decode(data) for week, data in rows}


def build_weekly(conn: sqlite3.Connection) -> None:
    """Schema 7: the weekly sets from the any-event daily sets (one pass)."""
    conn.execute("DELETE FROM weekly_user_sets")
    weeks: defaultdict[str, list[bitmap.UserBitmap]] = defaultdict(list)
    rows = conn.execute("SELECT day, users FROM daily_user_sets WHERE event = ?", (ANY_EVENT,))
    for day, data in rows:
        weeks[week_of(day)].append(bitmap.decode(data))
    conn.executemany(
        _WEEKLY_WRITE,
        [(week, bitmap.encode(bitmap.union_all(sets))) for week, sets in weeks.items()],
    )


def change_first_seen(
    conn: sqlite3.Connection,
    added: Mapping[str, set[int]],
    removed: Mapping[str, set[int]],
) -> None:
    """Per day (ISO text): put the ``added`` ordinals in its set, take the ``removed`` out."""
    for day in sorted(added.keys() | removed.keys()):
        row = conn.execute(_FIRST_READ, (day,)).fetchone()
        users = bitmap.decode(row[0] if row else None)
        users.difference_update(bitmap.of(removed.get(day, ())))
        users.update(added.get(day, ()))
        if users:
            conn.execute(_FIRST_WRITE, (day, bitmap.encode(users)))
        elif row is not None:
            conn.execute("DELETE FROM first_seen_sets WHERE day = ?", (day,))


def first_seen_day(conn: sqlite3.Connection, user_id: str) -> str | None:
    row = conn.execute("SELECT day FROM first_seen WHERE user_id = ?", (user_id,)).fetchone()
    return None if row is None else str(row[0])


def read_first_seen(
    conn: sqlite3.Connection, start: date, end: date
) -> dict[date, bitmap.UserBitmap]:
    rows = conn.execute(
        "SELECT day, users FROM first_seen_sets WHERE day BETWEEN ? AND ?",
        (start.isoformat(), end.isoformat()),
    ).fetchall()
    return {date.fromisoformat(day): bitmap.decode(data) for day, data in rows}


def convert_legacy(conn: sqlite3.Connection) -> None:
    """Schema 5: the dense ``daily_users`` bitmaps become Roaring ``daily_user_sets``, and
    ``first_seen_sets`` is built from ``first_seen`` (one pass over each table)."""
    legacy = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'daily_users'"
    ).fetchone()
    if legacy is not None:
        rows = conn.execute("SELECT day, platform, event, bits FROM daily_users")
        while chunk := rows.fetchmany(1000):
            conn.executemany(
                _DAILY_WRITE,
                [(d, p, e, bitmap.encode(bitmap.from_dense(bits))) for d, p, e, bits in chunk],
            )
        conn.execute("DROP TABLE daily_users")
    conn.execute("DROP INDEX IF EXISTS first_seen_by_day")  # cohorts read first_seen_sets now
    by_day: defaultdict[str, list[int]] = defaultdict(list)
    for day, ordinal in conn.execute(
        "SELECT f.day, o.ordinal FROM first_seen f JOIN user_ordinals o USING (user_id)"
    ):
        by_day[day].append(ordinal)
    conn.execute("DELETE FROM first_seen_sets")
    conn.executemany(
        _FIRST_WRITE, [(day, bitmap.encode(bitmap.of(ords))) for day, ords in by_day.items()]
    )
