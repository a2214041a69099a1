"""Funnels: how many users go through steps s1..sn, and how fast.

Computed here, in plain Python over one user's events at a time, so every storage backend
(SQLite, PostgreSQL, DynamoDB) only has to hand over candidates and all of them report
exactly the same numbers. Definitions (the product issue's, implemented exactly):

- A *start* is a step-1 event with time in [starts_from, starts_to] (inclusive).
- ``ordered``: step k is reached from a start e1 when there are distinct events e1..ek named
  s1..sk with t(e1) <= ... <= t(ek) and t(ek) - t(e1) <= window.
- ``strict``: as ordered, and no other event of the user lies strictly between consecutive
  step events (t(e_i) < t(e) < t(e_i+1)); events at a step event's exact time never block.
- ``any``: distinct events e2..ek named s2..sk, each with t(e1) <= t(ej) <= t(e1) + window,
  in any order.
- A user counts once, at the deepest step over all their starts; the time to step k is, per
  user, the shortest over their starts (ordered/strict: t(ek) - t(e1); any: the latest of
  e2..ek, minimized over assignments).

Times arrive as time keys (`ports.time_key`: fixed width, so string order is time order and
equal strings are equal times). ``ordered`` and ``any`` compare the keys themselves and parse
only a start and the events a match takes (exact to the microsecond); ``strict`` parses each
distinct time of the user. Only per-user results are turned into integer microseconds.

Two inputs, one engine: `compute_funnel_times` takes each user's step times per name
(`EventStore.funnel_step_times`, what ``ordered`` and ``any`` need: one ordered pass over the
step events); `compute_funnel` takes each user's events (`EventStore.funnel_candidates`,
which ``strict`` needs: an event of any name between two steps breaks the chain).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from mysoulmate.analytics.ports import time_key

if TYPE_CHECKING:
    from mysoulmate.analytics.ports import EventPoint

Order = Literal["ordered", "strict", "any"]
MIN_STEPS = 2
MAX_STEPS = 10
MEDIAN = Fraction(1, 2)
P90 = Fraction(9, 10)

_MICROSECOND = timedelta(microseconds=1)
_ZERO = timedelta(0)
_parse = datetime.fromisoformat  # accepts time_key's trailing "Z" (3.11+), returns UTC


class FunnelStep(BaseModel):
    """One step of a funnel report. Step 1 has ``conversionFromPrevious`` 1.0 (it is its own
    previous step; 0.0 when nobody entered), ``dropOff`` 0 and no conversion times."""

    step: int
    event: str
    users: int
    conversionFromStart: float
    conversionFromPrevious: float
    dropOff: int
    medianSecondsToConvert: float | None
    p90SecondsToConvert: float | None


class FunnelReport(BaseModel):
    """A funnel as the API returns it; ``from`` is a Python keyword, hence ``from_``."""

    model_config = ConfigDict(
        validate_by_name=True, validate_by_alias=True, serialize_by_alias=True
    )

    steps: list[str]
    order: Order
    from_: date = Field(alias="from")
    to: date
    windowSeconds: int
    usersEntered: int
    funnel: list[FunnelStep]


@dataclass(frozen=True)
class FunnelTally:
    """What compute_funnel counts: ``users[k]`` users reached step k+1 (``users[0]`` is
    usersEntered); ``micros[k]`` holds, per such user, their shortest time to step k+1 in
    microseconds (unordered; empty for step 1)."""

    users_entered: int
    users: list[int]
    micros: list[list[int]]


def reads_step_times(order: Order) -> bool:
    """Whether the funnel needs only its steps' times (`funnel_step_times`, matched by
    `compute_funnel_times`); strict needs every event (`funnel_candidates`, `compute_funnel`)."""
    return order != "strict"


def names_needed(steps: Sequence[str], order: Order) -> frozenset[str] | None:
    """The event names to ask ``funnel_candidates`` for: strict needs every event (any event
    between two steps breaks the chain), the others only the step names."""
    return None if order == "strict" else frozenset(steps)


@dataclass(frozen=True)
class _Query:
    """The funnel parameters, normalized once and shared by every user's computation."""

    steps: tuple[str, ...]
    starts_from: datetime
    starts_to: datetime
    window: timedelta
    order: Order
    # The start range as time keys, for comparing keys without parsing them.
    from_key: str
    to_key: str
    # any: occurrence[k] = how many of steps[1..k] are named steps[k] (k >= 1).
    occurrence: tuple[int, ...]
    # strict: need[i][k] = how many of steps[i..k] are named steps[k].
    need: tuple[tuple[int, ...], ...]

    @classmethod
    def of(
        cls,
        steps: Sequence[str],
        starts_from: datetime,
        starts_to: datetime,
        window: timedelta,
        order: Order,
    ) -> _Query:
        assert MIN_STEPS <= len(steps) <= MAX_STEPS, "the caller validates the step count"
        assert order in ("ordered", "strict", "any")
        names = tuple(steps)
        n = len(names)
        starts_from, starts_to = _utc(starts_from), _utc(starts_to)
        return cls(
            steps=names,
            starts_from=starts_from,
            starts_to=starts_to,
            window=window,
            order=order,
            from_key=time_key(starts_from),
            to_key=time_key(starts_to),
            occurrence=tuple(names[1 : k + 1].count(names[k]) for k in range(n)),
            need=tuple(
                tuple(names[i : k + 1].count(names[k]) if k >= i else 0 for k in range(n))
                for i in range(n)
            ),
        )


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _micros(delta: timedelta) -> int:
    return delta // _MICROSECOND


