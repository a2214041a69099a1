"""Babel's `Locale` for our locale codes, parsed once per code.

Its own module so that `translate` (plural rules, on every localized error) and
`formatting` (dates, numbers, currencies) share it without importing each other.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from babel.core import Locale


@lru_cache(maxsize=64)
def babel_locale(locale: str) -> Locale:
    from babel.core import Locale  # imported on first use: cold start is a feature

    return Locale.parse(locale, sep="-")
