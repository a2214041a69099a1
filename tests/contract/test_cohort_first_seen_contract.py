"""First-seen sets on every backend: a person is a newcomer on the day of their first track
event ever and on no other day, whatever order their events, links and erasures come in;
cohorts read those sets."""

from __future__ import annotations

from datetime import date

from mysoulmate.analytics.cohorts import build_cohorts
from mysoulmate.analytics.date_range import DateRange
from mysoulmate.analytics.ports import EventStore

from tests.support.messages import consume, identify_as, jan, track, visit

TODAY = date(2026, 1, 20)


def newcomers(store: EventStore) -> dict[int, int]:
    """January day → how many people were first seen on it (days with none left out)."""
    found = store.first_seen_users(date(2026, 1, 1), date(2026, 1, 31))
    return {day.day: len(users) for day, users in found.items() if len(users)}


def daily_cohorts(store: EventStore, first: int, last: int) -> dict[int, tuple[int, list[int]]]:
    span = DateRange(date(2026, 1, first), date(2026, 1, last))
    report = build_cohorts(store, span, "day", last - first + 1, TODAY)
    return {c.start.day: (c.size, [n or 0 for n in c.active]) for c in report.cohorts}


def test_a_user_linked_to_an_earlier_visitor_becomes_a_newcomer_of_the_visitors_day(
    store: EventStore,
) -> None:
    consume(store, track("gil", "open", jan(8)), track("hal", "open", jan(8)))
    consume(store, visit("a-9", jan(6, 9), "open"))
    assert newcomers(store) == {6: 1, 8: 2}
    consume(store, identify_as("gil", "a-9", jan(8, 13)))
    # One person, first seen as the visitor: gil leaves day 8 and the visitor counts nowhere.
    assert newcomers(store) == {6: 1, 8: 1}
    assert daily_cohorts(store, 6, 8) == {6: (1, [1, 0, 1]), 7: (0, [0, 0, 0]), 8: (1, [1, 0, 0])}


def test_a_user_seen_before_the_visitor_keeps_their_day(store: EventStore) -> None:
    consume(store, track("ivy", "open", jan(3)), visit("a-10", jan(5), "open"))
    assert newcomers(store) == {3: 1, 5: 1}
    consume(store, identify_as("ivy", "a-10", jan(5, 13)))
    assert newcomers(store) == {3: 1}
    assert daily_cohorts(store, 3, 5) == {3: (1, [1, 0, 1]), 4: (0, [0, 0, 0]), 5: (0, [0, 0, 0])}


def test_an_erasure_leaves_the_other_newcomers_of_the_day(store: EventStore) -> None:
    consume(store, track("jo", "open", jan(4)), track("kim", "open", jan(4)))
    consume(store, track("kim", "open", jan(5)))
    assert newcomers(store) == {4: 2}
    store.delete_user("jo", jan(6))
    assert newcomers(store) == {4: 1}
    assert daily_cohorts(store, 4, 5) == {4: (1, [1, 1]), 5: (0, [0, 0])}


def test_events_arriving_out_of_order_leave_the_person_on_their_earliest_day(
    store: EventStore,
) -> None:
    consume(store, track("lu", "open", jan(7)), track("mo", "open", jan(7)))
    consume(store, track("lu", "open", jan(3)))
    consume(store, track("lu", "open", jan(5)))
    consume(store, track("lu", "open", jan(3, 1)))  # same day, earlier: no move
    assert newcomers(store) == {3: 1, 7: 1}
    assert daily_cohorts(store, 3, 7)[3] == (1, [1, 0, 1, 0, 1])
