"""Per-request context every layer may need: the request id (from API Gateway when there is
one, echoed to the client) and the negotiated locale."""

from __future__ import annotations

import re
import uuid
from collections.abc import MutableMapping
from typing import Any, Protocol

_SAFE_ID = re.compile(r"^[A-Za-z0-9._:=-]{1,128}$")

Scope = MutableMapping[str, Any]


class LocaleNegotiator(Protocol):
    """Picks a supported locale from ``?lang=``, ``X-Locale`` and ``Accept-Language``."""

    def __call__(
        self, lang: str | None, x_locale: str | None, accept_language: str | None
    ) -> str: ...


# Installed by the API layer when it builds an app (`use_locale_negotiator`): core cannot
# import the i18n domain that knows how to negotiate.
_negotiator: LocaleNegotiator | None = None


def use_locale_negotiator(negotiator: LocaleNegotiator) -> None:
    global _negotiator
    _negotiator = negotiator


def resolve_request_id(scope: Scope) -> str:
    """API Gateway's id on Lambda; a client's well-formed X-Request-Id; a new UUID otherwise."""
    event = scope.get("aws.event")
    if isinstance(event, dict):
        api_id = (event.get("requestContext") or {}).get("requestId")
        if isinstance(api_id, str) and api_id:
            return api_id
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            candidate = str(value.decode("latin-1"))
            if _SAFE_ID.match(candidate):
                return candidate
            break
    return str(uuid.uuid4())


def request_id_of(scope: Scope) -> str:
    state = scope.setdefault("state", {})
    request_id = state.get("request_id")
    if not isinstance(request_id, str):
        request_id = state["request_id"] = resolve_request_id(scope)
    return request_id


def header_of(scope: Scope, name: bytes) -> str | None:
    """The first value of the request header ``name`` (lower case), as Starlette decodes it."""
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _query_lang(scope: Scope) -> str | None:
    query = scope.get("query_string", b"")
    if b"lang=" not in query:
        return None
    from urllib.parse import parse_qs

    values = parse_qs(query.decode("latin-1")).get("lang")
    return values[0] if values else None


def locale_of(scope: Scope) -> str:
    """The request's locale: ``?lang=``, ``X-Locale``, ``Accept-Language``, DEFAULT_LOCALE."""
    state = scope.setdefault("state", {})
    locale = state.get("locale")
    if not isinstance(locale, str):
        if _negotiator is None:  # no app installed one (e.g. an error outside a request)
            from mysoulmate.core.settings import get_settings

            locale = state["locale"] = get_settings().default_locale
        else:
            locale = state["locale"] = _negotiator(
                _query_lang(scope),
                header_of(scope, b"x-locale"),
                header_of(scope, b"accept-language"),
            )
    return locale
