"""One user's analytics: profile, first/last seen, event counts, sessions, events."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime

from mysoulmate.analytics.date_range import DateRange
from mysoulmate.analytics.models import SESSION_GAP
from mysoulmate.analytics.ports import EventPoint, EventStore, time_key
from mysoulmate.analytics.report_models import SessionSummary, UserAnalytics, UserProfileView

MAX_LISTED_SESSIONS = 100


def sessions_of(points: Sequence[EventPoint]) -> list[SessionSummary]:
    """A person's sessions from their events (oldest first), oldest first: by the stored
    session id; events stored before sessions existed (no id) by the 30-minute rule."""
    by_id: dict[str, SessionSummary] = {}
    sessions: list[SessionSummary] = []
    unnamed: SessionSummary | None = None
    for point in points:
        at = datetime.fromisoformat(point.ts)
        if point.session_id is not None:
            session = by_id.get(point.session_id)
            if session is None:
                session = by_id[point.session_id] = _summary(at, point.session_id)
                sessions.append(session)
            else:
                _extend(session, at)
        elif unnamed is None or at - unnamed.end > SESSION_GAP:
            unnamed = _summary(at, None)
            sessions.append(unnamed)
        else:
            _extend(unnamed, at)
    sessions.sort(key=lambda s: (s.start, s.sessionId or ""))
    return sessions


def _summary(at: datetime, session_id: str | None) -> SessionSummary:
    return SessionSummary(sessionId=session_id, start=at, end=at, events=1, durationSeconds=0)


def _extend(session: SessionSummary, at: datetime) -> None:
    session.end = max(session.end, at)
    session.events += 1
    session.durationSeconds = (session.end - session.start).total_seconds()


def user_analytics(
    store: EventStore,
    user_id: str,
    limit: int,
    cursor: str | None,
    span: DateRange | None,
    event: str | None,
) -> UserAnalytics:
    profile = store.get_profile(user_id)
    points = store.user_event_points(user_id)
    first_seen = datetime.fromisoformat(points[0].ts) if points else None
    last_seen = datetime.fromisoformat(points[-1].ts) if points else None
    if span is not None:
        low, high = time_key(span.first_moment), time_key(span.last_moment)
        points = [p for p in points if low <= p.ts <= high]
    sessions = sessions_of(points)
    page = store.list_events(
        user_id,
        limit,
        cursor,
        start=span.first_moment if span else None,
        end=span.last_moment if span else None,
        event=event,
    )
    return UserAnalytics(
        userId=user_id,
        profile=UserProfileView(
            traits=profile.traits if profile else {},
            anonymousIds=profile.anonymousIds if profile else [],
            groups=profile.groups if profile else {},
            updatedAt=profile.updatedAt if profile else None,
            firstSeen=first_seen,
            lastSeen=last_seen,
        ),
        eventCounts=dict(sorted(Counter(p.event for p in points).items())),
        sessions=len(sessions),
        sessionList=sessions[::-1][:MAX_LISTED_SESSIONS],
        events=page.events,
        nextCursor=page.next_cursor,
    )
