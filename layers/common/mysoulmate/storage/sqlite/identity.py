"""Identity links on the embedded store: an anonymous visitor merged into a user.

Every function runs inside the caller's write transaction, so a link and the move of the
visitor's history commit together (SQLite has one writer: no insert can slip in between).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection
from datetime import date, datetime

from mysoulmate.analytics.models import ANONYMOUS_PREFIX, Profile
from mysoulmate.analytics.ports import ANY_EVENT, LinkResult, time_key
from mysoulmate.analytics.profiles import merge_profiles
from mysoulmate.analytics.rollups import UNKNOWN_PLATFORM, copies_delta
from mysoulmate.storage.sqlite import user_sets, user_summaries
from mysoulmate.storage.sqlite.connection import rows_by_key
from mysoulmate.storage.sqlite.user_sets import SetKey


def linked_users(conn: sqlite3.Connection, anonymous_ids: Collection[str]) -> dict[str, str]:
    return rows_by_key(conn, "identity_links", "anonymous_id", "user_id", sorted(anonymous_ids))


def link(
    conn: sqlite3.Connection, anonymous_id: str, user_id: str, received_at: datetime
) -> LinkResult:
    """Link (the first link wins) and move the visitor's history; see the port."""
    row = conn.execute(
        "SELECT user_id FROM identity_links WHERE anonymous_id = ?", (anonymous_id,)
    ).fetchone()
    if row is not None:
        user_id = row[0]
    else:
        erased = conn.execute(
            "SELECT erased_at FROM erasures WHERE user_id = ?", (user_id,)
        ).fetchone()
        if erased is not None and time_key(received_at) <= erased[0]:
            return LinkResult(None)
        conn.execute(
            "INSERT INTO identity_links VALUES (?, ?, ?)",
            (anonymous_id, user_id, time_key(received_at)),
        )
    return LinkResult(user_id, move_person(conn, ANONYMOUS_PREFIX + anonymous_id, user_id))


def set_keys(conn: sqlite3.Connection, user_id: str) -> set[SetKey]:
    """Every user set the user belongs to, derived from their counted events."""
    keys = conn.execute(
        "SELECT DISTINCT substr(ts, 1, 10), coalesce(nullif(platform, ''), ?), event "
        "FROM events WHERE user_id = ? AND event IS NOT NULL",
        (UNKNOWN_PLATFORM, user_id),
    ).fetchall()
    return {(d, p, e) for d, p, e in keys} | {(d, p, ANY_EVENT) for d, p, _ in keys}


def remove_from_sets(conn: sqlite3.Connection, user_id: str) -> None:
    """An erasure's part: the user leaves every daily set and their first-seen set."""
    ordinal = _ordinal(conn, user_id, create=False)
    if ordinal is None:
        return
    user_sets.change_daily(conn, set_keys(conn, user_id), remove=ordinal)
    day = user_sets.first_seen_day(conn, user_id)
    if day is not None:
        user_sets.change_first_seen(conn, {}, {day: {ordinal}})


def _ordinal(conn: sqlite3.Connection, user_id: str, create: bool) -> int | None:
    if create:
        conn.execute("INSERT OR IGNORE INTO user_ordinals (user_id) VALUES (?)", (user_id,))
    row = conn.execute("SELECT ordinal FROM user_ordinals WHERE user_id = ?", (user_id,)).fetchone()
    return int(row[0]) if row else None


# The visitor's events whose messageId the user already has: (visitor, user).
_COPIES = "user_id = ? AND message_id IN (SELECT message_id FROM events WHERE user_id = ?)"


