"""One user's analytics: profile, first/last seen, event counts, sessions, events."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta

from mysoulmate.analytics.date_range import DateRange
from mysoulmate.analytics.ports import EventPoint, EventStore, time_key
from mysoulmate.analytics.report_models import UserAnalytics, UserProfileView

SESSION_GAP = timedelta(minutes=30)  # GA4's and Mixpanel's default session timeout


def count_sessions(points: list[EventPoint]) -> int:
    """Runs of events (oldest first) in which no two neighbours are more than 30 min apart."""
    sessions = 0
    previous: datetime | None = None
    for point in points:
        at = datetime.fromisoformat(point.ts)
        if previous is None or at - previous > SESSION_GAP:
            sessions += 1
        previous = at
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
            updatedAt=profile.updatedAt if profile else None,
            firstSeen=first_seen,
            lastSeen=last_seen,
        ),
        eventCounts=dict(sorted(Counter(p.event for p in points).items())),
        sessions=count_sessions(points),
        events=page.events,
        nextCursor=page.next_cursor,
    )
