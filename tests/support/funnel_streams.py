"""Random per-user event streams for funnel tests, shared by the engine's reference test and
the storage backends' funnel tests (push `stream_messages` into a store, compare its
funnel with `funnel_reference`).

The streams are built to hit the edge cases of the definitions: equal timestamps (ties),
gaps of exactly the window and one microsecond more, step-1 events exactly on and just
outside [starts_from, starts_to], events far outside the queried span, repeated step
names, noise events between steps, and users with many step-1 events.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from mysoulmate.analytics.funnel import Order, names_needed
from mysoulmate.analytics.models import QueuedMessage
from mysoulmate.analytics.ports import EventPoint, time_key

STEP_NAMES = ("open", "view", "cart", "pay", "share")
NOISE_NAMES = ("ping", "scroll")
FROM = date(2026, 1, 10)
TO = date(2026, 1, 12)
WINDOWS = (timedelta(minutes=30), timedelta(hours=6), timedelta(days=1))
_US = timedelta(microseconds=1)


@dataclass(frozen=True)
class RandomStreams:
    """Every user's full stream (oldest first, by ts then messageId) and the query span."""

    streams: dict[str, list[EventPoint]]
    from_: date
    to: date
    window: timedelta

    @property
    def starts_from(self) -> datetime:
        return datetime.combine(self.from_, time(), tzinfo=UTC)

    @property
    def starts_to(self) -> datetime:
        return datetime.combine(self.to, time.max, tzinfo=UTC)

    @property
    def until(self) -> datetime:
        return self.starts_to + self.window


def random_streams(
    seed: int,
    users: int = 500,
    *,
    step_names: Sequence[str] = STEP_NAMES,
    noise_names: Sequence[str] = NOISE_NAMES,
    window: timedelta | None = None,
) -> RandomStreams:
    """Deterministic for a seed. Users have 1-24 events (a few have 40, mostly step-1
    events) so the brute-force reference stays fast."""
    rng = random.Random(seed)
    window = window if window is not None else rng.choice(WINDOWS)
    data = RandomStreams(streams={}, from_=FROM, to=TO, window=window)
    lo, hi = data.starts_from, data.starts_to
    span = hi - lo
    boundary_anchors = (lo, hi, lo - _US, hi + _US, hi + window, lo - window)
    for index in range(users):
        user = f"u{seed}-{index:04d}"
        heavy = rng.random() < 0.02
        count = 40 if heavy else rng.randint(1, 24)
        # Favour few names per user so steps actually connect; heavy users repeat step 1.
        names = list(step_names[: rng.randint(2, len(step_names))])
        weights = [4.0 if i == 0 and heavy else 2.0 for i in range(len(names))]
        names += noise_names
        weights += [1.0] * len(noise_names)
        if rng.random() < 0.15:
            anchor = rng.choice(boundary_anchors)
        else:
            anchor = lo - timedelta(days=1) + rng.random() * (span + window + timedelta(days=2))
            anchor = anchor.replace(microsecond=rng.choice((0, anchor.microsecond)))
        moments: list[datetime] = []
        moment = anchor
        for _ in range(count):
            moments.append(moment)
            moment = _next_moment(rng, moment, moments, window)
        journey = not heavy and rng.random() < 0.5  # walks the steps in order, mostly
        cursor = 0
        points: list[EventPoint] = []
        for i, at in enumerate(moments):
            roll = rng.random()
            if journey and roll < 0.6:
                name = step_names[cursor]
                cursor = min(cursor + 1, len(step_names) - 1)
            elif journey and roll < 0.7:
                name = step_names[max(cursor - 2, 0)]  # back to an earlier step
            else:
                name = rng.choices(names, weights)[0]
            if i and rng.random() < 0.1:
                name = points[-1].event  # repeated names back to back
            message_id = f"{user}-m{rng.getrandbits(24):06x}-{i:02d}"
            points.append(EventPoint(time_key(at), name, message_id))
        points.sort()
        data.streams[user] = points
    return data