def compute_funnel(
    candidates: Iterable[tuple[str, list[EventPoint]]],
    steps: Sequence[str],
    starts_from: datetime,
    starts_to: datetime,
    window: timedelta,
    order: Order,
) -> FunnelTally:
    """Count the funnel over ``funnel_candidates`` output, one user at a time (the iterator
    is consumed once and never materialized; only one int per user and step is kept, which
    exact percentiles need). Users without a start in range are skipped."""
    query = _Query.of(steps, starts_from, starts_to, window, order)
    return _tally((_user_best(points, query) for _user_id, points in candidates), query)


def compute_funnel_times(
    step_times: Iterable[tuple[str, Mapping[str, Sequence[str]]]],
    steps: Sequence[str],
    starts_from: datetime,
    starts_to: datetime,
    window: timedelta,
    order: Order,
) -> FunnelTally:
    """Count an ``ordered`` or ``any`` funnel over ``funnel_step_times`` output: per user, the
    time keys of their step events by name, oldest first. Consumed once, user by user, as
    `compute_funnel`; the same answer as it gives for those users' events."""
    assert reads_step_times(order), "strict needs every event: compute_funnel"
    query = _Query.of(steps, starts_from, starts_to, window, order)
    match = _ordered if order == "ordered" else _any
    empty: Sequence[str] = ()
    return _tally(
        (
            match([times.get(name, empty) for name in query.steps], query)
            for _user_id, times in step_times
        ),
        query,
    )


def _tally(results: Iterable[list[timedelta]], query: _Query) -> FunnelTally:
    return tally_micros(([_micros(e) for e in best] for best in results), len(query.steps))


def tally_micros(results: Iterable[Sequence[int]], n: int) -> FunnelTally:
    """Count per-user results of an ``n``-step funnel: each user's shortest time in µs to
    each step reached, step 1 (0) first; an empty result is a user without a start."""
    users = [0] * n
    micros: list[list[int]] = [[] for _ in range(n)]
    entered = 0
    for best in results:
        if not best:
            continue
        entered += 1
        for k, elapsed in enumerate(best):
            users[k] += 1
            if k:
                micros[k].append(elapsed)
    return FunnelTally(users_entered=entered, users=users, micros=micros)


def user_conversion(
    points: Sequence[EventPoint],
    steps: Sequence[str],
    starts_from: datetime,
    starts_to: datetime,
    window: timedelta,
    order: Order,
) -> list[int]:
    """One user's result: per step reached, the shortest time to it in microseconds (0 for
    step 1); empty when the user has no start in range. Mainly for tests and debugging."""
    query = _Query.of(steps, starts_from, starts_to, window, order)
    return [_micros(elapsed) for elapsed in _user_best(points, query)]


