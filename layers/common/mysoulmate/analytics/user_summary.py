"""Per-user summaries: what `GET /user/{id}` shows besides its page of events.

The SQL stores keep two summaries with the rollups, written in the transaction that stores
the events and only for events stored for the first time: event counts per (user, day,
event) and one row per (user, session id). A read then costs the user's days and sessions in
the range plus ``limit`` events, never a pass over their whole history. Stores without them
(DynamoDB, the test double) answer the same from the user's events (`summary_from_points`),
which is also the reference the contract tests hold the summaries to.

Sessions are "the user's events within the range, grouped by session id": a session that
crosses an end of the range shows only its part inside. Events stored before session ids
existed (no id) are grouped by the 30-minute rule at read time; only old data has them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mysoulmate.analytics.date_range import DateRange
from mysoulmate.analytics.models import SESSION_GAP, QueuedMessage
from mysoulmate.analytics.ports import EventPoint, SessionFigures, UserSummary, time_key

MAX_LISTED_SESSIONS = 100

TimeBounds = tuple[str, str]  # inclusive time keys (`time_key`)
DayCountKey = tuple[str, str, str]  # (user, day as YYYY-MM-DD, event)
SessionKey = tuple[str, str]  # (user, session id)


@dataclass
class Span:
    """Events counted in a summary row: how many, and the time keys of the first and last."""

    events: int
    first: str
    last: str

    def add(self, other: Span) -> None:
        self.events += other.events
        self.first = min(self.first, other.first)
        self.last = max(self.last, other.last)


@dataclass
class SummaryDelta:
    """What storing these events for the first time adds to the summaries."""

    day_counts: dict[DayCountKey, Span]
    sessions: dict[SessionKey, Span]

    def __bool__(self) -> bool:
        return bool(self.day_counts)


def summary_delta(new_messages: Iterable[QueuedMessage]) -> SummaryDelta:
    """The summary rows new events add to (identifies and other events without a name add
    none; events without a session id add counts only)."""
    delta = SummaryDelta({}, {})
    for message in new_messages:
        if message.event is None:
            continue
        ts = time_key(message.timestamp)
        one = Span(1, ts, ts)
        _merge(delta.day_counts, (message.userId, ts[:10], message.event), one)
        if message.sessionId is not None:
            _merge(delta.sessions, (message.userId, message.sessionId), Span(1, ts, ts))
    return delta


def _merge(rows: dict[Any, Span], key: Any, span: Span) -> None:
    row = rows.get(key)
    if row is None:
        rows[key] = span
    else:
        row.add(span)


def unnamed_sessions(points: Sequence[EventPoint]) -> list[SessionFigures]:
    """Events without a session id (oldest first) grouped by the 30-minute rule."""
    sessions: list[SessionFigures] = []
    start = last = None
    count = 0
    for point in points:
        at = datetime.fromisoformat(point.ts)
        if last is not None and at - last <= SESSION_GAP:
            last, count = at, count + 1
            continue
        if start is not None and last is not None:
            sessions.append(SessionFigures(None, time_key(start), time_key(last), count))
        start, last, count = at, at, 1
    if start is not None and last is not None:
        sessions.append(SessionFigures(None, time_key(start), time_key(last), count))
    return sessions


def newest_first(sessions: Iterable[SessionFigures]) -> list[SessionFigures]:
    return sorted(sessions, key=lambda s: (s.start, s.session_id or ""), reverse=True)


def bounds_of(days: DateRange | None) -> TimeBounds | None:
    """The time keys of the first and last moment of ``days``."""
    if days is None:
        return None
    return time_key(days.first_moment), time_key(days.last_moment)


def within(points: Iterable[EventPoint], bounds: TimeBounds | None) -> list[EventPoint]:
    if bounds is None:
        return list(points)
    low, high = bounds
    return [p for p in points if low <= p.ts <= high]


def summary_from_points(
    points: Sequence[EventPoint], days: DateRange | None, max_sessions: int
) -> UserSummary:
    """The summary computed from every event of the user (oldest first): the reference."""
    chosen = within(points, bounds_of(days))
    named: dict[str, Span] = {}
    for point in chosen:
        if point.session_id is not None:
            _merge(named, point.session_id, Span(1, point.ts, point.ts))
    sessions = [SessionFigures(sid, s.first, s.last, s.events) for sid, s in named.items()]
    sessions += unnamed_sessions([p for p in chosen if p.session_id is None])
    ordered = newest_first(sessions)
    return UserSummary(
        first_seen=points[0].ts if points else None,
        last_seen=points[-1].ts if points else None,
        event_counts=dict(sorted(Counter(p.event for p in chosen).items())),
        sessions=len(ordered),
        recent_sessions=ordered[:max_sessions],
    )


def clipped_sessions(
    overlapping: Iterable[SessionFigures],
    bounds: TimeBounds | None,
    inside: Callable[[SessionFigures, TimeBounds], SessionFigures | None],
) -> list[SessionFigures]:
    """Whole sessions overlapping the range → their parts inside it. Only a session that
    crosses an end of the range needs its events read again (``inside``: its figures
    between the given time keys, None when it has no event there)."""
    if bounds is None:
        return list(overlapping)
    low, high = bounds
    kept: list[SessionFigures] = []
    for session in overlapping:
        if low <= session.start and session.last <= high:
            kept.append(session)
            continue
        part = inside(session, (max(low, session.start), min(high, session.last)))
        if part is not None:
            kept.append(part)
    return kept
