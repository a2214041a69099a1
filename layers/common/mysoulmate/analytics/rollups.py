"""What one batch of newly stored events adds to the daily rollups.

Every backend applies the same delta in the same transaction (or conditional write) that
stores the events, and only for events that were not stored before: that is what keeps the
dashboard exact under redelivery. Counts and revenue add up; user sets and first-seen days
are unions and minimums, so the order batches arrive in does not matter.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

from mysoulmate.analytics.models import QueuedMessage, SessionMark
from mysoulmate.analytics.ports import ANY_EVENT, CountRow, SessionRow, UserSet, UsersRow
from mysoulmate.analytics.sessions import session_delta

UNKNOWN_PLATFORM = "unknown"
DEFAULT_CURRENCY = "USD"
MICROS = 1_000_000
# Per event, in units of the currency: far above any real purchase, and low enough that sums of
# micros stay exact in every backend's 64-bit integer columns (validation refuses more).
MAX_REVENUE = 1_000_000_000
_CURRENCY = re.compile(r"^[A-Z]{3}$")

# Session figures travel in the daily counts under these two event names: no client can
# send them (event names never hold control characters), so no backend needs a table more.
SESSIONS_EVENT = "\x1fsessions"  # sessions started on the day
SESSION_MS_EVENT = "\x1fsession_ms"  # milliseconds those sessions lasted
SESSION_EVENTS = frozenset({SESSIONS_EVENT, SESSION_MS_EVENT})

DayKey = tuple[date, str, str]  # (day, platform, event name or ANY_EVENT)
RevenueKey = tuple[date, str, str]  # (day, platform, currency)


@dataclass
class RollupDelta:
    counts: Counter[DayKey] = field(default_factory=Counter)
    revenue: Counter[RevenueKey] = field(default_factory=Counter)
    users: defaultdict[DayKey, set[str]] = field(default_factory=lambda: defaultdict(set))
    first_seen: dict[str, date] = field(default_factory=dict)
    # each person's current session after these events (`sessions.SessionMark`)
    session_marks: dict[str, SessionMark] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.counts or self.users or self.session_marks)


def platform_of(message: QueuedMessage) -> str:
    return message.platform or UNKNOWN_PLATFORM


def revenue_of(properties: dict[str, object]) -> tuple[str, int] | None:
    """(currency, micros) when ``revenue`` is a finite number of at most MAX_REVENUE units
    and ``currency`` (default USD) looks like an ISO 4217 code; anything else carries no
    revenue."""
    amount = properties.get("revenue")
    if isinstance(amount, bool) or not isinstance(amount, int | float):
        return None
    if isinstance(amount, float) and not math.isfinite(amount):
        return None
    if abs(amount) > MAX_REVENUE:
        return None
    currency = properties.get("currency", DEFAULT_CURRENCY)
    if not isinstance(currency, str) or not _CURRENCY.match(currency.strip().upper()):
        return None
    try:
        micros = int((Decimal(str(amount)) * MICROS).to_integral_value())
    except InvalidOperation:
        return None
    return currency.strip().upper(), micros


def rollup_delta(new_messages: Iterable[QueuedMessage]) -> RollupDelta:
    """The rollup contribution of messages stored for the first time (identifies add none)."""
    delta = RollupDelta()
    messages = list(new_messages)
    sessions = session_delta(messages, platform_of)
    for (day, platform), n in sessions.sessions.items():
        delta.counts[(day, platform, SESSIONS_EVENT)] += n
    for (day, platform), n in sessions.millis.items():
        delta.counts[(day, platform, SESSION_MS_EVENT)] += n
    delta.session_marks = sessions.marks
    for message in messages:
        if message.event is None:  # track, page and screen have one
            continue
        day = message.timestamp.date()
        platform = platform_of(message)
        _count(delta, day, platform, message.event, message.properties)
        delta.users[(day, platform, message.event)].add(message.userId)
        delta.users[(day, platform, ANY_EVENT)].add(message.userId)
        seen = delta.first_seen.get(message.userId)
        if seen is None or day < seen:
            delta.first_seen[message.userId] = day
    return delta


def copies_delta(copies: Iterable[tuple[date, str | None, str, dict[str, Any]]]) -> RollupDelta:
    """The event counts and revenue that stored track events (day, platform, event name,
    properties) added: what dropping them takes away again. A link's move drops the
    visitor's copy of a message the user already has, and the two people are now one."""
    delta = RollupDelta()
    for day, platform, event, properties in copies:
        _count(delta, day, platform or UNKNOWN_PLATFORM, event, properties)
    return delta


def _count(
    delta: RollupDelta, day: date, platform: str, event: str, properties: dict[str, Any]
) -> None:
    """One stored event in the day's event count and, when it carries some, revenue."""
    delta.counts[(day, platform, event)] += 1
    revenue = revenue_of(properties)
    if revenue is not None:
        delta.revenue[(day, platform, revenue[0])] += revenue[1]


def session_counter_keys(message: QueuedMessage) -> list[DayKey]:
    """The session count rows storing ``message`` for the first time adds to."""
    tally = message.session_tally
    if tally is None:
        return []
    keys: list[DayKey] = []
    if tally.started:
        keys.append((tally.day, platform_of(message), SESSIONS_EVENT))
    if tally.grown_ms:
        keys.append((tally.day, platform_of(message), SESSION_MS_EVENT))
    return keys


def split_session_rows(rows: Iterable[CountRow]) -> tuple[list[CountRow], list[SessionRow]]:
    """Daily count rows as stored → (event counts, session figures per day and platform)."""
    counts: list[CountRow] = []
    sessions: dict[tuple[date, str], list[int]] = {}
    for row in rows:
        if row.event not in SESSION_EVENTS:
            counts.append(row)
            continue
        figures = sessions.setdefault((row.day, row.platform), [0, 0])
        figures[0 if row.event == SESSIONS_EVENT else 1] += row.events
    return counts, [
        SessionRow(day, platform, started, millis)
        for (day, platform), (started, millis) in sorted(sessions.items())
    ]


class DailySets(Protocol):
    """What `weekly_from_daily` reads: a store's daily sets."""

    def rollup_users(self, start: date, end: date, *, by_event: bool) -> list[UsersRow]: ...
    def empty_user_set(self) -> Any: ...


def weekly_from_daily(store: DailySets, start: date, end: date) -> dict[date, UserSet]:
    """`EventStore.weekly_active_users` for a backend without weekly sets: each week's
    any-event daily sets (every platform), unioned."""
    # Read side only: the consumer imports this module at cold start, never `date_range`.
    from mysoulmate.analytics.date_range import week_start

    by_week: dict[date, list[UserSet]] = {}
    for row in store.rollup_users(start, end + timedelta(days=6), by_event=False):
        week = week_start(row.day)
        if start <= week <= end:
            by_week.setdefault(week, []).append(row.users)
    return {week: store.empty_user_set().union(*sets) for week, sets in by_week.items()}
