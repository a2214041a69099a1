"""Translations and formatting: CLDR plurals, fallbacks, interpolation, negotiation and
Babel-exact formatting in every supported locale."""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from babel import dates, numbers
from babel.core import Locale
from mysoulmate.i18n import formatting
from mysoulmate.i18n.catalog import CatalogStore
from mysoulmate.i18n.check import check_catalogs
from mysoulmate.i18n.negotiation import negotiate, parse_accept_language
from mysoulmate.i18n.translate import Translator, catalogs, interpolate, t

LOCALES = ("en", "fr", "es", "de", "it", "pt", "ja", "zh")
COUNTS = (0, 1, 2, 5, 21, 1_000_000)
# CLDR's answer for COUNTS, written out by hand (not computed with Babel) so the test can fail.
EXPECTED_CATEGORIES = {
    "en": ("other", "one", "other", "other", "other", "other"),
    "de": ("other", "one", "other", "other", "other", "other"),
    "fr": ("one", "one", "other", "other", "other", "many"),
    "pt": ("one", "one", "other", "other", "other", "many"),
    "es": ("other", "one", "other", "other", "other", "many"),
    "it": ("other", "one", "other", "other", "other", "many"),
    "ja": ("other",) * 6,
    "zh": ("other",) * 6,
}
PLURAL_KEY = "chat.messagesUnread"


@pytest.mark.parametrize("locale", LOCALES)
def test_plural_selection_matches_cldr(locale: str) -> None:
    forms = catalogs().get(locale).flat[PLURAL_KEY]
    assert isinstance(forms, dict)
    for count, category in zip(COUNTS, EXPECTED_CATEGORIES[locale], strict=True):
        text = t(PLURAL_KEY, locale, count=count)
        number = numbers.format_decimal(count, locale=Locale.parse(locale))
        assert text == interpolate(forms[category], {"count": number}), (locale, count)


def test_count_is_formatted_for_the_locale() -> None:
    assert t(PLURAL_KEY, "en", count=1_000_000) == "1,000,000 unread messages"
    assert "1\u202f000\u202f000" in t(PLURAL_KEY, "fr", count=1_000_000)  # narrow no-break space


def test_interpolation_keeps_unknown_placeholders_visible() -> None:
    assert interpolate("Hi {{name}}, {{ other }}", {"name": "Ava"}) == "Hi Ava, {{ other }}"


def test_fallback_region_to_language_to_default_to_key(caplog: pytest.LogCaptureFixture) -> None:
    assert t("common.save", "pt-BR") == t("common.save", "pt")
    assert t("common.save", "xx") == t("common.save", "en")
    with caplog.at_level(logging.WARNING, logger="mysoulmate.i18n"):
        assert t("no.such.key", "fr") == "no.such.key"
        assert t("no.such.key", "fr") == "no.such.key"
    assert [r.getMessage() for r in caplog.records].count(
        "missing translation key no.such.key (locale fr)"
    ) == 1


def test_translator_binds_a_locale_to_t_and_the_formatters() -> None:
    fr = Translator("fr")
    assert fr.t("common.save") == t("common.save", "fr")
    assert fr.currency(1234.5, "EUR") == "1\u202f234,50\u00a0€"
    assert fr.relative(timedelta(hours=-3)) == "il y a 3 heures"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("fr-CA,fr;q=0.9,en;q=0.8", "fr"),
        ("pt-BR", "pt"),
        ("zh-Hans-CN,zh;q=0.9", "zh"),
        ("zh-TW", "zh"),
        ("de;q=0.2, it;q=0.9", "it"),
        ("ko, ja;q=0.5", "ja"),
        ("ko, *;q=0.5", "en"),
        ("*", "en"),
        ("es;q=0, fr;q=0.1", "fr"),
        ("en-US;q=0.8, es-419", "es"),
        ("garbage;;;q=x, ,, de", "de"),
        ("😀, de-DE;q=abc, it;q=1.5", "en"),
        ("", "en"),
        ("EN-gb", "en"),
        ("ja_JP", "ja"),
    ],
)
def test_accept_language_negotiation(header: str, expected: str) -> None:
    assert negotiate(None, None, header, LOCALES, "en") == expected


def test_query_beats_header_beats_accept_language() -> None:
    assert negotiate("de", "fr", "ja", LOCALES, "en") == "de"
    assert negotiate(None, "fr", "ja", LOCALES, "en") == "fr"
    assert negotiate("xx", "fr-FR", "ja", LOCALES, "en") == "fr"  # unsupported ?lang= ignored
    assert negotiate(None, None, None, LOCALES, "es") == "es"


def test_accept_language_honours_q_values_and_ties_keep_order() -> None:
    assert parse_accept_language("a;q=0.5, b, c;q=0.5, d;q=0") == ["b", "a", "c"]


MOMENT = datetime(2026, 1, 31, 15, 4, 5, tzinfo=UTC)


