"""Per-user summaries on every backend equal the summary computed from the user's events
(`summary_from_points`): through random histories, ranges that cut sessions, redelivery,
a visitor's history moved into the user, and erasure."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta

import pytest
from mysoulmate.analytics.date_range import DateRange
from mysoulmate.analytics.models import QueuedMessage
from mysoulmate.analytics.ports import EventStore, UserSummary
from mysoulmate.analytics.user_summary import summary_from_points

from tests.support.messages import consume, identify, identify_as, jan, track, visit

EVENTS = ("open", "message_sent", "purchase", "screen_view")
RANGES = (
    None,
    DateRange(date(2026, 1, 1), date(2026, 1, 31)),
    DateRange(date(2026, 1, 2), date(2026, 1, 2)),  # cuts sessions that cross midnight
    DateRange(date(2026, 1, 3), date(2026, 1, 5)),
    DateRange(date(2026, 2, 1), date(2026, 2, 3)),  # after everything
)


def reference(store: EventStore, user: str, days: DateRange | None, most: int) -> UserSummary:
    return summary_from_points(store.user_event_points(user), days, most)


def assert_matches_reference(store: EventStore, users: list[str]) -> None:
    for user in users:
        for days in RANGES:
            for most in (2, 100):
                assert store.user_summary(user, days, most) == reference(store, user, days, most), (
                    user,
                    days,
                    most,
                )


def random_history(rng: random.Random, user: str, count: int) -> list[QueuedMessage]:
    """Bursts of events in January, some late at night (sessions crossing midnight), some
    with the client's own session id."""
    at = datetime(2026, 1, 1, 22, tzinfo=UTC)
    messages = []
    for _ in range(count):
        at += timedelta(minutes=rng.choice((1, 5, 20, 45, 300, 1200)))
        message = track(user, rng.choice(EVENTS), at)
        if rng.random() < 0.2:
            message = message.model_copy(
                update={"context": {"sessionId": f"tab-{rng.randrange(3)}"}}
            )
        messages.append(message)
    rng.shuffle(messages)  # arrival order is not time order
    return messages


@pytest.mark.parametrize("seed", [1, 2])
def test_summaries_equal_the_users_events_through_deliveries_and_redelivery(
    store: EventStore, seed: int
) -> None:
    rng = random.Random(seed)
    users = ["ann", "bob"]
    history = [m for user in users for m in random_history(rng, user, 60)]
    batches = [history[i : i + 17] for i in range(0, len(history), 17)]
    for batch in batches:
        consume(store, *batch)
    consume(store, *batches[1])  # redelivered: counted once
    assert_matches_reference(store, users)
    summary = store.user_summary("ann", None, 100)
    assert sum(summary.event_counts.values()) == 60
    assert summary.sessions == len(summary.recent_sessions) > 1


def test_events_without_session_ids_are_grouped_when_read(store: EventStore) -> None:
    # Stored directly, as before session ids existed: none carries an id.
    store.insert_events(
        [
            track("old", "open", jan(1, 23, 50)),
            track("old", "open", jan(2, 0, 10)),  # 20 minutes later: the same session
            track("old", "open", jan(2, 9)),
        ]
    )
    consume(store, track("old", "open", jan(3, 9)))  # a new event gets an id
    assert_matches_reference(store, ["old"])
    summary = store.user_summary("old", None, 100)
    assert [s.session_id is None for s in summary.recent_sessions] == [False, True, True]
    assert summary.recent_sessions[2].events == 2
    cut = store.user_summary("old", DateRange(date(2026, 1, 2), date(2026, 1, 2)), 100)
    assert [s.events for s in cut.recent_sessions] == [1, 1]


def test_a_visitors_history_moves_into_the_users_summary(store: EventStore) -> None:
    consume(store, visit("v-1", jan(1, 9)), visit("v-1", jan(1, 9, 10), event="open"))
    consume(store, track("ann", "buy", jan(1, 8)))
    consume(store, identify_as("ann", "v-1", jan(1, 9, 15)), track("ann", "buy", jan(1, 9, 20)))
    assert_matches_reference(store, ["ann", "anon:v-1"])
    summary = store.user_summary("ann", None, 100)
    assert summary.event_counts == {"buy": 2, "open": 1, "tick": 1}
    assert (summary.first_seen or "").startswith("2026-01-01T08:00")
    empty = store.user_summary("anon:v-1", None, 100)
    assert (empty.event_counts, empty.sessions, empty.first_seen) == ({}, 0, None)


def test_first_and_last_seen_are_of_counted_events_whatever_the_range(store: EventStore) -> None:
    """Identifies before the first and after the last event are not "seen" (DynamoDB reads
    past them page by page); a range that holds none of the events still shows the whole
    history's first and last seen."""
    consume(
        store,
        *(identify("ann", jan(1, 8, n)) for n in range(30)),
        track("ann", "open", jan(2, 9)),
        track("ann", "buy", jan(4, 9)),
        *(identify("ann", jan(6, 9, n)) for n in range(30)),
    )
    assert_matches_reference(store, ["ann"])
    between = store.user_summary("ann", DateRange(date(2026, 1, 3), date(2026, 1, 3)), 100)
    assert (between.first_seen, between.last_seen, between.event_counts, between.sessions) == (
        "2026-01-02T09:00:00.000000Z",
        "2026-01-04T09:00:00.000000Z",
        {},
        0,
    )


def test_an_erased_users_summary_is_gone(store: EventStore) -> None:
    consume(store, track("cat", "open", jan(1, 9)), track("cat", "buy", jan(4, 9)))
    store.delete_user("cat", jan(10))
    summary = store.user_summary("cat", None, 100)
    assert summary == UserSummary(None, None, {}, 0, [])
    consume(store, track("cat", "open", jan(1, 10)))  # a late event of before the erasure
    assert store.user_summary("cat", None, 100) == summary
