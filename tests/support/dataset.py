"""A small, hand-checked month of events: the numbers every backend must reproduce."""

from __future__ import annotations

import random

from mysoulmate.analytics.models import QueuedMessage

from tests.support.contract import day, identify, track


def january() -> list[list[QueuedMessage]]:
    """Three consumer batches (one per day) plus identifies, in arrival order."""
    return [
        [
            track("alice", "signup", day(1, 10)),
            track("alice", "companion_created", day(1, 11)),
            track("bob", "signup", day(1, 12), platform="ios"),
            identify("bob", day(1, 12), plan="free"),
        ],
        [
            track("alice", "message_sent", day(2, 12, 0)),
            track("alice", "message_sent", day(2, 12, 10)),
            track("alice", "message_sent", day(2, 12, 20)),
            track("bob", "message_sent", day(2, 9), platform="ios"),
            track("carol", "purchase", day(2, 15), platform="android", revenue=9.99),
        ],
        [
            track("alice", "purchase", day(3, 8), revenue=5, currency="eur"),
            track("bob", "purchase", day(3, 9), platform="ios", revenue="abc"),
            track("dave", "purchase", day(3, 23, 59, 59), revenue=1.005, currency="JPY"),
        ],
    ]


def shuffled_with_redeliveries(seed: int) -> list[list[QueuedMessage]]:
    """The same events, batches reordered and regrouped, a third of them delivered twice."""
    rng = random.Random(seed)
    messages = [m for batch in january() for m in batch]
    messages += rng.sample(messages, len(messages) // 3)
    rng.shuffle(messages)
    cut = sorted(rng.sample(range(1, len(messages)), 3))
    return [messages[a:b] for a, b in zip([0, *cut], [*cut, len(messages)], strict=True)]