def move_person(conn: sqlite3.Connection, visitor: str, user_id: str) -> int:
    """Move the visitor's events, set memberships, first-seen day and profile to the user."""
    visitor_ordinal = _ordinal(conn, visitor, create=False)
    if visitor_ordinal is not None:
        user_ordinal = _ordinal(conn, user_id, create=True)
        assert user_ordinal is not None  # just created
        user_sets.change_daily(
            conn, set_keys(conn, visitor), add={user_ordinal}, remove=visitor_ordinal
        )
        _move_first_seen(conn, visitor, user_id, visitor_ordinal, user_ordinal)
        conn.execute("DELETE FROM user_ordinals WHERE user_id = ?", (visitor,))
    # A messageId the user already has is the same message: keep one, counted once.
    _uncount(
        conn,
        conn.execute(
            f"SELECT ts, platform, event, properties FROM events WHERE {_COPIES} "  # noqa: S608 - constants only
            "AND event IS NOT NULL",
            (visitor, user_id),
        ).fetchall(),
    )
    conn.execute(f"DELETE FROM events WHERE {_COPIES}", (visitor, user_id))  # noqa: S608 - constants only
    moved = conn.execute(
        "UPDATE events SET user_id = ? WHERE user_id = ?", (user_id, visitor)
    ).rowcount
    # Summaries are derived again rather than merged: a session can span the two histories.
    user_summaries.remove(conn, visitor)
    if moved:
        user_summaries.rebuild(conn, user_id)
    _move_profile(conn, visitor, user_id)
    return moved


def _uncount(conn: sqlite3.Connection, rows: list[tuple[str, str | None, str, str]]) -> None:
    """Take dropped copies (ts, platform, event, properties) out of the day's event counts
    and revenue; a count that reaches zero goes (as if the event had never been stored)."""
    if not rows:
        return
    delta = copies_delta(
        (date.fromisoformat(ts[:10]), platform, event, json.loads(properties))
        for ts, platform, event, properties in rows
    )
    counts = [(d.isoformat(), p, e, n) for (d, p, e), n in delta.counts.items()]
    conn.executemany(
        "UPDATE daily_counts SET events = events - ? WHERE day = ? AND platform = ? AND event = ?",
        [(n, d, p, e) for d, p, e, n in counts],
    )
    conn.executemany(
        "DELETE FROM daily_counts WHERE day = ? AND platform = ? AND event = ? AND events <= 0",
        [(d, p, e) for d, p, e, _ in counts],
    )
    conn.executemany(
        "UPDATE daily_revenue SET micros = micros - ? "
        "WHERE day = ? AND platform = ? AND currency = ?",
        [(n, d.isoformat(), p, c) for (d, p, c), n in delta.revenue.items()],
    )


def _move_first_seen(
    conn: sqlite3.Connection, visitor: str, user_id: str, visitor_ordinal: int, user_ordinal: int
) -> None:
    """The user's first-seen day becomes the earlier of theirs and the visitor's; the
    first-seen sets follow (the visitor leaves theirs, the user moves when their day does)."""
    seen = user_sets.first_seen_day(conn, visitor)
    if seen is None:
        return
    current = user_sets.first_seen_day(conn, user_id)
    added: dict[str, set[int]] = {}
    removed: dict[str, set[int]] = {seen: {visitor_ordinal}}
    if current is None or seen < current:
        added[seen] = {user_ordinal}
        if current is not None:
            removed.setdefault(current, set()).add(user_ordinal)
        conn.execute(
            "INSERT INTO first_seen VALUES (?,?) ON CONFLICT DO UPDATE SET day = excluded.day",
            (user_id, seen),
        )
    user_sets.change_first_seen(conn, added, removed)
    conn.execute("DELETE FROM first_seen WHERE user_id = ?", (visitor,))


def _move_profile(conn: sqlite3.Connection, visitor: str, user_id: str) -> None:
    rows = dict(
        conn.execute(
            "SELECT user_id, doc FROM profiles WHERE user_id IN (?, ?)", (visitor, user_id)
        ).fetchall()
    )
    if visitor not in rows:
        return
    current = Profile.model_validate_json(rows[user_id]) if user_id in rows else None
    merged = merge_profiles(user_id, current, Profile.model_validate_json(rows[visitor]))
    assert merged is not None  # the visitor's profile exists
    merged.version = (current.version if current else 0) + 1
    conn.execute(
        "INSERT INTO profiles VALUES (?,?,?) ON CONFLICT(user_id) DO UPDATE "
        "SET doc = excluded.doc, version = excluded.version",
        (user_id, merged.model_dump_json(), merged.version),
    )
    conn.execute("DELETE FROM profiles WHERE user_id = ?", (visitor,))
