"""The daily_users bitmap layout (user sets as chunks of 2^16 ordinals) and how one batch's
rollup delta becomes statement parameters: the plan (counts, revenue, first-seen moves,
bitmap chunks, session marks, as the column lists `unnest` takes) that the store's
`_apply_delta` sends inside the ingest transaction. Pure code, no I/O, like
`storage.dynamodb.rollups`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from mysoulmate.analytics.models import SessionMark
from mysoulmate.analytics.rollups import RollupDelta
from mysoulmate.storage.bitmap import Bitmap

CHUNK_SHIFT = 16  # a daily_users row holds 2^16 ordinals (8 KiB): see migration 0001
CHUNK_MASK = (1 << CHUNK_SHIFT) - 1

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
) -> dict[ChunkKey, bytes]:
    """The batch's user sets as bitmap chunks to OR into daily_users."""
    positions: dict[ChunkKey, list[int]] = {}
    for (day, platform, event), members in users.items():
        for user in members:
            ordinal = ordinals[user]
            key = (day, platform, event, ordinal >> CHUNK_SHIFT)
            positions.setdefault(key, []).append(ordinal & CHUNK_MASK)
    return {key: _bitmap_of(bits).to_bytes() for key, bits in positions.items()}


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


def write_user_chunks(conn: Any, changed: Sequence[Sequence[Any]]) -> None:
    """Overwrite the bits of existing ``daily_users`` chunk rows: (day, platform, event,
    chunk, bits) each, in one statement (the rows are locked by the caller)."""
    conn.execute(
        "UPDATE daily_users t SET bits = v.bits FROM unnest("
        "%s::date[], %s::text[], %s::text[], %s::int[], %s::bytea[]) "
        "AS v(day, platform, event, chunk, bits) WHERE t.day = v.day "
        "AND t.platform = v.platform AND t.event = v.event AND t.chunk = v.chunk",
        _columns(changed, 5),
    )
