"""Distinct active users over rolling windows of UTC days, from the rollups' user sets
(what Prometheus exposes as ``mysoulmate_active_users``)."""

from __future__ import annotations

from datetime import date, timedelta
from functools import reduce

from mysoulmate.analytics.date_range import today_utc
from mysoulmate.analytics.ports import ANY_EVENT, EventStore

# (window label, days, today included)
ACTIVE_USER_WINDOWS = (("1d", 1), ("7d", 7), ("30d", 30))


def active_users_by_window(store: EventStore, today: date | None = None) -> dict[str, int]:
    today = today or today_utc()
    longest = max(days for _, days in ACTIVE_USER_WINDOWS)
    rows = [
        row
        for row in store.rollup_users(today - timedelta(days=longest - 1), today, by_event=False)
        if row.event == ANY_EVENT
    ]
    figures = {}
    for window, days in ACTIVE_USER_WINDOWS:
        first = today - timedelta(days=days - 1)
        sets = (row.users for row in rows if row.day >= first)
        figures[window] = len(reduce(lambda a, b: a | b, sets, store.empty_user_set()))
    return figures
