"""`t()`: nested keys, ``{{name}}`` interpolation, CLDR plurals and the fallback chain
region → language → DEFAULT_LOCALE → the key itself (logged once per missing key)."""

from __future__ import annotations

import logging
import re
from functools import lru_cache
from typing import Any

from mysoulmate.core.settings import get_settings
from mysoulmate.i18n.catalog import CatalogError, CatalogStore, Entry
from mysoulmate.i18n.cldr import babel_locale

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_log = logging.getLogger("mysoulmate.i18n")
_missing_logged: set[tuple[str, str]] = set()


@lru_cache(maxsize=1)
def catalogs() -> CatalogStore:
    """The process's catalogs; the laptop shape re-reads edited files without a restart."""
    return CatalogStore(reload=get_settings().stage == "local")


def plural_category(locale: str, count: float) -> str:
    """CLDR's category for ``count`` in ``locale`` (one, few, many, other, …)."""
    return str(babel_locale(locale).plural_form(abs(count)))


def required_categories(locale: str) -> frozenset[str]:
    """The CLDR plural categories ``locale`` uses, ``other`` included."""
    return frozenset(babel_locale(locale).plural_form.tags) | {"other"}


def interpolate(text: str, params: dict[str, Any]) -> str:
    """Fill ``{{name}}``; a placeholder without a value stays visible rather than vanish."""
    if "{{" not in text:
        return text

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        return str(params[name]) if name in params else match.group(0)

    return _PLACEHOLDER.sub(value, text)


def fallback_chain(locale: str) -> list[str]:
    """pt-BR → [pt-BR, pt, DEFAULT_LOCALE], without repeats."""
    chain = [locale]
    if "-" in locale:
        chain.append(locale.split("-", 1)[0])
    default = get_settings().default_locale
    chain.append(default)
    return list(dict.fromkeys(chain))


def lookup(key: str, locale: str) -> tuple[str, Entry] | None:
    """The first locale in the fallback chain that has ``key``, with its entry."""
    store = catalogs()
    for candidate in fallback_chain(locale):
        try:
            entry = store.get(candidate).flat.get(key)
        except CatalogError:
            continue
        if entry:
            return candidate, entry
    return None


def _select(entry: Entry, locale: str, count: float | None) -> str:
    if isinstance(entry, str):
        return entry
    category = plural_category(locale, count) if count is not None else "other"
    return entry.get(category) or entry.get("other") or next(iter(entry.values()))


def t(key: str, locale: str, /, count: float | None = None, **params: Any) -> str:
    """The translation of ``key`` for ``locale``; ``count`` picks the plural form and is
    also available to the text as ``{{count}}``."""
    found = lookup(key, locale)
    if found is None:
        if (key, locale) not in _missing_logged:
            _missing_logged.add((key, locale))
            _log.warning("missing translation key %s (locale %s)", key, locale)
        return key
    source, entry = found
    if count is not None:
        params.setdefault("count", format_count(count, source))
    return interpolate(_select(entry, source, count), params)


def has_key(key: str, locale: str) -> bool:
    return lookup(key, locale) is not None


def format_count(count: float, locale: str) -> str:
    from babel.numbers import format_decimal

    return str(format_decimal(count, locale=babel_locale(locale)))


class Translator:
    """`t` and the formatters bound to one request's locale."""

    __slots__ = ("locale",)

    def __init__(self, locale: str) -> None:
        self.locale = locale

    def t(self, key: str, /, count: float | None = None, **params: Any) -> str:
        return t(key, self.locale, count, **params)

    def date(self, value: Any, width: Any = "medium") -> str:
        from mysoulmate.i18n.formatting import format_date

        return format_date(value, self.locale, width)

    def datetime(self, value: Any, width: Any = "medium", tz: str = "UTC") -> str:
        from mysoulmate.i18n.formatting import format_datetime

        return format_datetime(value, self.locale, width, tz)

    def number(self, value: Any) -> str:
        from mysoulmate.i18n.formatting import format_number

        return format_number(value, self.locale)

    def percent(self, value: Any) -> str:
        from mysoulmate.i18n.formatting import format_percent

        return format_percent(value, self.locale)

    def currency(self, value: Any, currency: str) -> str:
        from mysoulmate.i18n.formatting import format_currency

        return format_currency(value, currency, self.locale)

    def relative(self, moment: Any, now: Any = None) -> str:
        from mysoulmate.i18n.formatting import format_relative

        return format_relative(moment, self.locale, now=now)
