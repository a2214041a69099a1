"""A brute-force funnel, written to be obviously right rather than fast: for every user and
every step-1 event in range, try EVERY choice of distinct events for each next step, straight
from the definitions in the product issue (see mysoulmate.analytics.funnel's docstring).

It takes full, unfiltered streams, so comparing it with the engine fed a store's filtered
candidates also checks that the filtering (time span, names per order) loses nothing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from fractions import Fraction

from mysoulmate.analytics.funnel import FunnelStep, Order
from mysoulmate.analytics.ports import EventPoint

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def micros(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(microseconds=1)


def reference_user(
    points: Sequence[EventPoint],
    steps: Sequence[str],
    starts_from: datetime,
    starts_to: datetime,
    window: timedelta,
    order: Order,
) -> list[int]:
    """Per step reached, the user's shortest time to it in microseconds ([] if no start)."""
    events = [(micros(datetime.fromisoformat(p.ts)), p.event) for p in points]
    low, high, width = micros(starts_from), micros(starts_to), window // timedelta(microseconds=1)
    best: dict[int, int] = {}  # step index -> shortest time

    def allowed(chain: list[int], j: int) -> bool:
        t_start = events[chain[0]][0]
        t_last = events[chain[-1]][0]
        t = events[j][0]
        if not t_start <= t <= t_start + width:
            return False
        if order == "any":
            return True
        if t < t_last:
            return False
        if order == "strict":
            for other, (t_other, _name) in enumerate(events):
                if other not in (chain[-1], j) and t_last < t_other < t:
                    return False
        return True

    def elapsed(chain: list[int]) -> int:
        t_start = events[chain[0]][0]
        if order == "any":
            return max(events[i][0] for i in chain) - t_start
        return events[chain[-1]][0] - t_start

    def search(chain: list[int]) -> None:
        step = len(chain) - 1
        time_taken = elapsed(chain)
        if step not in best or time_taken < best[step]:
            best[step] = time_taken
        if len(chain) == len(steps):
            return
        for j, (_t, name) in enumerate(events):
            if name == steps[len(chain)] and j not in chain and allowed(chain, j):
                search([*chain, j])

    for i, (t, name) in enumerate(events):
        if name == steps[0] and low <= t <= high:
            search([i])
    return [best[step] for step in range(len(best))]


def reference_funnel(
    streams: dict[str, list[EventPoint]],
    steps: Sequence[str],
    starts_from: datetime,
    starts_to: datetime,
    window: timedelta,
    order: Order,
) -> tuple[int, list[int], list[list[int]]]:
    """(usersEntered, users per step, per step the users' shortest times, sorted)."""
    users = [0] * len(steps)
    times: list[list[int]] = [[] for _ in steps]
    entered = 0
    for points in streams.values():
        best = reference_user(points, steps, starts_from, starts_to, window, order)
        if best:
            entered += 1
        for step, shortest in enumerate(best):
            users[step] += 1
            if step:
                times[step].append(shortest)
    return entered, users, [sorted(t) for t in times]


def reference_percentile(values: list[int], q: Fraction) -> float | None:
    """Linear interpolation between closest ranks on microseconds, in seconds rounded
    half-to-even to the millisecond (the engine's documented definition)."""
    xs = sorted(values)
    if not xs:
        return None
    position = (len(xs) - 1) * q
    below, above = math.floor(position), math.ceil(position)
    value = xs[below] + (position - below) * (xs[above] - xs[below])
    return round(Fraction(value) / 1000) / 1000


def reference_steps(
    streams: dict[str, list[EventPoint]],
    steps: Sequence[str],
    starts_from: datetime,
    starts_to: datetime,
    window: timedelta,
    order: Order,
) -> tuple[int, list[FunnelStep]]:
    """(usersEntered, the report's per-step lines) computed by brute force."""
    entered, users, times = reference_funnel(streams, steps, starts_from, starts_to, window, order)
    lines = []
    for step, name in enumerate(steps):
        previous = users[step - 1] if step else users[step]
        lines.append(
            FunnelStep(
                step=step + 1,
                event=name,
                users=users[step],
                conversionFromStart=round(users[step] / entered, 6) if entered else 0.0,
                conversionFromPrevious=round(users[step] / previous, 6) if previous else 0.0,
                dropOff=previous - users[step],
                medianSecondsToConvert=(
                    reference_percentile(times[step], Fraction(1, 2)) if step else None
                ),
                p90SecondsToConvert=(
                    reference_percentile(times[step], Fraction(9, 10)) if step else None
                ),
            )
        )
    return entered, lines