def _user_best(points: Sequence[EventPoint], query: _Query) -> list[timedelta]:
    if query.order == "strict":
        return _strict(points, query)
    by_name: dict[str, list[str]] = {name: [] for name in query.steps}
    for point in points:
        times = by_name.get(point.event)
        if times is not None:
            times.append(point.ts)
    for times in by_name.values():
        times.sort()  # already sorted per the port's contract: a linear check
    step_times = [by_name[name] for name in query.steps]
    if query.order == "ordered":
        return _ordered(step_times, query)
    return _any(step_times, query)


def _starts(firsts: Sequence[str], query: _Query) -> Iterable[int]:
    """Indexes of step-1 events in range, one per distinct time: tie-mates (same name, same
    time) are interchangeable, so the first one's result is the result of all of them, and
    every other step-1 event usable later then has a higher index."""
    previous: str | None = None
    for r1 in range(bisect_left(firsts, query.from_key), bisect_right(firsts, query.to_key)):
        if firsts[r1] != previous:
            previous = firsts[r1]
            yield r1


def _record(best: list[timedelta], k: int, elapsed: timedelta) -> None:
    if k < len(best):
        if elapsed < best[k]:
            best[k] = elapsed
    else:
        best.append(elapsed)


def _done(best: list[timedelta], n: int) -> bool:
    """Every step reached with time 0: no other start can do better."""
    return len(best) == n and not best[-1]


def _ordered(step_times: Sequence[Sequence[str]], query: _Query) -> list[timedelta]:
    """Greedy per start: each next step takes the earliest event of its name at or after the
    previous step's time that no earlier step used. Per name, the events the steps use are
    then in index order; an exchange argument (any valid match uses, for step j, an event at
    or after greedy's) shows greedy reaches every depth any match reaches, each at the
    earliest possible time. O(steps x log events) per start; keys are compared as text and
    only the start and the events taken are parsed."""
    steps, window = query.steps, query.window
    n = len(steps)
    firsts = step_times[0]
    best: list[timedelta] = []
    for r1 in _starts(firsts, query):
        previous = firsts[r1]
        t0 = _parse(previous)
        limit = t0 + window
        _record(best, 0, _ZERO)
        following = {steps[0]: r1 + 1}  # per name: lowest index still unused
        for k in range(1, n):
            times = step_times[k]
            j = bisect_left(times, previous, following.get(steps[k], 0))
            if j == len(times):
                break
            reached = _parse(times[j])
            if reached > limit:
                break
            following[steps[k]] = j + 1
            previous = times[j]
            _record(best, k, reached - t0)
        if _done(best, n):
            break
    return best


def _any(step_times: Sequence[Sequence[str]], query: _Query) -> list[timedelta]:
    """Per start: steps 2..k need, for each name, as many distinct events at or after the start
    (within the window) as they mention it; taking each name's earliest ones minimizes the
    latest, so step k's time is the c-th earliest event of its name, c = its occurrence."""
    steps, window, occurrence = query.steps, query.window, query.occurrence
    n = len(steps)
    firsts = step_times[0]
    best: list[timedelta] = []
    for r1 in _starts(firsts, query):
        start = firsts[r1]
        t0 = _parse(start)
        limit = t0 + window
        _record(best, 0, _ZERO)
        base = {steps[0]: r1 + 1}  # per name: index of its first usable event
        latest = _ZERO
        for k in range(1, n):
            times = step_times[k]
            first = base.get(steps[k])
            if first is None:
                first = base[steps[k]] = bisect_left(times, start)
            j = first + occurrence[k] - 1
            if j >= len(times):
                break
            reached = _parse(times[j])
            if reached > limit:
                break
            latest = max(latest, reached - t0)
            _record(best, k, latest)
        if _done(best, n):
            break
    return best


