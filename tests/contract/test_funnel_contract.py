"""Every backend's funnel answer equals the brute-force reference on random event streams
(≥ 500 users, random gaps, ties and interleavings), in all three orders."""

from __future__ import annotations

import pytest
from mysoulmate.analytics.date_range import DateRange
from mysoulmate.analytics.funnel import Order
from mysoulmate.analytics.ports import EventStore
from mysoulmate.analytics.reporting import funnel_report

from tests.support.funnel_reference import reference_steps
from tests.support.funnel_streams import random_streams, stream_messages

STEP_LISTS = (("open", "view", "cart", "pay"), ("view", "cart", "view"))
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
