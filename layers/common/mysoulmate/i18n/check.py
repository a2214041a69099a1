"""`mysoulmate i18n check`: is every catalog complete and consistent with English and CLDR?

Errors (exit status 1): a missing or extra key, a string where English has a plural (or the
reverse), ``{{placeholders}}`` that differ from English, a plural lacking a category the
language needs or carrying one CLDR does not give it, an empty string, a malformed file, fewer
keys than the minimum. Warnings: strings identical to English that look untranslated.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from mysoulmate.i18n.catalog import LOCALES_DIR, REFERENCE, CatalogError, CatalogStore, Entry
from mysoulmate.i18n.translate import required_categories

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
MIN_KEYS = 500
# Identical to English is expected for these: brands, units, codes, language names.
_SAME_OK = re.compile(r"^(?:[A-Z0-9][A-Za-z0-9+.&'-]*|[^A-Za-z]*|OK|Email|E-mail|Premium|Plus)$")


@dataclass
class LocaleReport:
    locale: str
    keys: int = 0
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def placeholders(entry: Entry) -> set[str]:
    texts = [entry] if isinstance(entry, str) else list(entry.values())
    return {name for text in texts for name in PLACEHOLDER.findall(text)}


def _malformed(text: str) -> bool:
    """Braces left once every well-formed placeholder is removed: ``{{name}`` or ``{{ }}``."""
    rest = PLACEHOLDER.sub("", text)
    return "{{" in rest or "}}" in rest


def _texts(entry: Entry) -> list[str]:
    return [entry] if isinstance(entry, str) else list(entry.values())


def check_locale(
    locale: str, store: CatalogStore, reference: dict[str, Entry], min_keys: int
) -> LocaleReport:
    report = LocaleReport(locale)
    try:
        flat = store.get(locale).flat
    except CatalogError as exc:
        report.errors.append(str(exc))
        return report
    report.keys = len(flat)
    if len(flat) < min_keys:
        report.errors.append(f"only {len(flat)} keys; at least {min_keys} are required")
    categories = required_categories(locale)
    for key in sorted(set(reference) - set(flat)):
        report.errors.append(f"missing key {key}")
    for key in sorted(set(flat) - set(reference)):
        report.errors.append(f"extra key {key} (not in {REFERENCE})")
    for key in sorted(set(flat) & set(reference)):
        entry, source = flat[key], reference[key]
        if isinstance(entry, str) != isinstance(source, str):
            kind = "a plural" if isinstance(source, dict) else "a string"
            report.errors.append(f"{key}: must be {kind} as in {REFERENCE}")
            continue
        if any(not text.strip() for text in _texts(entry)):
            report.errors.append(f"{key}: empty string")
        if any(_malformed(text) for text in _texts(entry)):
            report.errors.append(f"{key}: malformed {{{{placeholder}}}}")
        expected, found = placeholders(source), placeholders(entry)
        if isinstance(entry, dict):
            # A form may spell the number out ("un message"): {{count}} is optional per form
            # but must appear somewhere, like every other placeholder.
            have = set(entry)
            if have - categories:
                report.errors.append(
                    f"{key}: plural categories {sorted(have - categories)} do not exist "
                    f"in {locale} (CLDR: {sorted(categories)})"
                )
            if categories - have:
                report.errors.append(
                    f"{key}: plural lacks {sorted(categories - have)} (CLDR: {sorted(categories)})"
                )
        if found != expected:
            report.errors.append(
                f"{key}: placeholders {sorted(found)} differ from {REFERENCE} {sorted(expected)}"
            )
        if (
            locale != REFERENCE
            and isinstance(entry, str)
            and entry == source
            and not _SAME_OK.match(entry)
            and len(entry) > 3
        ):
            report.warnings.append(f"{key}: identical to {REFERENCE} ({entry!r})")
    return report


def check_catalogs(
    locales: list[str], directory: Path = LOCALES_DIR, min_keys: int = MIN_KEYS
) -> list[LocaleReport]:
    store = CatalogStore(directory)
    try:
        reference = store.get(REFERENCE).flat
    except CatalogError as exc:
        return [LocaleReport(REFERENCE, errors=[str(exc)])]
    return [check_locale(locale, store, reference, min_keys) for locale in locales]


def run(locales: list[str], directory: Path = LOCALES_DIR, *, verbose: bool = False) -> int:
    """Print one line per locale (and each problem); 1 if any catalog has an error."""
    reports = check_catalogs(locales, directory)
    for report in reports:
        status = "ok" if not report.errors else f"{len(report.errors)} error(s)"
        print(f"{report.locale}: {report.keys} keys, {status}, {len(report.warnings)} warning(s)")
        for error in report.errors:
            print(f"  error: {error}")
        for warning in report.warnings if verbose else report.warnings[:5]:
            print(f"  warning: {warning}")
        if not verbose and len(report.warnings) > 5:
            print(f"  … {len(report.warnings) - 5} more warnings (--verbose lists them)")
    return 1 if any(r.errors for r in reports) else 0
