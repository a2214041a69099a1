"""Funnels from next times: an ``ordered`` or ``any`` funnel whose step names are all distinct,
counted from one event per start and step instead of every step event.

With distinct names no event can serve two steps, so `funnel._ordered`'s greedy match from a
start t1 is: step k takes the user's first event named s_k at or after step k-1's time, and
`funnel._any`'s is: step k takes the first s_k at or after t1 (the time to step k being the
latest of steps 2..k). A store that can seek "the first event of this user and name at or
after this time" in an index (`ports.FunnelSeeks`: the SQL stores) hands over exactly those
times, per start; this module applies the window and keeps each user's shortest times, the
rest of the definitions being `funnel`'s. So the read costs one index seek per start and step
rather than every step event of every candidate user (at 1M events the steps ``signup,
companion_created, message_sent`` are 715k events, and the funnel has 100k starts).

Funnels with a repeated step name (an event may then serve only one of the steps) and
``strict`` ones keep `funnel`'s readers.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from operator import itemgetter

from mysoulmate.analytics.funnel import FunnelTally, Order, tally_micros

_MICROSECOND = timedelta(microseconds=1)


def reads_next_times(steps: Sequence[str], order: Order) -> bool:
    """Whether the funnel can be counted from next times (`compute_funnel_next`)."""
    return order != "strict" and len(set(steps)) == len(steps)


def compute_funnel_next(
    rows: Iterable[tuple[str, datetime, Sequence[datetime | None]]],
    steps: Sequence[str],
    window: timedelta,
    order: Order,
) -> FunnelTally:
    """Count the funnel over `FunnelSeeks.funnel_next_times` rows (user, start, the next times
    of steps 2..n, chained for ``ordered``, from the start for ``any``), each user's rows
    together; the store has kept only starts in the funnel's range. The same answer as
    `funnel`'s engines give for the same events."""
    assert reads_next_times(steps, order), "a repeated step name or strict: funnel's engines"
    return tally_micros(_best_per_user(rows, window, order == "ordered"), len(steps))


def _best_per_user(
    rows: Iterable[tuple[str, datetime, Sequence[datetime | None]]],
    window: timedelta,
    chained: bool,
) -> Iterator[list[int]]:
    """Per user, their shortest time per step reached over their starts, in µs (step 1: 0)."""
    for _, starts in itertools.groupby(rows, key=itemgetter(0)):
        best = [0]
        for _, start, next_times in starts:
            limit = start + window
            latest = 0
            for k, reached in enumerate(next_times, 1):
                if reached is None or reached > limit:
                    break  # the first event of the name is too late: every later one is too
                elapsed = (reached - start) // _MICROSECOND
                if not chained:  # any: step k is reached when steps 2..k all are
                    latest = elapsed = max(latest, elapsed)
                if k == len(best):
                    best.append(elapsed)
                elif elapsed < best[k]:
                    best[k] = elapsed
        yield best
