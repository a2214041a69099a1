"""What an ordered or any funnel reads from the embedded store (`funnel_step_times`): its step
events alone, in one pass in user order over `events_by_name_user_time` (event, user_id, ts).

Per step name a keyset-paged scan of the index, one row per user (their times of that name,
`group_concat`), merged by user id. The store's connection is shared by threads behind a lock:
each page is one short read under it, never held while the caller consumes, so a caller may
read the store between two users, or leave the stream early.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Collection, Iterator, Sequence
from datetime import datetime
from operator import itemgetter
from typing import Any

from mysoulmate.analytics.ports import time_key

# Users per page of one step's scan.
FUNNEL_PAGE_USERS = 2000

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
