"""The report's words and numbers in one locale: the `report.*` catalog keys and Babel's CLDR
formatting (numbers, percentages, currencies, dates, durations), bound once per rendering."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from babel import dates, numbers, units

from mysoulmate.i18n.catalog import CatalogStore
from mysoulmate.i18n.cldr import babel_locale
from mysoulmate.i18n.formatting import format_currency, format_datetime, format_number
from mysoulmate.i18n.translate import t

ARROW_UP, ARROW_DOWN, FLAT = "▲", "▼", "="


class UnknownLocaleError(ValueError):
    """A report locale without a catalog: a report is written in one of the shipped eight."""


def available_locales() -> list[str]:
    return CatalogStore().available()


class ReportText:
    """`t` and the CLDR formatters for one locale (its code is also the page's `lang`)."""

    def __init__(self, locale: str) -> None:
        if locale not in available_locales():
            raise UnknownLocaleError(
                f"no catalog for report locale {locale!r} (one of {', '.join(available_locales())})"
            )
        self.locale = locale
        self._babel = babel_locale(locale)

    def t(self, key: str, /, **params: Any) -> str:
        return t(f"report.{key}", self.locale, **params)

    def number(self, value: int | float | Decimal) -> str:
        return format_number(value, self.locale)

    def decimal(self, value: float, places: int = 1) -> str:
        return str(
            numbers.format_decimal(
                round(value, places),
                format=f"#,##0.{'0' * places}" if places else "#,##0",
                locale=self._babel,
            )
        )

    def percent(self, fraction: float, places: int = 1) -> str:
        """0.1234 → "12.3%" / "12,3 %": CLDR's pattern, with up to ``places`` decimals."""
        return str(
            numbers.format_percent(
                round(fraction, places + 2), locale=self._babel, decimal_quantization=False
            )
        )

    def currency(self, amount: float, code: str) -> str:
        return format_currency(amount, code, self.locale)

    def day_text(self, value: date, width: str = "medium") -> str:
        return str(dates.format_date(value, format=width, locale=self._babel))

    def day_label(self, value: date) -> str:
        """Short weekday and day for chart axes: "Mon, Dec 7", "7 déc.", "12月7日(月)"."""
        return str(dates.format_skeleton("MMMEd", value, locale=self._babel))

    def short_day(self, value: date) -> str:
        return str(dates.format_skeleton("MMMd", value, locale=self._babel))

    def date_range(self, first: date, last: date) -> str:
        if first == last:
            return self.day_text(first, "full")
        return str(dates.format_interval(first, last, "yMMMd", locale=self._babel))

    def moment(self, value: datetime) -> str:
        return format_datetime(value, self.locale, "medium", "UTC")

    def duration(self, seconds: float) -> str:
        """Average session length: "42 s", "4.5 min", "1.2 h" (CLDR unit patterns)."""
        if seconds < 60:
            value, unit = seconds, "duration-second"
        elif seconds < 3600:
            value, unit = seconds / 60, "duration-minute"
        else:
            value, unit = seconds / 3600, "duration-hour"
        return str(
            units.format_unit(
                round(value, 1 if value < 100 else 0),
                unit,
                length="short",
                format="#,##0.#",
                locale=self._babel,
            )
        )

    def age(self, seconds: float) -> str:
        """An age without direction: "3 hours", "2 days"."""
        return str(
            dates.format_timedelta(
                timedelta(seconds=seconds), threshold=1.0, format="long", locale=self._babel
            )
        )

    def change(self, change: float, percent: float | None) -> tuple[str, str]:
        """(arrow with the change in percent, CSS class): "▲ 12.5%", "▼ 3%", "= 0%";
        without a base (previous 0): an arrow and the word for "new"."""
        if change == 0:
            return f"{FLAT} {self.percent(0)}", "flat"
        arrow, css = (ARROW_UP, "up") if change > 0 else (ARROW_DOWN, "down")
        if percent is None:
            return f"{arrow} {self.t('change.new')}", css
        return f"{arrow} {self.percent(abs(percent) / 100)}", css

    def vega_format_locale(self) -> dict[str, Any]:
        """d3-format's locale from CLDR's symbols, so the charts' axes match the tables."""
        symbols = self._babel.number_symbols.get("latn", {})
        return {
            "decimal": symbols.get("decimal", "."),
            "thousands": symbols.get("group", ","),
            "grouping": [3],
            "currency": ["", ""],
            "percent": symbols.get("percentSign", "%"),
            "minus": symbols.get("minusSign", "-"),
        }
