"""Identity links in PostgreSQL: which user an anonymous visitor turned out to be, and the
move of what was stored under the visitor (``anon:<anonymousId>``) to that user.

A link and everything it moves is one transaction holding the advisory locks of both the
visitor and the user (`erasures`: the key scheme ingest and erasure use), exclusively, in
key order. So a link serializes with every ingest batch holding either person, with
profile updates and with an erasure of the user: a batch storing visitor events either
commits before the link looks (and the link moves them), or waits and stores them after
the link committed (and the consumer, looking the link up again after its batch, links
again, which moves them). Statements touch the tables in the order ingest does (events and
the per-user summaries, user_ordinals, activity_sets, first_seen, first_seen_sets,
session_marks), and the rows of a user-set table in key order, all in one statement, so a
link queues behind concurrent batches instead of deadlocking.

The user's sets gain the user wherever the visitor was and lose the visitor, the first-seen
day becomes the earlier of the two (and the first-seen sets follow); a user with no ordinal
yet simply takes over the visitor's (and with it every membership). Event counts, revenue
and session figures are sums over events, which the move keeps (each event with its session
id), so they do not change, except for a copy the move drops (the user has its messageId):
it leaves its day's event count and revenue, as in every backend. The per-user summaries
(`user_summaries`) are sums, minima and maxima too: the user's gain the events moved, the
visitor's are deleted. The visitor's session mark is deleted, not merged into the user's:
once linked, the visitor's messages are stored under the user and continue the user's own
mark, so the visitor's is never read again (which keeps session assignment the same as in
the backends that leave it in place), and nothing of the visitor may outlive an erasure of
the user.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import date, datetime
from typing import Any

from mysoulmate.analytics.models import ANONYMOUS_PREFIX, Profile
from mysoulmate.analytics.ports import LinkResult, StorageUnavailableError
from mysoulmate.analytics.profiles import merge_profiles
from mysoulmate.analytics.rollups import UNKNOWN_PLATFORM, copies_delta
from mysoulmate.storage.postgres import user_sets, user_summaries
from mysoulmate.storage.postgres.erasures import erased_since, lock_exclusive
from mysoulmate.storage.postgres.pooling import Conn
from mysoulmate.storage.postgres.rollups import PERSON_KEYS, DayKey
from mysoulmate.storage.postgres.rows import _storable_text

# A link looks its anonymous id up before locking (the user to lock may be an earlier
# link's) and starts over when that changed by the time the locks were granted: only a
# link or an erasure racing with it can do that, so a second attempt almost always holds.
LINK_ATTEMPTS = 5
PROFILE_ATTEMPTS = 5


_LINKED = "SELECT anonymous_id, user_id FROM identity_links WHERE anonymous_id = ANY(%s::text[])"
# The link, and whether anything at all is stored under the visitor.
_STATE = (
    "SELECT (SELECT user_id FROM identity_links WHERE anonymous_id = %(anonymous_id)s), "
    "EXISTS (SELECT 1 FROM events WHERE user_id = %(visitor)s) "
    "OR EXISTS (SELECT 1 FROM profiles WHERE user_id = %(visitor)s) "
    "OR EXISTS (SELECT 1 FROM user_ordinals WHERE user_id = %(visitor)s)"
)
# One statement: the visitor's events go, and come back under the user unless the user
# already has their messageId (the primary key makes that a no-op, not a double); the user's
# summaries gain exactly the events that came back (the events trigger, migration 0011).
_MOVE_EVENTS = (
    "WITH gone AS (DELETE FROM events WHERE user_id = %(visitor)s RETURNING *), "
    "moved AS (INSERT INTO events (user_id, message_id, type, event, ts, received_at, "
    "platform, anonymous_id, properties, context, session_id) "
    "SELECT %(user)s, message_id, type, event, ts, received_at, platform, anonymous_id, "
    "properties, context, session_id FROM gone ORDER BY message_id "
    "ON CONFLICT DO NOTHING RETURNING message_id) "
    "SELECT (SELECT count(*) FROM moved), "
    # The copies dropped (the user has their messageId): counted once from now on.
    "(SELECT json_agg(json_build_array((ts AT TIME ZONE 'UTC')::date, platform, event, "
    "properties)) FROM gone WHERE event IS NOT NULL "
    "AND message_id NOT IN (SELECT message_id FROM moved))"
)
_MOVE_FIRST_SEEN = (
    "WITH gone AS (DELETE FROM first_seen WHERE user_id = %(visitor)s RETURNING day) "
    "INSERT INTO first_seen AS t (user_id, day) SELECT %(user)s, day FROM gone "
    "ON CONFLICT (user_id) DO UPDATE SET day = excluded.day WHERE excluded.day < t.day"
)


def linked_users(conn: Conn, anonymous_ids: Collection[str]) -> dict[str, str]:
    """anonymousId → user for the linked ones, in one query."""
    wanted = sorted({a for a in anonymous_ids if _storable_text(a)})
    if not wanted:
        return {}
    return dict(conn.execute(_LINKED, (wanted,)).fetchall())


def forget_links(conn: Conn, user_id: str) -> None:
    """Inside `delete_user`'s transaction (the user's lock held): drop the user's links."""
    conn.execute("DELETE FROM identity_links WHERE user_id = %s", (user_id,))


