"""The funnel engine: randomized agreement with a brute-force reference, and one hand-written
case per rule of the product issue's definitions."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction
from itertools import pairwise

import pytest
from mysoulmate.analytics.funnel import (
    MEDIAN,
    P90,
    FunnelTally,
    Order,
    build_report,
    compute_funnel,
    compute_funnel_times,
    funnel_steps,
    names_needed,
    percentile_seconds,
    reads_step_times,
    user_conversion,
)
from mysoulmate.analytics.funnel_next import compute_funnel_next, reads_next_times
from mysoulmate.analytics.ports import EventPoint, time_key

from tests.support.funnel_reference import reference_steps, reference_user
from tests.support.funnel_streams import (
    random_streams,
    store_candidates,
    store_next_times,
    store_step_times,
    stream_messages,
)

ORDERS: tuple[Order, ...] = ("ordered", "strict", "any")
STEP_LISTS = (
    ("open", "view"),
    ("open", "view", "open"),
    ("view", "open", "cart"),
    ("open", "view", "cart", "pay", "share"),
    ("view", "cart", "view", "view"),
)

# -- randomized: the engine over store-filtered candidates == brute force over full streams --


def _moment(key: str) -> datetime:
    return datetime.fromisoformat(key)


@pytest.mark.parametrize(
    ("seed", "window"),
    [
        (1, timedelta(minutes=30)),
        (2, timedelta(hours=6)),
        (3, timedelta(days=1)),
        (4, timedelta(seconds=90)),
        (5, timedelta(hours=6)),
        (6, timedelta(minutes=30)),
    ],
)
def test_engine_matches_brute_force_reference_on_random_streams(
    seed: int, window: timedelta
) -> None:
    data = random_streams(seed, window=window)
    for steps in STEP_LISTS:
        for order in ORDERS:
            tally = compute_funnel(
                store_candidates(data, steps, order),
                steps,
                data.starts_from,
                data.starts_to,
                data.window,
                order,
            )
            entered, expected = reference_steps(
                data.streams, steps, data.starts_from, data.starts_to, data.window, order
            )
            context = f"seed={seed} steps={steps} order={order}"
            assert tally.users_entered == entered, context
            assert funnel_steps(tally, steps) == expected, context
            if reads_step_times(order):  # the same answer from the step times alone
                from_times = compute_funnel_times(
                    store_step_times(data, steps),
                    steps,
                    data.starts_from,
                    data.starts_to,
                    data.window,
                    order,
                )
                assert from_times == tally, context
            if reads_next_times(steps, order):  # distinct names: from one event per step
                rows = store_next_times(data, steps, chained=order == "ordered")
                parsed = (
                    (user, _moment(start), [None if k is None else _moment(k) for k in later])
                    for user, start, later in rows
                )
                from_next = compute_funnel_next(parsed, steps, data.window, order)
                assert from_next.users_entered == entered, context
                assert funnel_steps(from_next, steps) == expected, context


def test_random_streams_exercise_the_edge_cases_they_exist_for() -> None:
    data = random_streams(7)
    points = [p for stream in data.streams.values() for p in stream]
    assert len(data.streams) >= 500
    assert any(a.ts == b.ts for s in data.streams.values() for a, b in pairwise(s))
    low, high = time_key(data.starts_from), time_key(data.starts_to)
    assert any(p.ts < low for p in points)
    assert any(p.ts > time_key(data.until) for p in points)
    assert any(p.ts == low for p in points)
    assert any(p.ts == high for p in points)
    assert {p.event for p in points} >= {"ping", "scroll", "open", "share"}


def test_stream_messages_are_track_messages_keyed_by_the_points_message_ids() -> None:
    data = random_streams(3, users=5)
    messages = stream_messages(data.streams)
    assert len(messages) == sum(len(s) for s in data.streams.values())
    first_user, first_points = next(iter(data.streams.items()))
    first = messages[0]
    assert (first.type, first.userId, first.platform) == ("track", first_user, "web")
    assert first.messageId == first_points[0].message_id
    assert time_key(first.timestamp) == first_points[0].ts == time_key(first.receivedAt)
    assert len({m.key for m in messages}) == len(messages)


# -- hand-written cases ------------------------------------------------------------------

FROM = datetime(2026, 1, 10, tzinfo=UTC)
TO = datetime(2026, 1, 12, 23, 59, 59, 999999, tzinfo=UTC)
T = datetime(2026, 1, 11, 12, tzinfo=UTC)
US = timedelta(microseconds=1)
HOUR = timedelta(hours=1)


def points(*events: tuple[float | timedelta, str]) -> list[EventPoint]:
    """Events at T + offset (seconds or a timedelta), stored order: ts, then messageId."""
    result = []
    for i, (offset, name) in enumerate(events):
        delta = offset if isinstance(offset, timedelta) else timedelta(seconds=offset)
        result.append(EventPoint(time_key(T + delta), name, f"m{i:03d}"))
    return sorted(result)


def reach(
    stream: list[EventPoint],
    steps: Sequence[str],
    order: Order,
    window: timedelta = HOUR,
) -> list[float]:
    """Seconds to each step reached; checked against the brute-force reference too."""
    got = user_conversion(stream, steps, FROM, TO, window, order)
    assert got == reference_user(stream, steps, FROM, TO, window, order)
    return [m / 1_000_000 for m in got]


@pytest.mark.parametrize("order", ORDERS)
def test_equal_timestamps_count_as_in_order_whatever_the_storage_order(order: Order) -> None:
    # "cart" sorts before "open" at the same ts by messageId
    stream = [EventPoint(time_key(T), "cart", "a"), EventPoint(time_key(T), "open", "b")]
    assert reach(stream, ["open", "cart"], order) == [0, 0]


def test_ordered_allows_other_events_between_steps_strict_does_not() -> None:
    stream = points((0, "open"), (1, "ping"), (2, "view"))
    assert reach(stream, ["open", "view"], "ordered") == [0, 2]
    assert reach(stream, ["open", "view"], "strict") == [0]


def test_strict_is_not_blocked_by_events_at_the_same_time_as_a_step() -> None:
    stream = points((0, "open"), (0, "ping"), (1, "ping"), (1, "view"))
    assert reach(stream, ["open", "view"], "strict") == [0, 1]


def test_strict_searches_tied_choices_instead_of_taking_the_earliest() -> None:
    # view@0 is earliest, but then view@1 lies between it and cart@2; view@1 reaches cart.
    # (Step 2's own shortest time is still 0: each step's time is its own minimum.)
    stream = points((0, "open"), (0, "view"), (1, "view"), (2, "cart"))
    assert reach(stream, ["open", "view", "cart"], "strict") == [0, 0, 2]


def test_strict_steps_may_share_a_timestamp_but_need_distinct_events() -> None:
    stream = points((0, "open"), (5, "view"), (5, "view"), (6, "cart"))
    assert reach(stream, ["open", "view", "view", "cart"], "strict") == [0, 5, 5, 6]
    assert reach(stream, ["open", "view", "view", "view"], "strict") == [0, 5, 5]


def test_strict_keeps_every_way_of_splitting_steps_over_tied_slots() -> None:
    # [open view]@0 [view view]@1 reaches step 4; [open]@0 [view view]@1 is stuck at step 3
    stream = points((0, "open"), (0, "view"), (1, "view"), (1, "view"))
    assert reach(stream, ["open", "view", "view", "view"], "strict") == [0, 0, 1, 1]


def test_ordered_requires_order_any_does_not() -> None:
    stream = points((0, "open"), (1, "cart"), (2, "view"))
    assert reach(stream, ["open", "view", "cart"], "ordered") == [0, 2]
    assert reach(stream, ["open", "view", "cart"], "any") == [0, 2, 2]


def test_any_takes_the_latest_step_and_ignores_events_before_the_start() -> None:
    stream = points((-1, "view"), (0, "open"), (3, "cart"), (7, "view"))
    assert reach(stream, ["open", "view", "cart"], "any") == [0, 7, 7]
    assert reach(stream, ["open", "cart", "view"], "any") == [0, 3, 7]


@pytest.mark.parametrize("order", ORDERS)
def test_window_bound_is_inclusive(order: Order) -> None:
    assert reach(points((0, "open"), (HOUR, "view")), ["open", "view"], order) == [0, 3600]
    assert reach(points((0, "open"), (HOUR + US, "view")), ["open", "view"], order) == [0]


@pytest.mark.parametrize("order", ORDERS)
def test_repeated_step_names_need_distinct_events(order: Order) -> None:
    steps = ["open", "view", "open"]
    assert reach(points((0, "open"), (1, "view")), steps, order) == [0, 1]
    assert reach(points((0, "open"), (1, "view"), (2, "open")), steps, order) == [0, 1, 2]
    tied = points((0, "open"), (0, "open"), (0, "view"))
    assert reach(tied, steps, order) == [0, 0, 0]


def test_ordered_repeated_names_are_matched_in_time_order() -> None:
    stream = points((0, "open"), (1, "open"), (2, "view"), (3, "open"))
    assert reach(stream, ["open", "open", "view", "open"], "ordered") == [0, 1, 2, 3]
    assert reach(stream, ["open", "view", "open", "open"], "ordered") == [0, 1, 2]


@pytest.mark.parametrize("order", ORDERS)
def test_user_counts_at_the_deepest_step_over_all_starts(order: Order) -> None:
    # the first start reaches view only (cart is out of its window); a later one all three
    later = 2 * HOUR
    stream = points(
        (0, "open"),
        (10, "view"),
        (later, "open"),
        (later + timedelta(seconds=1), "view"),
        (later + timedelta(seconds=2), "cart"),
    )
    assert reach(stream, ["open", "view", "cart"], order) == [0, 1, 2]
    tally = compute_funnel(iter([("u1", stream)]), ["open", "view", "cart"], FROM, TO, HOUR, order)
    assert (tally.users_entered, tally.users) == (1, [1, 1, 1])


@pytest.mark.parametrize("order", ORDERS)
def test_time_to_convert_is_the_shortest_over_starts(order: Order) -> None:
    stream = points((0, "open"), (50, "open"), (60, "view"))
    assert reach(stream, ["open", "view"], order) == [0, 10]


def test_strict_later_start_can_succeed_where_an_earlier_is_blocked() -> None:
    stream = points((0, "open"), (1, "ping"), (2, "open"), (3, "view"))
    assert reach(stream, ["open", "view"], "strict") == [0, 1]


@pytest.mark.parametrize("order", ORDERS)
def test_window_can_make_a_later_start_deeper_than_an_earlier_one(order: Order) -> None:
    window = timedelta(seconds=10)
    stream = points((0, "open"), (5, "view"), (20, "open"), (25, "view"), (29, "cart"))
    assert reach(stream, ["open", "view", "cart"], order, window) == [0, 5, 9]


@pytest.mark.parametrize("order", ORDERS)
def test_only_step_one_events_inside_from_to_start_a_funnel(order: Order) -> None:
    before = [EventPoint(time_key(FROM - US), "open", "a"), EventPoint(time_key(FROM), "view", "b")]
    after = [EventPoint(time_key(TO + US), "open", "c"), EventPoint(time_key(TO + US), "view", "d")]
    on_edges = [
        EventPoint(time_key(FROM), "open", "e"),
        EventPoint(time_key(TO), "open", "f"),
        EventPoint(time_key(TO + HOUR), "view", "g"),
    ]
    candidates = [("before", before), ("after", after), ("edges", on_edges)]
    tally = compute_funnel(iter(candidates), ["open", "view"], FROM, TO, HOUR, order)
    assert (tally.users_entered, tally.users, tally.micros) == (1, [1, 1], [[], [3600 * 10**6]])


def test_percentiles_interpolate_linearly_between_ranks() -> None:
    seconds = [s * 1_000_000 for s in range(1, 11)]  # 1..10 s, unsorted input is fine
    assert percentile_seconds(reversed(seconds), MEDIAN) == 5.5
    assert percentile_seconds(seconds, P90) == 9.1
    assert percentile_seconds([4_000_000], P90) == 4.0
    assert percentile_seconds([1_000_000, 2_000_000], MEDIAN) == 1.5
    assert percentile_seconds([], MEDIAN) is None


def test_percentiles_round_half_to_even_to_the_millisecond() -> None:
    assert percentile_seconds([1_000_500], MEDIAN) == 1.0
    assert percentile_seconds([1_001_500], MEDIAN) == 1.002
    assert percentile_seconds([0, 3], MEDIAN) == 0.0  # 1.5 microseconds
    assert percentile_seconds([0, 1_001], Fraction(1, 2)) == 0.001  # 500.5 us rounds up


def test_report_counts_drop_off_and_rounds_conversions() -> None:
    tally = FunnelTally(users_entered=3, users=[3, 1, 0], micros=[[], [2_500_000], []])
    report = build_report(
        tally,
        steps=["open", "view", "pay"],
        order="ordered",
        from_=date(2026, 1, 10),
        to=date(2026, 1, 12),
        window=timedelta(days=1),
    )
    first, second, third = report.funnel
    assert (first.conversionFromStart, first.conversionFromPrevious, first.dropOff) == (1, 1, 0)
    assert (first.medianSecondsToConvert, first.p90SecondsToConvert) == (None, None)
    assert (second.users, second.conversionFromStart, second.dropOff) == (1, 0.333333, 2)
    assert (second.medianSecondsToConvert, second.p90SecondsToConvert) == (2.5, 2.5)
    assert (third.conversionFromPrevious, third.dropOff, third.medianSecondsToConvert) == (
        0.0,
        1,
        None,
    )


def test_report_of_nobody_has_zero_fractions_and_serializes_from_by_alias() -> None:
    steps = ["open", "view"]
    tally = compute_funnel(iter([]), steps, FROM, TO, HOUR, "any")
    report = build_report(
        tally, steps=steps, order="any", from_=FROM.date(), to=TO.date(), window=HOUR
    )
    dumped = report.model_dump(mode="json")
    assert (dumped["from"], dumped["to"]) == ("2026-01-10", "2026-01-12")
    assert "from_" not in dumped
    assert (dumped["windowSeconds"], dumped["usersEntered"]) == (3600, 0)
    assert [line["conversionFromStart"] for line in dumped["funnel"]] == [0.0, 0.0]
    assert [line["conversionFromPrevious"] for line in dumped["funnel"]] == [0.0, 0.0]
    assert type(report).model_validate(dumped) == report


def test_strict_needs_every_event_the_others_only_step_names() -> None:
    assert names_needed(["open", "view", "open"], "ordered") == frozenset({"open", "view"})
    assert names_needed(["open", "view"], "any") == frozenset({"open", "view"})
    assert names_needed(["open", "view"], "strict") is None
    assert reads_step_times("ordered")
    assert reads_step_times("any")
    assert not reads_step_times("strict")


@pytest.mark.parametrize("order", ["ordered", "any"])
def test_step_times_ignore_users_without_a_start_and_names_they_lack(order: Order) -> None:
    in_range = time_key(T)
    step_times = [
        ("no-start", {"view": [in_range]}),  # a step event, but no step-1 event
        ("early", {"open": [time_key(FROM - US)], "view": [in_range]}),
        ("only-open", {"open": [in_range]}),  # no "view" list at all
        ("tied", {"open": [in_range, in_range], "view": [in_range]}),
    ]
    tally = compute_funnel_times(iter(step_times), ["open", "view"], FROM, TO, HOUR, order)
    assert (tally.users_entered, tally.users, tally.micros) == (2, [2, 1], [[], [0]])


def test_step_times_refuse_strict() -> None:
    with pytest.raises(AssertionError):
        compute_funnel_times(iter([]), ["open", "view"], FROM, TO, HOUR, "strict")
