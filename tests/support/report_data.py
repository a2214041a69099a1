"""A companion app's last nine weeks, for report tests and the README's screenshot.

Deterministic (one seed): users sign up at a growing rate, create a companion, chat in
sessions, view pages (web) or screens (apps), buy in three currencies, and come back less
and less often, so retention decays and the funnel narrows as a real one would. Stored
through the consumer's record handler (`consume`), sessions included.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta

from mysoulmate.analytics.models import QueuedMessage, view_event_name
from mysoulmate.analytics.perf_models import Measurement, PerfPayload
from mysoulmate.analytics.ports import EventStore

from tests.support.messages import consume, track

# The report week of the screenshot: ISO 2026-W48, Monday 23 to Sunday 29 November 2026.
REPORT_WEEK = date(2026, 11, 23)
END = date(2026, 11, 29)
WEEKS = 9
PLATFORMS = (("web", 5), ("ios", 3), ("android", 2))
PRICES = ((9.99, "USD"), (4.99, "EUR"), (1200, "JPY"), (19.99, "USD"))
PAGES = ("Home", "Pricing", "Companions", "Blog")
SCREENS = ("Chat", "Companion", "Settings")
CHAT = (("message_sent", 70), ("voice_call_started", 8), ("gift_sent", 6), ("settings_changed", 3))


def view(user: str, kind: str, name: str, at: datetime, platform: str, n: int) -> QueuedMessage:
    return QueuedMessage(
        type="page" if kind == "page" else "screen",
        messageId=f"demo-{user}-v{n}",
        userId=user,
        event=view_event_name("page" if kind == "page" else "screen", name),
        name=name,
        timestamp=at,
        receivedAt=at,
        platform=platform,
    )


def demo_messages(users: int = 700, *, end: date = END, seed: int = 11) -> Iterator[QueuedMessage]:
    rng = random.Random(seed)
    first = end - timedelta(weeks=WEEKS) + timedelta(days=1)
    for index in range(users):
        yield from one_user(rng, f"demo-{index:04d}", first, end)


def at(day: date, minute: float) -> datetime:
    return datetime.combine(day, time(0), UTC) + timedelta(minutes=minute)


def one_user(rng: random.Random, user: str, first: date, end: date) -> Iterator[QueuedMessage]:
    """Sign-up, then active days ever rarer; on each, a session of chat and one view."""
    platform = rng.choices([p for p, _ in PLATFORMS], [w for _, w in PLATFORMS])[0]
    days = (end - first).days + 1
    # More sign-ups lately: the power skews the day towards the end.
    joined = first + timedelta(days=int(days * rng.random() ** 0.6))
    ids = itertools.count(1)

    def event(name: str, moment: datetime, **properties: object) -> QueuedMessage:
        message_id = f"demo-{user}-{next(ids)}"
        return track(user, name, moment, platform=platform, message_id=message_id, **properties)

    start = rng.uniform(7 * 60, 22 * 60)
    yield event("signup", at(joined, start))
    if rng.random() < 0.72:
        yield event("companion_created", at(joined, start + 3))
    buyer = rng.random() < 0.3
    # A third never come back; the others come back less and less often.
    loyalty = 0.0 if rng.random() < 0.33 else rng.uniform(0.03, 0.4)
    for offset in range((end - joined).days + 1):
        day = joined + timedelta(days=offset)
        weekend = day.weekday() >= 5
        chance = loyalty * (0.8 ** (offset / 7)) * (1.2 if weekend else 1.0)
        if offset and rng.random() > chance:
            continue
        minute = rng.uniform(8 * 60, 23 * 60) if offset else start + 5
        yield event("app_opened", at(day, minute))
        kind, names = ("page", PAGES) if platform == "web" else ("screen", SCREENS)
        yield view(user, kind, rng.choice(names), at(day, minute + 0.5), platform, next(ids))
        for _ in range(rng.randint(2, 9)):
            minute += rng.uniform(0.5, 4)
            name = rng.choices([c for c, _ in CHAT], [w for _, w in CHAT])[0]
            yield event(name, at(day, minute))
        if buyer and rng.random() < 0.2:
            amount, currency = rng.choice(PRICES)
            yield event("purchase", at(day, minute + 1), revenue=amount, currency=currency)


# The apps' render times: version 2.4.0 ships mid-way through the report week and makes the
# Chat screen a third slower on iOS; the other screens stay as they were.
RENDER_MS = {"Chat": 180.0, "Companion": 240.0, "Settings": 95.0}
RELEASE = END - timedelta(days=3)


def demo_perf_messages(end: date = END, seed: int = 5) -> Iterator[QueuedMessage]:
    """A week of render-time batches from the apps: 2.3.2 until RELEASE, then 2.4.0."""
    rng = random.Random(seed)
    for offset in range(7):
        day = end - timedelta(days=6 - offset)
        version = "2.4.0" if day >= RELEASE else "2.3.2"
        for platform in ("ios", "android"):
            for batch_number in range(6):
                measurements = []
                for screen, typical in RENDER_MS.items():
                    slower = 1.33 if (screen, platform, version) == ("Chat", "ios", "2.4.0") else 1
                    for _ in range(10):
                        value = round(typical * slower * rng.lognormvariate(0, 0.35), 1)
                        measurements.append(Measurement(metric="render", name=screen, value=value))
                moment = at(day, 600 + batch_number)
                payload = PerfPayload(
                    appVersion=version, deviceClass="mid", measurements=measurements
                )
                yield QueuedMessage(
                    type="perf",
                    messageId=f"demo-perf-{day}-{platform}-{batch_number}",
                    userId=f"demo-device-{platform}-{batch_number}",
                    timestamp=moment,
                    receivedAt=moment,
                    platform=platform,
                    properties=payload.model_dump(mode="json", exclude_none=True),
                )


def seed_demo(store: EventStore, users: int = 700, *, end: date = END) -> int:
    """Store the demo data through the consumer, in deliveries of 500; returns how many."""
    batch: list[QueuedMessage] = []
    total = 0
    for message in itertools.chain(demo_messages(users, end=end), demo_perf_messages(end)):
        batch.append(message)
        if len(batch) == 500:
            consume(store, *batch)
            total += len(batch)
            batch = []
    if batch:
        consume(store, *batch)
        total += len(batch)
    return total
