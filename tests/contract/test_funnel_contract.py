"""Every backend's funnel answer equals the brute-force reference on random event streams
(≥ 500 users, random gaps, ties and interleavings), in all three orders."""

from __future__ import annotations

import random

import pytest
from mysoulmate.analytics.date_range import DateRange
from mysoulmate.analytics.funnel import Order
from mysoulmate.analytics.models import QueuedMessage
from mysoulmate.analytics.ports import EventPoint, EventStore, FunnelSeeks, time_key
from mysoulmate.analytics.reporting import funnel_report
from mysoulmate.storage.postgres import reads as postgres_reads
from mysoulmate.storage.sqlite import funnel_reads as sqlite_funnel

from tests.support.funnel_reference import reference_steps
from tests.support.funnel_streams import (
    RandomStreams,
    random_streams,
    store_next_times,
    store_step_times,
    stream_messages,
)
from tests.support.messages import consume, identify_as, jan

# Distinct names (the SQL stores seek next times) and a repeated one (step times).
STEP_LISTS = (("open", "view", "cart", "pay"), ("cart", "open", "view"), ("view", "cart", "view"))
ORDERS: tuple[Order, ...] = ("ordered", "strict", "any")


@pytest.mark.parametrize("seed", [11])
def test_funnel_matches_the_reference_on_every_backend(store: EventStore, seed: int) -> None:
    data = random_streams(seed, users=500)
    messages = stream_messages(data.streams)
    for start in range(0, len(messages), 1000):
        assert not store.insert_events(messages[start : start + 1000]).failed
    span = DateRange(data.from_, data.to)
    for steps in STEP_LISTS:
        for order in ORDERS:
            report = funnel_report(store, list(steps), span, data.window, order)
            entered, expected = reference_steps(
                data.streams, steps, data.starts_from, data.starts_to, data.window, order
            )
            context = f"steps={steps} order={order}"
            assert report.usersEntered == entered, context
            assert report.funnel == expected, context
    assert entered >= 100  # the streams really exercise the funnel


def _split_anonymously(
    data_streams: dict[str, list[EventPoint]], seed: int
) -> tuple[list[list[QueuedMessage]], dict[str, list[EventPoint]]]:
    """The streams as they arrive from real apps: part of many users' history is sent by an
    anonymous visitor, linked to the user by an identify that arrives before the rest of
    their events, or only after all of them (a late merge); some visitors never sign in.
    Returns the delivery rounds and the streams the funnel must see (per person)."""
    rng = random.Random(seed)
    early: list[QueuedMessage] = []
    late: list[QueuedMessage] = []
    links: list[QueuedMessage] = []
    expected: dict[str, list[EventPoint]] = {}
    for user, points in data_streams.items():
        messages = stream_messages({user: points})
        roll = rng.random()
        visitor = f"v-{user}"
        if roll < 0.5:
            early.extend(messages)
            expected[user] = points
            continue
        as_visitor = [
            m.model_copy(update={"userId": f"anon:{visitor}", "anonymousId": visitor})
            for m in messages
        ]
        if roll < 0.6:  # never signs in: a person of their own
            early.extend(as_visitor)
            expected[f"anon:{visitor}"] = points
            continue
        cut = rng.randint(0, len(messages))
        early.extend(as_visitor[:cut])
        link = identify_as(user, visitor, jan(9))
        if roll < 0.8:  # signs in, then goes on as the user
            links.append(link)
            late.extend(messages[cut:])
        else:  # the identify arrives after everything else: a late merge
            early.extend(messages[cut:])
            late.append(link)
        expected[user] = points
    return [early, links, late], expected


@pytest.mark.parametrize("seed", [23])
def test_funnels_count_a_merged_visitor_as_one_person(store: EventStore, seed: int) -> None:
    # Fewer users under moto, whose transactions are slow (the edge cases come per user).
    users = 100 if type(store).__name__.startswith("Dynamo") else 300
    data = random_streams(seed, users=users)
    rounds, expected_streams = _split_anonymously(data.streams, seed)
    for messages in rounds:
        for start in range(0, len(messages), 1000):
            consume(store, *messages[start : start + 1000])
    span = DateRange(data.from_, data.to)
    for steps in STEP_LISTS:
        for order in ORDERS:
            report = funnel_report(store, list(steps), span, data.window, order)
            entered, expected = reference_steps(
                expected_streams, steps, data.starts_from, data.starts_to, data.window, order
            )
            context = f"steps={steps} order={order}"
            assert report.usersEntered == entered, context
            assert report.funnel == expected, context
    assert entered >= users // 6


