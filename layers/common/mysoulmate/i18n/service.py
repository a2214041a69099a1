"""The i18n endpoints' use cases: the locale list, whole catalogs, one translated string."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, Field

from mysoulmate.core.errors import InvalidRequestError, NotFoundError
from mysoulmate.core.json_nesting import NestingScanner, NestingTooDeepError
from mysoulmate.core.settings import get_settings
from mysoulmate.i18n.catalog import REFERENCE, Catalog, CatalogError, Entry
from mysoulmate.i18n.cldr import babel_locale
from mysoulmate.i18n.translate import catalogs, has_key, required_categories, t

MAX_PARAMS = 32


class LocaleInfo(BaseModel):
    code: str
    name: str = Field(description="English name")
    nativeName: str
    completeness: float = Field(description="% of the English keys translated (all forms)")
    direction: str = Field(description="ltr or rtl")


class LocaleList(BaseModel):
    default: str
    locales: list[LocaleInfo]


class Translation(BaseModel):
    key: str
    locale: str
    count: int | float | None = None  # 3, not 3.0, when the count is whole
    text: str


def supported(locale: str, *, status: int = 404) -> str:
    """The supported locale code ``locale`` names (case-insensitive), or a 4xx naming them."""
    settings = get_settings()
    for code in settings.supported_locales:
        if code.lower() == locale.strip().lower():
            return code
    error = NotFoundError if status == 404 else InvalidRequestError
    raise error(
        code="unknown_locale",
        locale=locale,
        supported=", ".join(settings.supported_locales),
        details=[{"field": "locale", "type": "unknown_locale"}],
    )


def _complete(entry: Entry | None, source: Entry, categories: frozenset[str]) -> bool:
    if entry is None:
        return False
    if isinstance(source, str):
        return isinstance(entry, str) and bool(entry.strip())
    return isinstance(entry, dict) and all(entry.get(c, "").strip() for c in categories)


def completeness(catalog: Catalog, reference: Catalog) -> float:
    categories = required_categories(catalog.locale)
    done = sum(
        _complete(catalog.flat.get(key), source, categories)
        for key, source in reference.flat.items()
    )
    return round(100 * done / len(reference.flat), 1) if reference.flat else 0.0


def _completeness_of(code: str, reference: Catalog) -> float:
    try:
        return completeness(catalogs().get(code), reference)
    except CatalogError:
        return 0.0  # listed (it is configured) but nothing to serve yet


def list_locales() -> LocaleList:
    settings = get_settings()
    store = catalogs()
    reference = store.get(REFERENCE)
    infos = []
    for code in settings.supported_locales:
        locale = babel_locale(code)
        infos.append(
            LocaleInfo(
                code=code,
                name=str(locale.get_display_name("en")),
                nativeName=str(locale.get_display_name(locale)),
                completeness=_completeness_of(code, reference),
                direction=str(locale.text_direction),
            )
        )
    return LocaleList(default=settings.default_locale, locales=infos)


def catalog_document(locale: str, namespace: str | None) -> tuple[bytes, str, str]:
    """The catalog (or one namespace of it) as JSON bytes, its entity tag, and the code of
    the locale it is in (the Content-Language of the answer)."""
    code = supported(locale)
    catalog = catalogs().get(code)
    if namespace is None:
        return catalog.raw, f'"{catalog.etag}"', code
    if namespace not in catalog.tree:
        raise NotFoundError(
            code="unknown_namespace",
            namespace=namespace,
            namespaces=", ".join(catalog.namespaces),
            details=[{"field": "namespace", "type": "unknown_namespace"}],
        )
    body = json.dumps(catalog.tree[namespace], ensure_ascii=False).encode()
    return body, f'"{catalog.etag}-{namespace}"', code


def parse_params(raw: str | None, pairs: Mapping[str, str]) -> dict[str, Any]:
    """``params`` as a JSON object of scalars, plus ``param.<name>=value`` query pairs."""
    params: dict[str, Any] = {}
    if raw:
        try:
            NestingScanner(limit=1).feed(raw.encode("utf-8", "surrogatepass"), last=True)
        except NestingTooDeepError:
            # Checked before decoding: a deep text would exhaust the decoder's recursion.
            raise _bad_params("not a flat JSON object of strings and numbers") from None
        try:
            decoded = json.loads(raw)
        except ValueError as exc:
            raise _bad_params(f"not JSON ({exc})") from None
        if not isinstance(decoded, dict):
            raise _bad_params("not a JSON object")
        for name, value in decoded.items():
            if not isinstance(value, str | int | float | bool) or value is None:
                raise _bad_params(f"{name} is not a string or number")
            params[name] = value
    for name, value in pairs.items():
        params[name] = value
    if "count" in params:  # t()'s own argument: the plural form comes from ?count=
        raise _bad_params("count is reserved: pass it as the count query parameter")
    if len(params) > MAX_PARAMS:
        raise _bad_params(f"more than {MAX_PARAMS} params")
    return params


def _bad_params(reason: str) -> InvalidRequestError:
    return InvalidRequestError(
        code="invalid_params",
        reason=reason,
        details=[{"field": "params", "type": "invalid_params"}],
    )


def translate_one(
    key: str, locale: str, count: float | None, params: dict[str, Any]
) -> Translation:
    code = supported(locale, status=422)
    if not has_key(key, code):
        raise NotFoundError(
            code="unknown_key", key=key, details=[{"field": "key", "type": "unknown_key"}]
        )
    shown = int(count) if count is not None and float(count).is_integer() else count
    return Translation(key=key, locale=code, count=shown, text=t(key, code, count, **params))
