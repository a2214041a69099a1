"""Automatic sessions: every stored event carries a session id.

The client's own id wins (``context.sessionId``, as RudderStack's SDKs send it, or
``properties.session_id``). Otherwise the consumer assigns one: an event within 30 minutes
of the person's current session (GA4's and Mixpanel's default timeout) joins it, a later
one starts a new session. The person's current session is a `SessionMark` that every
backend keeps per person and moves in the same write that stores the events, so a session
continues across batches, deliveries and consumers.

What the dashboard reports (sessions, their length) is a rollup like the others: each
event stored for the first time adds its `SessionTally` (a session started, milliseconds
the session grew by) to the day its session started, so redeliveries never count twice.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date, datetime
from typing import NamedTuple

from mysoulmate.analytics.models import SESSION_GAP, QueuedMessage, SessionMark, SessionTally

__all__ = ["SESSION_GAP", "SessionMark", "assign_sessions", "client_session_id", "session_delta"]
MAX_SESSION_ID_LENGTH = 100  # a longer client id is not a session id we can key on


def client_session_id(message: QueuedMessage) -> str | None:
    """The session id the client sent, as text; None when absent or unusable."""
    for value in (message.context.get("sessionId"), message.properties.get("session_id")):
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, int | str):
            text = str(value).strip()
            if text and len(text) <= MAX_SESSION_ID_LENGTH and text.isprintable():
                return text
    return None


def auto_session_id(person: str, first_message_id: str) -> str:
    """A new session's id: stable for the same first event, so a redelivery that assigns
    again gets the same answer."""
    digest = hashlib.sha256(f"{person}\x1f{first_message_id}".encode()).hexdigest()
    return f"s_{digest[:24]}"


def assign_sessions(
    messages: Sequence[QueuedMessage], marks: Mapping[str, SessionMark]
) -> list[QueuedMessage]:
    """``messages`` (same order; the same objects, set in place) with ``sessionId`` set, and
    on those with an event (track, page, screen) the `SessionTally` their storage adds to
    the rollups. ``marks`` holds each person's stored current session
    (`EventStore.session_marks`).

    Identify, group and alias calls join the session they fall in (or carry the client's
    id) but never start or lengthen one: sessions are counted from events, like active users.
    """
    by_person: dict[str, list[int]] = defaultdict(list)
    for index, message in enumerate(messages):
        by_person[message.userId].append(index)
    assigned = list(messages)
    for person, indexes in by_person.items():
        indexes.sort(key=lambda i: (messages[i].timestamp, messages[i].messageId))
        _assign_person(person, [messages[i] for i in indexes], marks.get(person), assigned, indexes)
    return assigned


def _assign_person(
    person: str,
    ordered: list[QueuedMessage],
    mark: SessionMark | None,
    assigned: list[QueuedMessage],
    indexes: list[int],
) -> None:
    """One person's events, oldest first: each joins an open session or starts one. Open
    sessions are the stored current one and those this batch started (late events that
    predate the current session start sessions of their own)."""
    open_sessions: list[SessionMark] = [mark] if mark else []
    start_days: dict[str, date] = {}  # the day each session's figures are counted on
    if mark:
        start_days[mark.session_id] = mark.start.date()
    current = mark
    last_used = 0
    for index, message in zip(indexes, ordered, strict=True):
        at = message.timestamp
        client_id = client_session_id(message)
        position = _taking(open_sessions, at, client_id, last_used)
        if message.event is None:
            joined = open_sessions[position].session_id if position is not None else client_id
            if joined is not None:
                assigned[index] = message.with_session(joined, None)
            continue
        if position is None:
            session_id = client_id or auto_session_id(person, message.messageId)
            session = SessionMark(session_id, at, at)
            open_sessions.append(session)
            start_days.setdefault(session_id, at.date())
            started, grown = True, 0
        else:
            session, grown = open_sessions[position].grown_by(at)
            open_sessions[position] = session
            started = False
        last_used = open_sessions.index(session) if position is None else position
        if current is None or session.session_id == current.session_id or at >= current.last:
            current = session
        tally = SessionTally(
            day=start_days[session.session_id], started=started, grown_ms=grown, mark=current
        )
        assigned[index] = message.with_session(session.session_id, tally)


def _taking(
    sessions: list[SessionMark], at: datetime, client_id: str | None, first_try: int
) -> int | None:
    """The position of the open session an event joins, if any; the one the previous
    event joined is tried first (the usual answer)."""
    if first_try < len(sessions) and sessions[first_try].takes(at, client_id):
        return first_try
    for position, session in enumerate(sessions):
        if session.takes(at, client_id):
            return position
    return None


class SessionDelta(NamedTuple):
    """What newly stored events add: sessions and milliseconds per (day, platform), and
    each person's current session after them."""

    sessions: dict[tuple[date, str], int]
    millis: dict[tuple[date, str], int]
    marks: dict[str, SessionMark]


def session_delta(
    new_messages: Iterable[QueuedMessage], platform_of: Callable[[QueuedMessage], str]
) -> SessionDelta:
    sessions: dict[tuple[date, str], int] = defaultdict(int)
    millis: dict[tuple[date, str], int] = defaultdict(int)
    marks: dict[str, SessionMark] = {}
    for message in new_messages:
        tally = message.session_tally
        if tally is None:
            continue
        key = (tally.day, platform_of(message))
        if tally.started:
            sessions[key] += 1
        if tally.grown_ms:
            millis[key] += tally.grown_ms
        mark = tally.mark
        held = marks.get(message.userId)
        if isinstance(mark, SessionMark) and (held is None or mark.last >= held.last):
            marks[message.userId] = mark
    return SessionDelta(dict(sessions), dict(millis), marks)
