"""Identity that stitches, on every backend: once an anonymous visitor is linked to a user
(an identify with both ids, or an alias), their history is the user's, counted as one
person everywhere, exactly once, and never brought back by a link after an erasure."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest
from mysoulmate.analytics.date_range import DateRange
from mysoulmate.analytics.models import QueuedMessage
from mysoulmate.analytics.ports import (
    ANY_EVENT,
    EventStore,
)
from mysoulmate.analytics.reporting import funnel_report
from mysoulmate.analytics.rollups import SESSION_EVENTS

from tests.support.messages import (
    consume,
    cut_short_links,
    identify,
    identify_as,
    jan,
    track,
    visit,
)


def alias(user: str, previous_id: str, at: datetime) -> QueuedMessage:
    return QueuedMessage(
        type="alias",
        messageId=f"alias-{user}-{previous_id}",
        userId=user,
        previousId=previous_id,
        timestamp=at,
        receivedAt=at,
    )


def active(store: EventStore, start: date, end: date | None = None) -> int:
    rows = store.rollup_users(start, end or start, by_event=False)
    union = store.empty_user_set()
    for row in rows:
        if row.event == ANY_EVENT:
            union = union | row.users
    return len(union)


def events_of(store: EventStore, user: str) -> list[str]:
    return [p.event for p in store.user_event_points(user)]


def first_seen(store: EventStore, start: date, end: date) -> dict[date, int]:
    return {day: len(users) for day, users in store.first_seen_users(start, end).items()}


def test_an_identify_merges_the_anonymous_history_into_the_user(store: EventStore) -> None:
    consume(
        store,
        visit("a-1", jan(1, 9), "$page:Pricing"),
        visit("a-1", jan(1, 10), "signup_started"),
    )
    assert active(store, date(2026, 1, 1)) == 1
    consume(
        store,
        identify_as("ann", "a-1", jan(2, 9), plan="pro"),
        track("ann", "purchase", jan(2, 10)),
    )
    assert events_of(store, "ann") == ["$page:Pricing", "signup_started", "purchase"]
    assert events_of(store, "anon:a-1") == []
    assert store.list_events("anon:a-1", 10, None).events == []
    # One person: counted on both days, first seen on the visitor's first day.
    assert active(store, date(2026, 1, 1)) == 1
    assert active(store, date(2026, 1, 1), date(2026, 1, 2)) == 1
    assert first_seen(store, date(2026, 1, 1), date(2026, 1, 2)) == {date(2026, 1, 1): 1}
    # Counts do not change: the same events, now the user's.
    counts = {(r.day, r.event): r.events for r in store.rollup_counts(jan(1).date(), jan(2).date())}
    assert counts[(date(2026, 1, 1), "$page:Pricing")] == 1
    assert store.linked_users(["a-1", "a-2"]) == {"a-1": "ann"}
    profile = store.get_profile("ann")
    assert profile is not None
    assert "a-1" in profile.anonymousIds


def test_a_funnel_from_an_anonymous_page_to_an_identified_purchase_converts_once(
    store: EventStore,
) -> None:
    consume(
        store,
        visit("a-2", jan(3, 9), "$page:Home"),
        identify_as("bo", "a-2", jan(3, 9, 5)),
        track("bo", "purchase", jan(3, 9, 30)),
    )
    span = DateRange(date(2026, 1, 3), date(2026, 1, 3))
    report = funnel_report(store, ["$page:Home", "purchase"], span, timedelta(hours=1), "ordered")
    assert report.usersEntered == 1
    assert [step.users for step in report.funnel] == [1, 1]


def test_later_anonymous_messages_are_stored_under_the_user(store: EventStore) -> None:
    consume(store, identify_as("cy", "a-3", jan(4, 8)))
    consume(store, visit("a-3", jan(4, 9), "$page:Blog"))
    assert events_of(store, "cy") == ["$page:Blog"]
    assert events_of(store, "anon:a-3") == []
    assert active(store, date(2026, 1, 4)) == 1


def test_a_merge_that_arrives_after_later_events_is_still_exact(store: EventStore) -> None:
    consume(
        store,
        visit("a-4", jan(5, 9), "open"),
        track("di", "open", jan(6, 9)),
        visit("a-4", jan(7, 9), "open"),
    )
    assert active(store, date(2026, 1, 5), date(2026, 1, 7)) == 2
    late = identify_as("di", "a-4", jan(5, 10)).model_copy(update={"receivedAt": jan(8)})
    consume(store, late)
    assert active(store, date(2026, 1, 5), date(2026, 1, 7)) == 1
    for day in (5, 6, 7):
        assert active(store, date(2026, 1, day)) == 1
    assert events_of(store, "di") == ["open", "open", "open"]
    assert first_seen(store, date(2026, 1, 1), date(2026, 1, 9)) == {date(2026, 1, 5): 1}


def test_the_merge_is_applied_once_and_the_first_link_wins(store: EventStore) -> None:
    consume(store, visit("a-5", jan(9, 9), "open"), identify_as("ed", "a-5", jan(9, 10)))
    again = store.link_anonymous("a-5", "ed", jan(9, 10))
    assert (again.user_id, again.moved_events) == ("ed", 0)
    other = store.link_anonymous("a-5", "fay", jan(9, 11))
    assert other.user_id == "ed"
    consume(store, identify_as("ed", "a-5", jan(9, 10)))  # a redelivery
    assert events_of(store, "ed") == ["open"]
    assert events_of(store, "fay") == []
    assert active(store, date(2026, 1, 9)) == 1


def test_an_alias_links_the_previous_id(store: EventStore) -> None:
    consume(store, visit("a-6", jan(10, 9), "open"), alias("gus", "a-6", jan(10, 10)))
    assert events_of(store, "gus") == ["open"]
    assert store.linked_users(["a-6"]) == {"a-6": "gus"}


def test_the_visitors_traits_fill_the_users_profile(store: EventStore) -> None:
    anonymous_identify = identify("anon:a-7", jan(11, 9), theme="dark", plan="free")
    consume(store, anonymous_identify.model_copy(update={"anonymousId": "a-7"}))
    consume(store, identify_as("hal", "a-7", jan(11, 10), plan="pro"))
    profile = store.get_profile("hal")
    assert profile is not None
    assert profile.traits == {"theme": "dark", "plan": "pro"}
    assert store.get_profile("anon:a-7") is None


def test_erasure_covers_the_merged_history_and_a_late_link_never_resurrects_it(
    store: EventStore,
) -> None:
    consume(store, visit("a-8", jan(12, 9), "open"), identify_as("ivy", "a-8", jan(12, 10)))
    store.delete_user("ivy", jan(13))
    assert events_of(store, "ivy") == []
    assert store.linked_users(["a-8"]) == {}
    assert active(store, date(2026, 1, 12)) == 0
    # A second device's history, and a link sent before the erasure but consumed after it.
    consume(store, visit("a-9", jan(12, 11), "open"))
    refused = store.link_anonymous("a-9", "ivy", jan(12, 12))
    assert refused.user_id is None
    assert events_of(store, "ivy") == []
    assert events_of(store, "anon:a-9") == ["open"]
    # A link made after the erasure is new data.
    assert store.link_anonymous("a-9", "ivy", jan(14)).user_id == "ivy"
    assert events_of(store, "ivy") == ["open"]


def test_a_message_id_the_user_already_has_is_not_doubled(store: EventStore) -> None:
    day = jan(15).date()
    consume(
        store,
        visit("a-10", jan(15, 9), "buy", revenue=5, currency="EUR").model_copy(
            update={"messageId": "same"}
        ),
        track("jo", "buy", jan(15, 9), message_id="same", revenue=5, currency="EUR"),
        visit("a-10", jan(15, 9, 5), "open"),
    )
    # Two people, two stored copies: each counted.
    assert counts(store, day) == {"buy": 2, "open": 1}
    assert revenue(store, day) == {"EUR": 10_000_000}
    consume(store, identify_as("jo", "a-10", jan(15, 10)))
    assert sorted(events_of(store, "jo")) == ["buy", "open"]
    assert events_of(store, "anon:a-10") == []
    # Once they are one person the copies are one message: the dropped one leaves the
    # day's count and revenue with it, and a second link moves nothing more.
    assert counts(store, day) == {"buy": 1, "open": 1}
    assert revenue(store, day) == {"EUR": 5_000_000}
    # Dropped to nothing, a count is no row at all: the day shows no event never stored.
    consume(
        store,
        visit("a-11", jan(16, 9), "rare").model_copy(update={"messageId": "once"}),
        track("kim", "rare", jan(16, 9), message_id="once"),
    )
    consume(store, identify_as("kim", "a-11", jan(16, 10)))
    assert counts(store, jan(16).date()) == {"rare": 1}
    assert store.link_anonymous("a-10", "jo", jan(15, 11)).moved_events == 0
    assert counts(store, day) == {"buy": 1, "open": 1}


def counts(store: EventStore, day: date) -> dict[str, int]:
    totals: dict[str, int] = {}
    for row in store.rollup_counts(day, day):
        if row.event not in SESSION_EVENTS:
            totals[row.event] = totals.get(row.event, 0) + row.events
    return totals


def revenue(store: EventStore, day: date) -> dict[str, int]:
    totals: dict[str, int] = {}
    for row in store.rollup_revenue(day, day):
        totals[row.currency] = totals.get(row.currency, 0) + row.micros
    return {currency: n for currency, n in totals.items() if n}


def _cut_short(store: EventStore, monkeypatch: pytest.MonkeyPatch) -> QueuedMessage:
    """A visitor's message whose first delivery is cut short (`cut_short_links`): stored as
    the visitor, its record failed, the visitor's copy stays until the redelivery."""
    cut_short_links(store, monkeypatch)
    message = visit("v-1", jan(5))
    with pytest.raises(AssertionError):  # the record failed: the queue redelivers it
        consume(store, message)
    assert events_of(store, "anon:v-1") == ["tick"]  # the cut-short move's leftover
    assert events_of(store, "ann") == []
    return message


