"""One user's analytics: profile, first/last seen, event counts, sessions, events."""

from __future__ import annotations

from datetime import datetime

from mysoulmate.analytics.date_range import DateRange
from mysoulmate.analytics.ports import EventStore, SessionFigures
from mysoulmate.analytics.report_models import SessionSummary, UserAnalytics, UserProfileView
from mysoulmate.analytics.user_summary import MAX_LISTED_SESSIONS


def session_view(session: SessionFigures) -> SessionSummary:
    start, end = datetime.fromisoformat(session.start), datetime.fromisoformat(session.last)
    return SessionSummary(
        sessionId=session.session_id,
        start=start,
        end=end,
        events=session.events,
        durationSeconds=(end - start).total_seconds(),
    )


def _moment(key: str | None) -> datetime | None:
    return datetime.fromisoformat(key) if key is not None else None


def user_analytics(
    store: EventStore,
    user_id: str,
    limit: int,
    cursor: str | None,
    span: DateRange | None,
    event: str | None,
) -> UserAnalytics:
    """The user's summaries and one page of events: the cost follows ``limit`` and the
    days and sessions in ``span``, not the user's whole history (`user_summary`)."""
    profile = store.get_profile(user_id)
    summary = store.user_summary(user_id, span, MAX_LISTED_SESSIONS)
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
            firstSeen=_moment(summary.first_seen),
            lastSeen=_moment(summary.last_seen),
        ),
        eventCounts=dict(sorted(summary.event_counts.items())),
        sessions=summary.sessions,
        sessionList=[session_view(s) for s in summary.recent_sessions],
        events=page.events,
        nextCursor=page.next_cursor,
    )
