"""The one place where any error becomes an HTTP response.

Every error leaves the API in the same envelope:
``{"error": {"code", "message", "details", "requestId"}}``. Routes and domain code raise
`mysoulmate.core.errors.ApiError` subclasses; nothing else builds error responses. Messages come
from the catalogs (``errors.<code>``, ``validation.<type>``) in the request's locale.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse

from mysoulmate.core.errors import ApiError
from mysoulmate.core.request_context import locale_of, request_id_of
from mysoulmate.i18n.translate import has_key, t
from mysoulmate.observability.signals import count

Handler = Callable[[Request, Exception], Awaitable[JSONResponse]]
ERROR_CODE_KEY = "mysoulmate.error_code"  # the scope key of the answered error code


def error_body(
    code: str, request_id: str, details: Any = None, lang: str = "en", /, **params: Any
) -> dict[str, Any]:
    """Positional-only, so a message may have params named like these (e.g. ``locale``).

    A ``reason_key`` param names a catalog phrase, translated into ``reason`` first (the
    part of a message that says what exactly was wrong, in the client's language too)."""
    reason_key = params.pop("reason_key", None)
    if isinstance(reason_key, str):
        params["reason"] = t(reason_key, lang)
    return {
        "error": {
            "code": code,
            "message": t(f"errors.{code}", lang, **params),
            "details": details,
            "requestId": request_id,
        }
    }


def error_response(
    request: Request, status_code: int, code: str, details: Any = None, /, **params: Any
) -> JSONResponse:
    request_id = request_id_of(request.scope)
    request.scope[ERROR_CODE_KEY] = code  # for the Errors signal (see _counted)
    body = error_body(code, request_id, details, locale_of(request.scope), **params)
    # Set here too: a 500 is sent by Starlette's outermost middleware, outside ours.
    return JSONResponse(body, status_code=status_code, headers={"X-Request-Id": request_id})


def validation_details(errors: Sequence[Any], locale: str) -> list[dict[str, Any]]:
    """Pydantic's errors reduced to what a client needs: where, what, a stable type and a
    message in the client's language (pydantic's English only for a type we don't know)."""
    details = []
    for err in errors:
        loc = [str(part) for part in err.get("loc", ()) if part != "body"]
        kind = err.get("type", "value_error")
        constraint = {k: v for k, v in (err.get("ctx") or {}).items() if _is_json_scalar(v)}
        key = f"validation.{kind}"
        item: dict[str, Any] = {
            "field": ".".join(loc) or "body",
            "type": kind,
            "message": _message(key, locale, kind, constraint)
            if has_key(key, locale)
            else err.get("msg", ""),
        }
        if constraint:
            item["constraint"] = constraint
        details.append(item)
    return details


# Validation messages whose noun agrees with a number (CLDR plural rules): the constraint
# that is the count. "at least 1 character", "au moins 2 caractères".
_PLURAL_COUNT = {
    "string_too_short": "min_length",
    "string_too_long": "max_length",
    "too_short": "min_length",
    "too_long": "max_length",
    "too_many_keys": "max_keys",
    "nesting_too_deep": "max_depth",
}


def _message(key: str, locale: str, kind: str, constraint: dict[str, Any]) -> str:
    count = constraint.get(_PLURAL_COUNT.get(kind, ""))
    if isinstance(count, int | float) and not isinstance(count, bool):
        return t(key, locale, count, **constraint)
    return t(key, locale, **constraint)


def _is_json_scalar(value: object) -> bool:
    return isinstance(value, str | int | float | bool) or value is None


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    response = error_response(request, exc.status_code, exc.code, exc.details, **exc.params)
    response.headers.update(exc.headers)
    return response


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    if any(err.get("type") == "json_invalid" for err in errors):
        return error_response(request, 400, "invalid_json")
    details = validation_details(errors, locale_of(request.scope))
    fields = ", ".join(d["field"] for d in details)
    return error_response(request, 422, "validation_error", details, fields=fields)


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
}


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if isinstance(exc.__cause__, ApiError):
        # FastAPI turns any failure while reading the body into a generic 400; keep ours.
        return await _api_error(request, exc.__cause__)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    response = error_response(request, exc.status_code, code, status=exc.status_code)
    response.headers.update(getattr(exc, "headers", None) or {})
    if exc.status_code == 405:
        # Starlette names only the first route of the path; the path may have several.
        response.headers["Allow"] = ", ".join(_allowed_methods(request))
    return response


def _allowed_methods(request: Request) -> list[str]:
    from starlette.routing import Match, Route

    methods: set[str] = set()
    for route in request.app.routes:
        if isinstance(route, Route) and route.methods:
            match, _ = route.matches({**request.scope, "method": "GET"})
            if match is not Match.NONE:
                methods |= route.methods
    return sorted(methods)


async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
    from mysoulmate.observability import capture_exception, get_logger

    request_id = request_id_of(request.scope)
    get_logger().exception("unhandled error", extra={"request_id": request_id})
    capture_exception(exc, asgi_scope=request.scope, request_id=request_id)
    response = error_response(request, 500, "internal_error")
    # The server drops the connection after an unhandled error: say so, so that a client
    # reading keep-alive connections sees a clean close, not a reset.
    response.headers["Connection"] = "close"
    return response


def _counted(handler: Handler) -> Handler:
    """Count every error response by its code and the exception type behind it."""

    async def counted(request: Request, exc: Exception) -> JSONResponse:
        response = await handler(request, exc)
        code = request.scope.get(ERROR_CODE_KEY, "unknown")
        count("Errors", code=code, exception=type(exc).__name__)
        return response

    return counted


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _counted(_api_error))
    app.add_exception_handler(RequestValidationError, _counted(_validation_error))
    app.add_exception_handler(StarletteHTTPException, _counted(_http_error))
    app.add_exception_handler(Exception, _counted(_unhandled))


def localized_rejections(rejections: Sequence[Any], locale: str) -> list[dict[str, Any]]:
    """The messages of a batch that were not queued (`analytics.segment.Rejection`), each
    with its code and a message in the client's language, as the error envelope has."""
    localized = []
    for rejection in rejections:
        item: dict[str, Any] = {"index": rejection.index, "code": rejection.code}
        if rejection.errors is not None:
            details = validation_details(rejection.errors, locale)
            fields = ", ".join(d["field"] for d in details)
            item["message"] = t("errors.validation_error", locale, fields=fields)
            item["details"] = details
        else:
            item["message"] = t(f"errors.{rejection.code}", locale, **rejection.params)
        localized.append(item)
    return localized