def _strict(points: Sequence[EventPoint], query: _Query) -> list[timedelta]:
    """Group the user's events into slots of equal time. From a step event in slot d the next
    step event is in slot d (an unused tie) or d+1 (nothing may lie between), so a match is
    a split of the steps into consecutive blocks placed on consecutive slots, each block's
    names fitting in its slot's events. Per start: a DP over (slot, first step of the current
    block), keeping per slot only the latest block start (a shorter block fits whenever a
    longer one does). At most `steps` states per step, whatever the user's event count."""
    steps, window, need = query.steps, query.window, query.need
    n = len(steps)
    wanted = set(steps)
    slots: dict[str, dict[str, int]] = {}
    for ts, name, _message_id, _session_id in points:
        counts = slots.get(ts)
        if counts is None:
            counts = slots[ts] = {}
        if name in wanted:
            counts[name] = counts.get(name, 0) + 1
    keys = sorted(slots)  # time_key order is time order; already sorted per the contract
    times = [_parse(key) for key in keys]
    counts_by_slot = [slots[key] for key in keys]
    first = steps[0]
    best: list[timedelta] = []
    for d0 in range(bisect_left(times, query.starts_from), bisect_right(times, query.starts_to)):
        if first not in counts_by_slot[d0]:
            continue
        t0 = times[d0]
        limit = t0 + window
        _record(best, 0, timedelta(0))
        states = {d0: 0}  # slot of the last step placed -> first step of its block
        for k in range(1, n):
            name = steps[k]
            reached: dict[int, int] = {}
            for d, i in states.items():
                if need[i][k] <= counts_by_slot[d].get(name, 0) and reached.get(d, -1) < i:
                    reached[d] = i
                e = d + 1
                if e < len(times) and times[e] <= limit and name in counts_by_slot[e]:
                    reached[e] = k
            if not reached:
                break
            states = reached
            _record(best, k, times[min(states)] - t0)
        if _done(best, n):
            break
    return best


def percentile_seconds(micros: Iterable[int], q: Fraction) -> float | None:
    """The q-quantile of durations given in microseconds, in seconds rounded to milliseconds;
    None for no values.

    Linear interpolation between closest ranks (Hyndman & Fan type 7: numpy's default,
    Excel's PERCENTILE.INC): over the sorted values x[0..n-1], position p = (n-1)*q and the
    result is x[floor p] + (p - floor p) * (x[floor p + 1] - x[floor p]). So the median of an
    even count is the mean of the middle two. Computed exactly (integers and fractions), then
    rounded half-to-even to the millisecond, so every backend gets the same float.
    """
    values = sorted(micros)
    if not values:
        return None
    position = (len(values) - 1) * q
    low = position.numerator // position.denominator
    value = Fraction(values[low])
    if position != low:
        value += (position - low) * (values[low + 1] - values[low])
    return round(value / 1000) / 1000


def _fraction(part: int, whole: int) -> float:
    return round(part / whole, 6) if whole else 0.0


def funnel_steps(tally: FunnelTally, steps: Sequence[str]) -> list[FunnelStep]:
    """The per-step lines of a report (conversions, drop-off, median/p90 time to convert)."""
    entered = tally.users_entered
    result = []
    for k, name in enumerate(steps):
        users = tally.users[k]
        previous = tally.users[k - 1] if k else users
        times = sorted(tally.micros[k])  # once: percentile_seconds' own sort is then linear
        result.append(
            FunnelStep(
                step=k + 1,
                event=name,
                users=users,
                conversionFromStart=_fraction(users, entered),
                conversionFromPrevious=_fraction(users, previous),
                dropOff=previous - users,
                medianSecondsToConvert=percentile_seconds(times, MEDIAN) if k else None,
                p90SecondsToConvert=percentile_seconds(times, P90) if k else None,
            )
        )
    return result


def build_report(
    tally: FunnelTally,
    *,
    steps: Sequence[str],
    order: Order,
    from_: date,
    to: date,
    window: timedelta,
) -> FunnelReport:
    """Fill the API report from a tally and the query it answers."""
    return FunnelReport(
        steps=list(steps),
        order=order,
        from_=from_,
        to=to,
        windowSeconds=int(window.total_seconds()),
        usersEntered=tally.users_entered,
        funnel=funnel_steps(tally, steps),
    )
