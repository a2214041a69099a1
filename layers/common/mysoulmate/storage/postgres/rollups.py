"""The user-set layout (Roaring bitmaps in rows of 2^18 ordinals, `user_sets`) and how one
batch's rollup delta becomes statement parameters: the plan (counts, revenue, first-seen
moves, user-set chunks, session marks, as the column lists `unnest` takes) that the store's
`_apply_delta` sends inside the ingest transaction. Pure code, no I/O, like
`storage.dynamodb.rollups`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from mysoulmate.analytics.date_range import week_start
from mysoulmate.analytics.models import SessionMark
from mysoulmate.analytics.ports import ANY_EVENT
from mysoulmate.analytics.rollups import RollupDelta
from mysoulmate.storage import bitmap

# A user-set row holds the members among 2^18 ordinals (4 Roaring containers, at most 32 KiB
# when dense): one row per set up to 262,144 users, and a batch, erasure or link rewrites a
# few KiB per set it touches, not a set the size of the whole user base (migration 0010).
CHUNK_SHIFT = 18

ChunkKey = tuple[date, str, str, int]
DayKey = tuple[date, str, str]

# Weekly sets (migration 0012) are rows of activity_sets too: (Monday, WEEK_PLATFORM, ANY_EVENT)
# holds who had a track event that ISO week on any platform. No client can send the name (a
# platform never holds a control character), and every change to a day's any-event set
# changes its week's set the same way (`memberships`), in the same statements.
WEEK_PLATFORM = "\x1fweek"
# The (day, platform, event) keys a person's stored events roll up to (`memberships`).
PERSON_KEYS = (
    "SELECT DISTINCT (ts AT TIME ZONE 'UTC')::date, COALESCE(NULLIF(platform, ''), %s), event "
    "FROM events WHERE user_id = %s AND event IS NOT NULL"
)


def memberships(keys: Iterable[DayKey]) -> list[DayKey]:
    """Every set a person whose events roll up to ``keys`` is in: those, each day's
    any-event set on that platform, and each day's week set; sorted."""
    found = set(keys)
    found |= {(day, platform, ANY_EVENT) for day, platform, _ in found}
    found |= {(week_start(day), WEEK_PLATFORM, ANY_EVENT) for day, _, _ in keys}
    return sorted(found)


@dataclass
class _Plan:
    """One batch's rollup delta, ready to send: statement parameters (column lists) and
    the user-set chunks to OR in, which need every user's ordinal (``missing`` have none)."""

    delta: RollupDelta
    ordinals: dict[str, int]
    missing: list[str]
    earlier: list[tuple[str, date]]  # users whose first-seen day this batch moves back
    counts: list[list[Any]]
    revenue: list[list[Any]]
    chunks: dict[ChunkKey, bitmap.UserBitmap] | None
    marks: list[list[Any]]  # (user, session id, start, last): each person's current session


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
        marks=_mark_columns(delta.session_marks),
    )


def _chunks(
    users: Mapping[tuple[date, str, str], set[str]], ordinals: dict[str, int]
) -> dict[ChunkKey, bitmap.UserBitmap]:
    """The batch's user sets, per chunk row of activity_sets they are OR-ed into (a day's
    any-event users go into its week's set too)."""
    positions: dict[ChunkKey, list[int]] = {}
    for (day, platform, event), members in users.items():
        keys = [(day, platform, event)]
        if event == ANY_EVENT:
            keys.append((week_start(day), WEEK_PLATFORM, ANY_EVENT))
        for user in members:
            ordinal = ordinals[user]
            for key in keys:
                positions.setdefault((*key, ordinal >> CHUNK_SHIFT), []).append(ordinal)
    return {key: bitmap.of(found) for key, found in positions.items()}


def _mark_columns(marks: Mapping[str, SessionMark]) -> list[list[Any]]:
    """Session marks as (user, session id, start, last) columns, in user order."""
    people = sorted(marks)
    held = [marks[person] for person in people]
    return [
        people,
        [mark.session_id for mark in held],
        [mark.start for mark in held],
        [mark.last for mark in held],
    ]


def _columns(rows: Sequence[Sequence[Any]], width: int) -> list[list[Any]]:
    """Rows → one list per column, the shape `unnest(%s::type[], …)` takes."""
    columns: list[list[Any]] = [[] for _ in range(width)]
    for row in rows:
        for column, value in zip(columns, row, strict=True):
            column.append(value)
    return columns