def _stored_in_small_pages(
    store: EventStore, seed: int, monkeypatch: pytest.MonkeyPatch, sqlite_page: str
) -> RandomStreams:
    """80 users' random streams stored in shuffled order (arrival order is not time order),
    with small SQLite pages (``sqlite_page`` of `funnel_reads`) and PostgreSQL fetches, so
    both turn over often."""
    monkeypatch.setattr(sqlite_funnel, sqlite_page, 7)
    monkeypatch.setattr(postgres_reads, "FUNNEL_FETCH_ROWS", 5)
    data = random_streams(seed, users=80)
    messages = stream_messages(data.streams)
    random.Random(seed).shuffle(messages)
    assert not store.insert_events(messages).failed
    return data


@pytest.mark.parametrize("seed", [31])
def test_step_times_are_the_step_events_in_range_by_user_and_name(
    store: EventStore, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _stored_in_small_pages(store, seed, monkeypatch, "FUNNEL_PAGE_USERS")
    steps = ("view", "cart", "view")
    got = list(
        store.funnel_step_times(
            steps[0], data.starts_from, data.starts_to, data.until, frozenset(steps)
        )
    )
    users = [user for user, _ in got]
    assert len(users) == len(set(users))  # each user once
    expected = dict(store_step_times(data, steps))
    low, high = time_key(data.starts_from), time_key(data.starts_to)
    starters = {u for u, t in expected.items() if any(low <= k <= high for k in t.get("view", []))}
    assert starters <= set(users)  # everyone with a start; others may be there too
    for user, times in got:
        assert {name: keys for name, keys in times.items() if keys} == expected[user], user


def test_an_abandoned_step_times_stream_leaves_the_store_usable(store: EventStore) -> None:
    data = random_streams(41, users=30)
    assert not store.insert_events(stream_messages(data.streams)).failed
    steps = frozenset({"open", "view"})
    args = ("open", data.starts_from, data.starts_to, data.until, steps)
    stream = store.funnel_step_times(*args)
    user, _times = next(stream)
    assert store.user_event_points(user)  # another read while the stream is open
    stream.close()  # type: ignore[attr-defined]
    assert len(list(store.funnel_step_times(*args))) >= 1


@pytest.mark.parametrize("seed", [37])
def test_next_times_are_each_steps_first_event_at_or_after_its_anchor(
    store: EventStore, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not isinstance(store, FunnelSeeks):
        pytest.skip("this store has no index seeks: its funnels read step times")
    data = _stored_in_small_pages(store, seed, monkeypatch, "FUNNEL_PAGE_STARTS")
    for steps in (("open", "view", "cart"), ("view", "open", "share", "pay")):
        for chained in (True, False):
            rows = list(store.funnel_next_times(steps, chained, data.starts_from, data.starts_to))
            users = [user for user, _, _ in rows]
            runs = [user for i, user in enumerate(users) if not i or users[i - 1] != user]
            assert len(runs) == len(set(users))  # each user's starts together
            got = sorted(
                (user, time_key(start), [None if t is None else time_key(t) for t in later])
                for user, start, later in rows
            )
            expected = store_next_times(data, steps, chained)
            assert got == expected, f"steps={steps} chained={chained}"
            assert len(expected) >= 20  # starts on several pages
    # A name no event can carry (PostgreSQL refuses NUL in text) ends every list there.
    rows = list(
        store.funnel_next_times(
            ("open", "bad\x00name", "view"), True, data.starts_from, data.starts_to
        )
    )
    assert len(rows) == len(store_next_times(data, ("open",), chained=True))
    assert all(len(later) <= 2 and set(later) <= {None} for _, _, later in rows)
    # An abandoned stream leaves the store usable.
    stream = store.funnel_next_times(("open", "view"), True, data.starts_from, data.starts_to)
    user, _start, _later = next(stream)
    assert store.user_event_points(user)
    stream.close()  # type: ignore[attr-defined]