def link_anonymous(
    conn: Conn, anonymous_id: str, user_id: str, received_at: datetime
) -> LinkResult:
    """`EventStore.link_anonymous` on an autocommit connection."""
    visitor = ANONYMOUS_PREFIX + anonymous_id
    # A visitor is linked to a user, never to a visitor (itself least of all: its events
    # would be deleted and re-inserted nowhere); unstorable ids have nothing stored.
    if user_id.startswith(ANONYMOUS_PREFIX) or not _storable_text(visitor + user_id):
        return LinkResult(None)
    for _ in range(LINK_ATTEMPTS):
        existing, stored = conn.execute(
            _STATE, {"anonymous_id": anonymous_id, "visitor": visitor}
        ).fetchone() or (None, False)
        if existing is not None and not stored:
            # Nothing to move. A batch of the visitor in flight commits later, and its
            # consumer, looking the link up after it, calls again and moves it then.
            return LinkResult(existing, 0)
        result = _link_locked(conn, anonymous_id, existing or user_id, existing, received_at)
        if result is not None:
            return result
    raise StorageUnavailableError(
        f"the link of anonymous id {anonymous_id!r} kept changing: "
        f"gave up after {LINK_ATTEMPTS} attempts"
    )


def _link_locked(
    conn: Conn, anonymous_id: str, user_id: str, existing: str | None, received_at: datetime
) -> LinkResult | None:
    """Link (unless ``existing`` is the link already) and move, in one transaction under
    both locks; None when the link is no longer ``existing`` once the locks are granted."""
    visitor = ANONYMOUS_PREFIX + anonymous_id
    with conn.transaction():
        lock_exclusive(conn, [visitor, user_id])
        if linked_users(conn, [anonymous_id]).get(anonymous_id) != existing:
            return None
        if existing is None:
            if erased_since(conn, user_id, received_at):
                return LinkResult(None)
            conn.execute(
                "INSERT INTO identity_links (anonymous_id, user_id) VALUES (%s, %s)",
                (anonymous_id, user_id),
            )
        return LinkResult(user_id, move_visitor(conn, visitor, user_id))


def move_visitor(conn: Conn, visitor: str, user_id: str) -> int:
    """Move everything stored under ``visitor`` to ``user_id``; the events moved. The
    caller holds both locks exclusively."""
    with conn.pipeline():
        # The only user sets the visitor's bit can be in (`rollups.memberships`).
        keys = conn.execute(PERSON_KEYS, (UNKNOWN_PLATFORM, visitor))
        ordinals = conn.execute(
            "SELECT user_id, ordinal FROM user_ordinals WHERE user_id = ANY(%s::text[])",
            ([visitor, user_id],),
        )
        moved = conn.execute(_MOVE_EVENTS, {"visitor": visitor, "user": user_id})
        user_summaries.remove(conn, visitor)  # what it held is now the user's (just added)
        found: list[DayKey] = keys.fetchall()
        held: dict[str, int] = dict(ordinals.fetchall())
        row = moved.fetchone()
    source, target = held.get(visitor), held.get(user_id)
    if row and row[1]:
        _uncount(conn, row[1])
    _move_user_sets(conn, found, source, target, user_id)
    _move_first_seen(conn, visitor, user_id, source, target)
    conn.execute("DELETE FROM session_marks WHERE user_id = %s", (visitor,))
    _merge_profile(conn, visitor, user_id)
    return int(row[0]) if row else 0