def _next_moment(
    rng: random.Random, moment: datetime, earlier: list[datetime], window: timedelta
) -> datetime:
    roll = rng.random()
    if roll < 0.2:
        return moment  # a tie
    if roll < 0.25:
        return moment + _US
    if roll < 0.3:
        # exactly the window (or one microsecond more) after some earlier event
        return rng.choice(earlier) + window + rng.choice((timedelta(0), _US))
    if roll < 0.55:
        return moment + timedelta(seconds=rng.randint(1, 120))
    if roll < 0.75:
        return moment + timedelta(seconds=rng.randint(60, 3600), microseconds=rng.randint(0, 999))
    if roll < 0.9:
        return moment + timedelta(hours=rng.randint(1, 12))
    if roll < 0.95:
        return moment + timedelta(days=rng.randint(1, 3))
    return moment - timedelta(minutes=rng.randint(1, 90))  # out of order: sorted later


def store_candidates(
    data: RandomStreams, steps: Sequence[str], order: Order
) -> Iterator[tuple[str, list[EventPoint]]]:
    """What a store's ``funnel_candidates`` returns for this query (the port's contract):
    users with a step-1 event in [starts_from, starts_to], with their events in
    [starts_from, starts_to + window] named per ``names_needed``."""
    names = names_needed(steps, order)
    low, high, until = time_key(data.starts_from), time_key(data.starts_to), time_key(data.until)
    for user, points in data.streams.items():
        if not any(p.event == steps[0] and low <= p.ts <= high for p in points):
            continue
        yield (
            user,
            [p for p in points if low <= p.ts <= until and (names is None or p.event in names)],
        )


def store_step_times(
    data: RandomStreams, steps: Sequence[str]
) -> Iterator[tuple[str, dict[str, list[str]]]]:
    """What a store's ``funnel_step_times`` may return for this query: every user with a step
    event in [starts_from, starts_to + window] (starters or not), their step times by name."""
    names = frozenset(steps)
    low, until = time_key(data.starts_from), time_key(data.until)
    for user, points in data.streams.items():
        times: dict[str, list[str]] = {}
        for p in points:
            if p.event in names and low <= p.ts <= until:
                times.setdefault(p.event, []).append(p.ts)
        if times:
            yield user, times


def store_next_times(
    data: RandomStreams, steps: Sequence[str], chained: bool
) -> list[tuple[str, str, list[str | None]]]:
    """What a store's ``funnel_next_times`` returns for this query, as time keys, sorted: per
    distinct (user, step-1 time in [starts_from, starts_to]), each later step's first event
    at or after the previous step's time (``chained``) or the start's; None from the first
    step with none on."""
    low, high = time_key(data.starts_from), time_key(data.starts_to)
    rows: list[tuple[str, str, list[str | None]]] = []
    for user, points in data.streams.items():
        starts = sorted({p.ts for p in points if p.event == steps[0] and low <= p.ts <= high})
        for start in starts:
            later: list[str | None] = []
            anchor: str | None = start
            for name in steps[1:]:
                reached = None
                if anchor is not None:
                    reached = min(
                        (p.ts for p in points if p.event == name and p.ts >= anchor), default=None
                    )
                later.append(reached)
                anchor = None if reached is None else reached if chained else start
            rows.append((user, start, later))
    return sorted(rows, key=lambda row: (row[0], row[1]))


def stream_messages(streams: dict[str, list[EventPoint]]) -> list[QueuedMessage]:
    """The streams as track messages to insert into a store (messageId = the point's)."""
    messages = []
    for user, points in streams.items():
        for point in points:
            at = datetime.fromisoformat(point.ts)
            messages.append(
                QueuedMessage(
                    type="track",
                    messageId=point.message_id,
                    userId=user,
                    event=point.event,
                    timestamp=at,
                    receivedAt=at,
                    platform="web",
                )
            )
    return messages
