"""Automatic sessions on every backend: each stored event carries its session id, a session
continues across deliveries, and the dashboard's session figures are exact under
redelivery and erasure."""

from __future__ import annotations

from datetime import date

from mysoulmate.analytics.dashboard import build_dashboard
from mysoulmate.analytics.date_range import DateRange
from mysoulmate.analytics.ports import EventStore
from mysoulmate.analytics.user_analytics import user_analytics

from tests.support.messages import consume, identify_as, jan, track, visit

JAN_1_3 = DateRange(start=date(2026, 1, 1), end=date(2026, 1, 3))


def session_ids(store: EventStore, user: str) -> list[str | None]:
    """The session id of each of the user's events, oldest first."""
    return [p.session_id for p in store.user_event_points(user)]


def figures(store: EventStore) -> tuple[int, float, float]:
    report = build_dashboard(store, JAN_1_3, None, 10, [])
    return report.sessions, report.averageSessionSeconds, report.sessionsPerUser


def test_a_session_continues_across_deliveries_and_ends_after_30_quiet_minutes(
    store: EventStore,
) -> None:
    consume(store, track("ann", "open", jan(1, 9)), track("ann", "view", jan(1, 9, 10)))
    consume(store, track("ann", "buy", jan(1, 9, 25)))  # a later delivery, same session
    consume(store, track("ann", "open", jan(1, 11)))  # 95 quiet minutes: a new session
    first, *rest = session_ids(store, "ann")
    assert first is not None
    assert rest[:2] == [first, first]
    assert rest[2] not in (None, first)
    # Two sessions of 25 min and 0 min for one user.
    assert figures(store) == (2, 750.0, 2.0)
    listed = user_analytics(store, "ann", 10, None, None, None)
    assert listed.sessions == 2
    assert [(s.sessionId, s.events, s.durationSeconds) for s in listed.sessionList] == [
        (rest[2], 1, 0.0),
        (first, 3, 1500.0),
    ]
    page = store.list_events("ann", 10, None)
    assert [e.sessionId for e in page.events] == [rest[2], first, first, first]


def test_a_redelivered_batch_changes_neither_ids_nor_figures(store: EventStore) -> None:
    batch = [track("ann", "open", jan(1, 9), message_id="a1"), track("bob", "open", jan(1, 9))]
    consume(store, *batch)
    consume(store, track("ann", "view", jan(1, 9, 20), message_id="a2"))
    before = (session_ids(store, "ann"), figures(store))
    consume(store, *batch)
    consume(store, track("ann", "view", jan(1, 9, 20), message_id="a2"))
    assert (session_ids(store, "ann"), figures(store)) == before
    assert figures(store) == (2, 600.0, 1.0)
    assert set(store.session_marks({"ann", "bob", "carol"})) == {"ann", "bob"}


def test_the_clients_session_id_is_stored_as_sent(store: EventStore) -> None:
    consume(
        store,
        track("ann", "open", jan(1, 9)).model_copy(update={"context": {"sessionId": 1767258}}),
        track("ann", "view", jan(1, 9, 5)).model_copy(update={"context": {"sessionId": 1767258}}),
        track("ann", "open", jan(1, 9, 6), session_id="tab-2"),
    )
    assert session_ids(store, "ann") == ["1767258", "1767258", "tab-2"]
    assert figures(store)[0] == 2


def test_an_erasure_removes_the_persons_session(store: EventStore) -> None:
    consume(store, track("ann", "open", jan(1, 9)))
    assert set(store.session_marks({"ann"})) == {"ann"}
    store.delete_user("ann", jan(2))
    assert store.session_marks({"ann"}) == {}
    assert store.user_event_points("ann") == []


def test_a_visitors_sessions_follow_them_into_the_user(store: EventStore) -> None:
    consume(store, visit("v-1", jan(1, 9)), visit("v-1", jan(1, 9, 10)))
    (visitor_session,) = set(session_ids(store, "anon:v-1"))
    consume(store, identify_as("ann", "v-1", jan(1, 9, 15)), track("ann", "buy", jan(1, 12)))
    ids = session_ids(store, "ann")
    assert ids[:2] == [visitor_session, visitor_session]
    assert ids[2] not in (None, visitor_session)
    assert user_analytics(store, "ann", 10, None, None, None).sessions == 2
