"""What funnels read from the embedded store, all over `events_by_name_user_time` (event,
user_id, ts) but `candidates` (strict funnels: every event of the users with a start).

- `next_times` (`FunnelSeeks.funnel_next_times`, an ordered or any funnel of distinct names):
  keyset pages of starts, and per start and step one seek for the first event of the name
  at or after the previous step's time (or the start's).
- `step_times` (`funnel_step_times`, the other ordered or any funnels): the step events alone,
  in one pass in user order. Per step name a keyset-paged scan of the index, one row per user
  (their times of that name, `group_concat`), merged by user id.

The store's connection is shared by threads behind a lock: each page is one short read under
it, never held while the caller consumes, so a caller may read the store between two users,
or leave the stream early.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Collection, Iterator, Sequence
from datetime import datetime
from operator import itemgetter
from typing import Any

from mysoulmate.analytics.ports import EventPoint, time_key
from mysoulmate.storage.sqlite.connection import CHUNK

# Users per page of one step's scan.
FUNNEL_PAGE_USERS = 2000
# Starts per page of `next_times`: a page's seeks hold the store's lock for a few ms.
FUNNEL_PAGE_STARTS = 2000
_parse = datetime.fromisoformat  # time keys end in "Z": aware UTC datetimes

Read = Callable[[str, Sequence[Any]], list[Any]]


def step_times(
    read: Read, names: Collection[str], start: datetime, end: datetime
) -> Iterator[tuple[str, dict[str, list[str]]]]:
    """Per user with events named in ``names`` in [start, end]: their time keys by name,
    oldest first; users in id order (byte order, as the index's BINARY collation)."""
    lo, hi = time_key(start), time_key(end)
    streams = [_name_times(read, name, lo, hi) for name in sorted(names)]
    merged = heapq.merge(*streams, key=itemgetter(0))
    for user, rows in itertools.groupby(merged, key=itemgetter(0)):
        yield user, {name: times for _, name, times in rows}


def _name_times(read: Read, name: str, lo: str, hi: str) -> Iterator[tuple[str, str, list[str]]]:
    after: list[str] = []  # the last user of the previous page
    while True:
        rows = read(
            "SELECT user_id, group_concat(ts) FROM events INDEXED BY events_by_name_user_time "  # noqa: S608 - placeholders only
            f"WHERE event = ? AND ts BETWEEN ? AND ? {'AND user_id > ? ' if after else ''}"
            "GROUP BY user_id ORDER BY user_id LIMIT ?",
            (name, lo, hi, *after, FUNNEL_PAGE_USERS),
        )
        for user, joined in rows:
            times = joined.split(",")
            times.sort()  # group_concat follows the index's order, but does not promise it
            yield user, name, times
        if len(rows) < FUNNEL_PAGE_USERS:
            return
        after = [rows[-1][0]]


def next_times(
    read: Read, steps: Sequence[str], chained: bool, start: datetime, end: datetime
) -> Iterator[tuple[str, datetime, list[datetime | None]]]:
    """Per start (a ``steps[0]`` event in [start, end], one per user and time): the user, its
    time, and per later step the time of the user's first event of that name at or after the
    previous step's (``chained``) or the start's, None from the first step with none on; in
    (user, start) order."""
    query = _next_times_query(len(steps), chained)
    lo, hi = time_key(start), time_key(end)
    after = ("", "")  # (user, time) of the previous page's last start; "" sorts first
    while True:
        rows = read(query, (steps[0], lo, hi, *after, FUNNEL_PAGE_STARTS, *steps[1:]))
        for user, first, *later in rows:
            yield user, _parse(first), [None if key is None else _parse(key) for key in later]
        if len(rows) < FUNNEL_PAGE_STARTS:
            return
        after = (rows[-1][0], rows[-1][1])


def _next_times_query(n: int, chained: bool) -> str:
    """One page of starts (parameters: step 1's name, the range, the last start read, the
    page size), then a step per MATERIALIZED CTE so each seek runs once per start (inlined,
    SQLite evaluated a chained seek again inside the next one), each with its name."""
    ctes = [
        "p1 AS MATERIALIZED (SELECT DISTINCT user_id, ts AS t1 "
        "FROM events INDEXED BY events_by_name_user_time "
        "WHERE event = ? AND ts BETWEEN ? AND ? AND (user_id, ts) > (?, ?) "
        "ORDER BY user_id, ts LIMIT ?)"
    ]
    for k in range(2, n + 1):
        anchor = f"t{k - 1}" if chained else "t1"
        # No seek once a step is missing (chained, the NULL anchor finds nothing anyway).
        ctes.append(
            f"p{k} AS MATERIALIZED (SELECT p{k - 1}.*, CASE WHEN p{k - 1}.t{k - 1} IS NOT NULL "  # noqa: S608 - aliases and placeholders only
            "THEN (SELECT ts FROM events INDEXED BY events_by_name_user_time "
            f"WHERE event = ? AND user_id = p{k - 1}.user_id AND ts >= p{k - 1}.{anchor} "
            f"ORDER BY ts LIMIT 1) END AS t{k} FROM p{k - 1})"
        )
    return f"WITH {', '.join(ctes)} SELECT * FROM p{n} ORDER BY user_id, t1"  # noqa: S608 - placeholders only


def candidates(
    read: Read,
    first_event: str,
    starts_from: datetime,
    starts_to: datetime,
    until: datetime,
    events: frozenset[str] | None,
) -> Iterator[tuple[str, list[EventPoint]]]:
    """`EventStore.funnel_candidates`: the users with a start, then their events in chunks of
    users, each chunk one read in (user, time) order."""
    users = [
        row[0]
        for row in read(
            "SELECT DISTINCT user_id FROM events WHERE event = ? AND event IS NOT NULL "
            "AND ts BETWEEN ? AND ? ORDER BY user_id",
            (first_event, time_key(starts_from), time_key(starts_to)),
        )
    ]
    names = sorted(events) if events is not None else None
    for start in range(0, len(users), CHUNK):
        chunk = users[start : start + CHUNK]
        marks = ",".join("?" * len(chunk))
        # INDEXED BY: with an `event IN (...)` term the planner prefers the (event, ts)
        # index and scans every matching event of everyone per chunk, which grows with
        # users x events (measured: 0.7 s -> 18 s per chunk at 1M events).
        query = (
            "SELECT user_id, ts, event, message_id FROM events "  # noqa: S608 - placeholders only
            "INDEXED BY events_by_user_time "
            f"WHERE user_id IN ({marks}) AND event IS NOT NULL AND ts BETWEEN ? AND ?"
        )
        args: list[Any] = [*chunk, time_key(starts_from), time_key(until)]
        if names is not None:
            query += f" AND event IN ({','.join('?' * len(names))})"
            args += names
        query += " ORDER BY user_id, ts, message_id"
        for user, rows in itertools.groupby(read(query, args), key=itemgetter(0)):
            yield user, [EventPoint(ts, name, mid) for _, ts, name, mid in rows]
