"""CLDR formatting for every supported locale, all of it Babel's: dates, times, numbers,
percentages, currencies and relative times ("3 hours ago", "in 2 days")."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Literal

from babel import dates, numbers

from mysoulmate.i18n.cldr import babel_locale

Width = Literal["short", "medium", "long", "full"]
Number = int | float | Decimal


def format_date(value: date, locale: str, width: Width = "medium") -> str:
    return str(dates.format_date(value, format=width, locale=babel_locale(locale)))


def format_time(
    value: time | datetime, locale: str, width: Width = "short", tz: str = "UTC"
) -> str:
    return str(
        dates.format_time(
            value, format=width, tzinfo=dates.get_timezone(tz), locale=babel_locale(locale)
        )
    )


def format_datetime(value: datetime, locale: str, width: Width = "medium", tz: str = "UTC") -> str:
    return str(
        dates.format_datetime(
            value, format=width, tzinfo=dates.get_timezone(tz), locale=babel_locale(locale)
        )
    )


def format_number(value: Number, locale: str) -> str:
    return str(numbers.format_decimal(value, locale=babel_locale(locale)))


def format_percent(value: Number, locale: str) -> str:
    """``value`` is a fraction: 0.25 → "25 %" in French, "25%" in English."""
    return str(numbers.format_percent(value, locale=babel_locale(locale)))


def format_currency(value: Number, currency: str, locale: str) -> str:
    return str(numbers.format_currency(value, currency.upper(), locale=babel_locale(locale)))


def format_relative(
    moment: datetime | timedelta,
    locale: str,
    *,
    now: datetime | None = None,
    threshold: float = 0.85,
) -> str:
    """ "3 hours ago" for the past, "in 2 days" for the future (CLDR's relative units)."""
    delta = moment if isinstance(moment, timedelta) else moment - (now or datetime.now(UTC))
    return str(
        dates.format_timedelta(
            delta, add_direction=True, threshold=threshold, locale=babel_locale(locale)
        )
    )
