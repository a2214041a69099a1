"""One user's analytics: profile, first/last seen, event counts, sessions, events."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta

from mysoulmate.analytics.date_range import DateRange
from mysoulmate.analytics.ports import EventPoint, EventStore, time_key
from mysoulmate.analytics.report_models import SessionSummary, UserAnalytics, UserProfileView

SESSION_GAP = timedelta(minutes=30)  # GA4's and Mixpanel's default session timeout


MAX_LISTED_SESSIONS = 100


def count_sessions(points: list[EventPoint]) -> int:
    """Runs of events (oldest first) in which no two neighbours are more than 30 min apart."""
    return len(sessions_of(points))


def sessions_of(points: list[EventPoint]) -> list[SessionSummary]:
    """Those runs, oldest first, each with its first and last event time and size."""
    sessions: list[SessionSummary] = []
    for point in points:
        at = datetime.fromisoformat(point.ts)
        last = sessions[-1] if sessions else None
        if last is None or at - last.end > SESSION_GAP:
            sessions.append(SessionSummary(start=at, end=at, events=1, durationSeconds=0))
        else:
            last.end = at
            last.events += 1
            last.durationSeconds = (at - last.start).total_seconds()
    return sessions


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
