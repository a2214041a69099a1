"""GDPR erasure on the embedded store (art. 17), inside the caller's write transaction."""

from __future__ import annotations

import sqlite3
from datetime import datetime

from mysoulmate.analytics.models import ANONYMOUS_PREFIX
from mysoulmate.analytics.ports import ErasureResult, time_key
from mysoulmate.storage.sqlite import identity, user_summaries


def erase(conn: sqlite3.Connection, user_id: str, erased_at: datetime) -> ErasureResult:
    """The tombstones, then everything stored of the user, and of each visitor linked to
    them: what a move cut short (a failed link re-check) left under the visitor is theirs
    too, and so is a visitor's message received before the erasure and still queued (its
    tombstone drops it). A tombstone is the erasure's time, or the latest receipt among the
    events it deletes when that is later. The links go last."""
    visitors = [
        ANONYMOUS_PREFIX + anonymous_id
        for (anonymous_id,) in conn.execute(
            "SELECT anonymous_id FROM identity_links WHERE user_id = ?", (user_id,)
        ).fetchall()
    ]
    # What it deletes that was received after its time (sent while it was requested) it
    # covers too: its redelivery is then refused, not stored and counted again.
    conn.executemany(
        "INSERT INTO erasures VALUES (?, max(?, coalesce("
        "(SELECT max(received_at) FROM events WHERE user_id = ?), ''))) "
        "ON CONFLICT DO UPDATE SET erased_at = max(erased_at, excluded.erased_at)",
        [(person, time_key(erased_at), person) for person in [user_id, *visitors]],
    )
    events, profile = 0, False
    for person in [user_id, *visitors]:
        erased_events, erased_profile = _erase_person(conn, person)
        events, profile = events + erased_events, profile or erased_profile
    conn.execute("DELETE FROM identity_links WHERE user_id = ?", (user_id,))
    return ErasureResult(events=events, profile=profile)


def _erase_person(conn: sqlite3.Connection, person: str) -> tuple[int, bool]:
    """Delete what is stored of ``person``: (events deleted, whether a profile was)."""
    identity.remove_from_sets(conn, person)
    events = conn.execute("DELETE FROM events WHERE user_id = ?", (person,)).rowcount
    profile = conn.execute("DELETE FROM profiles WHERE user_id = ?", (person,)).rowcount
    for table in ("first_seen", "session_marks", "user_ordinals"):
        conn.execute(f"DELETE FROM {table} WHERE user_id = ?", (person,))  # noqa: S608 - constants
    # A perf message received after the erasure's time is new data, and may have been counted
    # before the erasure ran: its entry stays, or its redelivery would count it again.
    conn.execute(
        "DELETE FROM perf_ledger WHERE user_id = ? AND (received_at IS NULL OR received_at <= "
        "(SELECT erased_at FROM erasures WHERE user_id = ?))",
        (person, person),
    )
    user_summaries.remove(conn, person)
    return events, profile > 0
