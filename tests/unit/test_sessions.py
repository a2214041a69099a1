"""Session assignment: the client's id when given, else 30 minutes of inactivity per person,
continuing the person's stored session; and what each stored event adds to the figures."""

from __future__ import annotations

from datetime import timedelta

from mysoulmate.analytics.models import QueuedMessage, SessionMark
from mysoulmate.analytics.rollups import SESSION_MS_EVENT, SESSIONS_EVENT, rollup_delta
from mysoulmate.analytics.sessions import assign_sessions, client_session_id

from tests.support.messages import identify, jan, track

MINUTE = timedelta(minutes=1)


def ids(messages: list[QueuedMessage]) -> list[str | None]:
    return [m.sessionId for m in messages]


def figures(messages: list[QueuedMessage]) -> tuple[int, int]:
    """(sessions started, milliseconds added) over every day and platform."""
    counts = rollup_delta(messages).counts
    started = sum(n for (_, _, name), n in counts.items() if name == SESSIONS_EVENT)
    millis = sum(n for (_, _, name), n in counts.items() if name == SESSION_MS_EVENT)
    return started, millis


def test_events_within_30_minutes_share_a_session_and_a_longer_gap_starts_one() -> None:
    batch = [
        track("ann", "open", jan(1, 9)),
        track("ann", "view", jan(1, 9, 29)),
        track("ann", "buy", jan(1, 9, 59)),  # 30 min after the last: still the same
        track("ann", "open", jan(1, 10, 30)),  # 31 min: a new session
    ]
    assigned = assign_sessions(batch, {})
    first, second = assigned[0].sessionId, assigned[3].sessionId
    assert first is not None
    assert second is not None
    assert first != second
    assert ids(assigned) == [first, first, first, second]
    assert figures(assigned) == (2, 59 * 60_000)


def test_order_of_arrival_within_a_batch_does_not_change_the_sessions() -> None:
    batch = [track("ann", "e", jan(1, 9, minute)) for minute in (50, 0, 20, 40, 10)]
    assigned = assign_sessions(batch, {})
    assert len(set(ids(assigned))) == 1
    assert figures(assigned) == (1, 50 * 60_000)


def test_a_stored_session_continues_in_a_later_batch() -> None:
    mark = SessionMark("s_stored", jan(1, 9), jan(1, 9, 10))
    assigned = assign_sessions([track("ann", "e", jan(1, 9, 30))], {"ann": mark})
    assert ids(assigned) == ["s_stored"]
    assert figures(assigned) == (0, 20 * 60_000)  # grown from 9:10 to 9:30, no new session
    tally = assigned[0].session_tally
    assert tally is not None
    assert tally.mark == SessionMark("s_stored", jan(1, 9), jan(1, 9, 30))


def test_an_event_more_than_30_minutes_after_the_stored_session_starts_a_new_one() -> None:
    mark = SessionMark("s_stored", jan(1, 9), jan(1, 9, 10))
    (assigned,) = assign_sessions([track("ann", "e", jan(1, 9, 41))], {"ann": mark})
    assert assigned.sessionId not in (None, "s_stored")
    assert assigned.session_tally is not None
    assert assigned.session_tally.mark.start == jan(1, 9, 41)


def test_a_late_event_before_the_current_session_gets_a_session_of_its_own() -> None:
    mark = SessionMark("s_now", jan(1, 12), jan(1, 12, 5))
    late = [track("ann", "e", jan(1, 8)), track("ann", "e", jan(1, 8, 20))]
    assigned = assign_sessions(late, {"ann": mark})
    assert len(set(ids(assigned))) == 1
    assert assigned[0].sessionId != "s_now"
    assert figures(assigned) == (1, 20 * 60_000)
    # The person's current session is still the later one.
    assert all(m.session_tally and m.session_tally.mark.session_id == "s_now" for m in assigned)


def test_a_late_event_just_before_the_session_extends_its_start() -> None:
    mark = SessionMark("s_now", jan(1, 12), jan(1, 12, 5))
    (assigned,) = assign_sessions([track("ann", "e", jan(1, 11, 45))], {"ann": mark})
    assert assigned.sessionId == "s_now"
    assert figures([assigned]) == (0, 15 * 60_000)


def test_the_clients_session_id_wins_and_is_counted_once() -> None:
    batch = [
        track("ann", "e", jan(1, 9)).model_copy(update={"context": {"sessionId": 1767258000000}}),
        track("ann", "e", jan(1, 9, 1), session_id="abc"),
        track("ann", "e", jan(1, 9, 2), session_id="abc"),
    ]
    assigned = assign_sessions(batch, {})
    assert ids(assigned) == ["1767258000000", "abc", "abc"]
    assert figures(assigned) == (2, 60_000)


def test_unusable_client_ids_fall_back_to_automatic_sessions() -> None:
    for value in (True, "", " ", "x" * 101, "tab\there", 1.5, {"id": 1}):
        message = track("ann", "e", jan(1, 9), session_id=value)
        assert client_session_id(message) is None, value
        assert assign_sessions([message], {})[0].sessionId.startswith("s_")  # type: ignore[union-attr]


def test_people_have_sessions_of_their_own_and_ids_are_stable() -> None:
    batch = [track("ann", "e", jan(1, 9), message_id="a"), track("bob", "e", jan(1, 9))]
    first = assign_sessions(batch, {})
    again = assign_sessions(batch, {})
    assert ids(first) == ids(again)  # a redelivery assigns the same ids
    assert first[0].sessionId != first[1].sessionId


def test_identify_joins_the_session_it_falls_in_but_never_starts_or_grows_one() -> None:
    batch = [
        track("ann", "open", jan(1, 9)),
        identify("ann", jan(1, 9, 20), plan="pro"),
        identify("ann", jan(1, 11), plan="max"),
    ]
    assigned = assign_sessions(batch, {})
    assert assigned[1].sessionId == assigned[0].sessionId
    assert assigned[2].sessionId is None  # no session open then, and no client id
    assert assigned[1].session_tally is None
    assert assigned[2].session_tally is None
    assert figures(assigned) == (1, 0)
    alone = identify("bob", jan(1, 9)).model_copy(update={"context": {"sessionId": "c-1"}})
    assert assign_sessions([alone], {})[0].sessionId == "c-1"


def test_figures_go_to_the_day_the_session_started() -> None:
    batch = [track("ann", "e", jan(1, 23, 50)), track("ann", "e", jan(2, 0, 10))]
    counts = rollup_delta(assign_sessions(batch, {})).counts
    session_rows = {key: n for key, n in counts.items() if key[2].startswith("\x1f")}
    day = jan(1).date()
    assert session_rows == {
        (day, "web", SESSIONS_EVENT): 1,
        (day, "web", SESSION_MS_EVENT): 1_200_000,
    }


def test_the_newest_mark_per_person_is_what_storage_keeps() -> None:
    batch = [
        track("ann", "e", jan(1, 9)),
        track("ann", "e", jan(1, 11)),
        track("ann", "e", jan(1, 8)),
    ]
    delta = rollup_delta(assign_sessions(batch, {}))
    assert delta.session_marks["ann"].start == jan(1, 11)
    assert delta.session_marks["ann"].last == jan(1, 11)
