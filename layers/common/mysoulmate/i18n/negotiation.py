"""Which supported locale a request gets: ``?lang=``, then ``X-Locale``, then
``Accept-Language`` (q-values honoured, region and script fall back to the language), then
``DEFAULT_LOCALE``. Matching itself is Babel's (`babel.core.negotiate_locale`)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

_TAG = re.compile(r"^(?:[A-Za-z]{1,8}(?:[-_][A-Za-z0-9]{1,8})*|\*)$")
MAX_HEADER_ENTRIES = 32


def parse_accept_language(header: str) -> list[str]:
    """Language tags in preference order; q=0, malformed entries and garbage are dropped.
    Ties keep the header's order (RFC 9110 §12.5.4)."""
    entries: list[tuple[float, int, str]] = []
    for index, part in enumerate(header.split(",")[:MAX_HEADER_ENTRIES]):
        tag, *params = (piece.strip() for piece in part.split(";"))
        if not tag or not _TAG.match(tag):
            continue
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = -1.0
        if 0 < quality <= 1:
            entries.append((-quality, index, tag.replace("_", "-")))
    return [tag for _, _, tag in sorted(entries)]


@lru_cache(maxsize=1024)
def _match(tag: str, supported: tuple[str, ...]) -> str | None:
    from babel.core import negotiate_locale

    if tag == "*":
        return None  # "anything": let the default decide
    # Babel tries the full tag, then its language alone (fr-CA -> fr, zh-Hans-CN -> zh).
    found = negotiate_locale([tag], list(supported), sep="-")
    return found.lower() if found else None


def match_locale(tag: str | None, supported: Sequence[str]) -> str | None:
    if not tag or len(tag) > 35 or not _TAG.match(tag.strip()):
        return None
    return _match(tag.strip().replace("_", "-"), tuple(supported))


@lru_cache(maxsize=1024)
def _from_header(header: str, supported: tuple[str, ...]) -> str | None:
    for tag in parse_accept_language(header):
        found = _match(tag, supported)
        if found:
            return found
    return None


def negotiate(
    lang: str | None,
    x_locale: str | None,
    accept_language: str | None,
    supported: Sequence[str],
    default: str,
) -> str:
    return (
        match_locale(lang, supported)
        or match_locale(x_locale, supported)
        or (_from_header(accept_language[:512], tuple(supported)) if accept_language else None)
        or default
    )


def negotiate_with_settings(
    lang: str | None, x_locale: str | None, accept_language: str | None
) -> str:
    """`negotiate` against SUPPORTED_LOCALES and DEFAULT_LOCALE (the API's negotiator)."""
    from mysoulmate.core.settings import get_settings

    settings = get_settings()
    return negotiate(
        lang, x_locale, accept_language, settings.supported_locales, settings.default_locale
    )