def test_the_redelivery_of_a_cut_short_move_moves_the_visitors_copy(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The redelivered message resolves to ann and is stored as hers; linking again moves
    the visitor's copy, which is the same message: one event, counted once."""
    message = _cut_short(store, monkeypatch)

    consume(store, message, delivery=2)
    assert events_of(store, "ann") == ["tick"]
    assert events_of(store, "anon:v-1") == []
    assert store.list_events("anon:v-1", 10, None).events == []
    assert counts(store, date(2026, 1, 5)) == {"tick": 1}
    assert active(store, date(2026, 1, 5)) == 1

    consume(store, message, delivery=3)  # later deliveries change nothing
    assert events_of(store, "ann") == ["tick"]
    assert counts(store, date(2026, 1, 5)) == {"tick": 1}


def test_erasing_a_user_erases_what_a_cut_short_move_left_under_their_visitor(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Erased before the redelivery comes: the leftover goes with ann, and the redelivered
    message (received before the erasure) is dropped."""
    message = _cut_short(store, monkeypatch)

    store.delete_user("ann", jan(8))
    assert store.user_event_points("anon:v-1") == []
    assert store.list_events("anon:v-1", 10, None).events == []
    consume(store, message, delivery=2)
    assert store.user_event_points("ann") == []
    assert store.user_event_points("anon:v-1") == []
    assert active(store, date(2026, 1, 5)) == 0
    assert not any(
        len(users) for users in store.first_seen_users(jan(5).date(), jan(5).date()).values()
    )
