"""Deterministic demo and benchmark data: a month of a companion app's analytics.

Users sign up on a random day, most create a companion, chat for a while, some buy; every
event goes through the same `insert_events` path the consumer uses, so rollups are built
exactly as in production.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

from mysoulmate.analytics.models import QueuedMessage

PLATFORMS = (("web", 5), ("ios", 3), ("android", 2))
ACTIVITY = (
    ("message_sent", 60),
    ("app_opened", 15),
    ("voice_call_started", 6),
    ("gift_sent", 4),
    ("settings_changed", 3),
    ("video_call_started", 2),
)
PRICES = ((9.99, "USD"), (4.99, "EUR"), (1200, "JPY"))


def seed_messages(
    events: int, users: int, days: int, *, end: date, seed: int = 7
) -> Iterator[QueuedMessage]:
    """About ``events`` track events from ``users`` users over the ``days`` days up to
    ``end`` (inclusive), in a stable order for a given seed."""
    rng = random.Random(seed)
    start = datetime(end.year, end.month, end.day, tzinfo=UTC) - timedelta(days=days - 1)
    span = timedelta(days=days).total_seconds()
    per_user = max(1, events // users)
    platforms = [p for p, _ in PLATFORMS]
    platform_weights = [w for _, w in PLATFORMS]
    names = [n for n, _ in ACTIVITY]
    weights = [w for _, w in ACTIVITY]
    produced = 0
    for index in range(users):
        user = f"user-{index:06d}"
        platform = rng.choices(platforms, platform_weights)[0]
        signed_up = start + timedelta(seconds=rng.uniform(0, span * 0.9))
        left = (start + timedelta(days=days) - signed_up).total_seconds()
        count = per_user if index < users - 1 else max(1, events - produced)
        moments = sorted(
            signed_up + timedelta(seconds=rng.uniform(0, left)) for _ in range(count - 1)
        )
        plan: list[tuple[str, datetime]] = [("signup", signed_up)]
        for i, moment in enumerate(moments):
            if i == 0 and rng.random() < 0.7:
                plan.append(("companion_created", moment))
            elif i == len(moments) - 1 and rng.random() < 0.12:
                plan.append(("purchase", moment))
            else:
                plan.append((rng.choices(names, weights)[0], moment))
        for i, (name, moment) in enumerate(plan):
            properties: dict[str, object] = {}
            if name == "purchase":
                amount, currency = rng.choice(PRICES)
                properties = {"revenue": amount, "currency": currency}
            yield QueuedMessage(
                type="track",
                messageId=f"seed-{seed}-{user}-{i}",
                userId=user,
                event=name,
                timestamp=moment,
                receivedAt=moment,
                platform=platform,
                properties=properties,
            )
        produced += len(plan)
