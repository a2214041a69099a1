"""Date ranges and durations in report queries: parsed once, validated with clear errors."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from mysoulmate.core.errors import InvalidRequestError

DEFAULT_RANGE_DAYS = 30
MAX_RANGE_DAYS = 366
_DURATION = re.compile(r"^(\d{1,6})([smhdw])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


@dataclass(frozen=True)
class DateRange:
    """UTC days, both ends inclusive."""

    start: date
    end: date

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def each_day(self) -> Iterator[date]:
        for offset in range(self.days):
            yield self.start + timedelta(days=offset)

    @property
    def first_moment(self) -> datetime:
        return datetime.combine(self.start, time.min, UTC)

    @property
    def last_moment(self) -> datetime:
        return datetime.combine(self.end, time.max, UTC)


def week_start(day: date) -> date:
    """The Monday of ``day``'s ISO week."""
    return day - timedelta(days=day.weekday())


def today_utc() -> date:
    return datetime.now(UTC).date()


def resolve_range(
    start: date | None,
    end: date | None,
    *,
    today: date,
    default_days: int = DEFAULT_RANGE_DAYS,
    max_days: int = MAX_RANGE_DAYS,
) -> DateRange:
    """`from`/`to` as given, defaulting to the last ``default_days`` days ending today."""
    end = end or (today if start is None else min(today, start + timedelta(days=default_days - 1)))
    start = start or end - timedelta(days=default_days - 1)
    if start > end:
        raise InvalidRequestError(
            code="invalid_range",
            start=start.isoformat(),
            end=end.isoformat(),
            details=[{"field": "from", "type": "after_to"}],
        )
    span = (end - start).days + 1
    if span > max_days:
        raise InvalidRequestError(
            code="range_too_long",
            days=span,
            limit=max_days,
            details=[{"field": "to", "type": "range_too_long"}],
        )
    return DateRange(start, end)


def parse_window(text: str, *, limit: timedelta) -> timedelta:
    """'30m', '12h', '7d', '2w' → a positive duration no longer than ``limit``."""
    match = _DURATION.match(text.strip())
    seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2)] if match else 0
    if not 0 < seconds <= limit.total_seconds():
        raise InvalidRequestError(
            code="invalid_window",
            value=text,
            limit=f"{int(limit.total_seconds() // 86400)}d",
            details=[{"field": "window", "type": "invalid_window"}],
        )
    return timedelta(seconds=seconds)