def _uncount(conn: Conn, dropped: list[list[Any]]) -> None:
    """Take dropped copies ([day, platform, event, properties]) out of the day's event
    counts and revenue, in key order as ingest writes them; a count that reaches zero goes."""
    delta = copies_delta(
        (date.fromisoformat(day), platform or None, event, properties or {})
        for day, platform, event, properties in dropped
    )
    for (day, platform, event), n in sorted(delta.counts.items()):
        key = (day, platform, event)
        conn.execute(
            "UPDATE daily_counts SET events = events - %s "
            "WHERE day = %s AND platform = %s AND event = %s",
            (n, *key),
        )
        conn.execute(
            "DELETE FROM daily_counts WHERE day = %s AND platform = %s AND event = %s "
            "AND events <= 0",
            key,
        )
    for (day, platform, currency), micros in sorted(delta.revenue.items()):
        conn.execute(
            "UPDATE daily_revenue SET micros = micros - %s "
            "WHERE day = %s AND platform = %s AND currency = %s",
            (micros, day, platform, currency),
        )


def _move_user_sets(
    conn: Conn, keys: list[DayKey], source: int | None, target: int | None, user_id: str
) -> None:
    """Count the user wherever the visitor (ordinal ``source``) was, and the visitor nowhere."""
    if source is None:  # the visitor never had a track event (or was moved already)
        return
    if target is None:  # the user is in no set yet: they take the visitor's bits as they are
        conn.execute("UPDATE user_ordinals SET user_id = %s WHERE ordinal = %s", (user_id, source))
        return
    if keys:
        user_sets.move_daily(conn, keys, source, target)
    # As an erasure leaves it: the identifier gone, the ordinal never handed out again.
    conn.execute(
        "UPDATE user_ordinals SET user_id = NULL, erased_at = now() WHERE ordinal = %s",
        (source,),
    )


def _move_first_seen(
    conn: Conn, visitor: str, user_id: str, source: int | None, target: int | None
) -> None:
    """The user's first-seen day becomes the earlier of theirs and the visitor's. With two
    ordinals the first-seen sets follow: the visitor leaves theirs, the user moves when
    their day does (with one, the user took the visitor's ordinal and membership)."""
    if source is None or target is None:
        conn.execute(_MOVE_FIRST_SEEN, {"visitor": visitor, "user": user_id})
        return
    days: dict[str, date] = dict(
        conn.execute(
            "SELECT user_id, day FROM first_seen WHERE user_id = ANY(%s::text[]) "
            "ORDER BY user_id FOR UPDATE",
            ([visitor, user_id],),
        ).fetchall()
    )
    conn.execute(_MOVE_FIRST_SEEN, {"visitor": visitor, "user": user_id})
    seen, current = days.get(visitor), days.get(user_id)
    if seen is None:
        return
    added, removed = [], [(seen, source)]
    if current is None or seen < current:
        added.append((seen, target))
        if current is not None:
            removed.append((current, target))
    user_sets.change_first_seen(conn, added, removed)


def _merge_profile(conn: Conn, visitor: str, user_id: str) -> None:
    """Merge the visitor's profile into the user's (`merge_profiles`) and drop it."""
    for _ in range(PROFILE_ATTEMPTS):
        docs: dict[str, Any] = dict(
            conn.execute(
                "SELECT user_id, doc FROM profiles WHERE user_id = ANY(%s::text[]) "
                "ORDER BY user_id FOR UPDATE",
                ([visitor, user_id],),
            ).fetchall()
        )
        if visitor not in docs:
            return
        if _write_merged(conn, user_id, docs.get(user_id), Profile.model_validate(docs[visitor])):
            conn.execute("DELETE FROM profiles WHERE user_id = %s", (visitor,))
            return
    raise StorageUnavailableError(
        f"profile of {user_id!r} kept changing: gave up after {PROFILE_ATTEMPTS} attempts"
    )


def _write_merged(conn: Conn, user_id: str, doc: Any, visitor: Profile) -> bool:
    """Write the merged profile, versioned as `update_profile` does; False when the user's
    profile was created meanwhile (by a writer that holds no lock): read it and merge again."""
    current = Profile.model_validate(doc) if doc is not None else None
    merged = merge_profiles(user_id, current, visitor)
    if merged is None:  # cannot happen: there is a visitor profile
        return True
    merged.version = (current.version if current else 0) + 1
    if current is not None:
        conn.execute(
            "UPDATE profiles SET doc = %s, version = %s WHERE user_id = %s",
            (merged.model_dump_json(), merged.version, user_id),
        )
        return True
    created = conn.execute(
        "INSERT INTO profiles (user_id, doc, version) VALUES (%s, %s, %s) "
        "ON CONFLICT (user_id) DO NOTHING RETURNING 1",
        (user_id, merged.model_dump_json(), merged.version),
    ).fetchone()
    return created is not None