@pytest.mark.parametrize("locale", LOCALES)
def test_formatting_is_babels_cldr_output(locale: str) -> None:
    loc = Locale.parse(locale)
    assert formatting.format_date(MOMENT.date(), locale) == dates.format_date(
        MOMENT.date(), "medium", locale=loc
    )
    assert formatting.format_datetime(MOMENT, locale, "short") == dates.format_datetime(
        MOMENT, "short", tzinfo=dates.get_timezone("UTC"), locale=loc
    )
    assert formatting.format_time(MOMENT, locale) == dates.format_time(
        MOMENT, "short", tzinfo=dates.get_timezone("UTC"), locale=loc
    )
    assert formatting.format_number(1234567.891, locale) == numbers.format_decimal(
        1234567.891, locale=loc
    )
    assert formatting.format_percent(0.256, locale) == numbers.format_percent(0.256, locale=loc)
    assert formatting.format_currency(1234.5, "eur", locale) == numbers.format_currency(
        1234.5, "EUR", locale=loc
    )
    for delta in (timedelta(hours=-3), timedelta(days=2)):
        assert formatting.format_relative(delta, locale) == dates.format_timedelta(
            delta, add_direction=True, threshold=0.85, locale=loc
        )


@pytest.mark.parametrize(
    ("locale", "day", "money", "ago", "ahead"),
    [
        ("en", "Jan 31, 2026", "€1,234.50", "3 hours ago", "in 2 days"),
        ("de", "31.01.2026", "1.234,50\u00a0€", "vor 3 Stunden", "in 2 Tagen"),
        ("ja", "2026/01/31", "€1,234.50", "3 時間前", "2 日後"),
        ("zh", "2026年1月31日", "€1,234.50", "3小时前", "2天后"),
        ("es", "31 ene 2026", "1234,50\u00a0€", "hace 3 horas", "dentro de 2 días"),
    ],
)
def test_formatting_known_cldr_strings(
    locale: str, day: str, money: str, ago: str, ahead: str
) -> None:
    assert formatting.format_date(date(2026, 1, 31), locale) == day
    assert formatting.format_currency(1234.5, "EUR", locale).replace(".", "") == money.replace(
        ".", ""
    )
    assert formatting.format_relative(MOMENT - timedelta(hours=3), locale, now=MOMENT) == ago
    assert formatting.format_relative(MOMENT + timedelta(days=2), locale, now=MOMENT) == ahead


def test_every_catalog_passes_the_check() -> None:
    reports = check_catalogs(list(LOCALES))
    assert {r.locale: r.errors for r in reports} == {locale: [] for locale in LOCALES}
    assert all(r.keys >= 500 for r in reports)
    keys = {frozenset(catalogs().get(locale).flat) for locale in LOCALES}
    assert len(keys) == 1  # identical key sets


def _write(directory: Path, locale: str, tree: dict[str, object]) -> None:
    (directory / f"{locale}.json").write_text(json.dumps(tree, ensure_ascii=False))


def test_the_check_reports_each_kind_of_problem(tmp_path: Path) -> None:
    _write(
        tmp_path,
        "en",
        {
            "a": {
                "hello": "Hello {{name}}",
                "n": {"one": "{{count}} item", "other": "{{count}} items"},
                "gone": "Gone",
                "same": "Same sentence here",
            }
        },
    )
    _write(
        tmp_path,
        "fr",
        {
            "a": {
                "hello": "Bonjour {{nom}}",
                "n": {"one": "{{count}} élément", "few": "x", "other": "{{count}} éléments"},
                "same": "Same sentence here",
                "extra": "",
            }
        },
    )
    (report,) = check_catalogs(["fr"], tmp_path, min_keys=1)
    text = "\n".join(report.errors)
    assert "missing key a.gone" in text
    assert "extra key a.extra" in text
    assert "a.hello: placeholders ['nom'] differ from en ['name']" in text
    assert "plural categories ['few'] do not exist in fr" in text
    assert "a.n: plural lacks ['many']" in text
    assert "a.extra" in text
    assert report.warnings == ["a.same: identical to en ('Same sentence here')"]


def test_an_edited_catalog_is_picked_up_without_a_restart_in_development(tmp_path: Path) -> None:
    _write(tmp_path, "en", {"a": {"b": "first"}})
    store = CatalogStore(tmp_path, reload=True)
    assert store.get("en").flat["a.b"] == "first"
    _write(tmp_path, "en", {"a": {"b": "second"}})
    os.utime(tmp_path / "en.json", ns=(1, 10**18))  # a new mtime, however fast the write
    assert store.get("en").flat["a.b"] == "second"
    cached = CatalogStore(tmp_path, reload=False)
    first = cached.get("en")
    _write(tmp_path, "en", {"a": {"b": "third"}})
    assert cached.get("en") is first  # production: loaded once per process
