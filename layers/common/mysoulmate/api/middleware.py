"""Shared ASGI middleware: request id, locale, body size limit, secure response headers, and
per-request timing (the ``Requests`` and ``Latency`` signals by route template).

Written as plain ASGI (not BaseHTTPMiddleware) because it runs on every request of every
shape; the pure form adds microseconds, not a task and a stream copy.
"""

from __future__ import annotations

from time import perf_counter

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mysoulmate.api import request_events
from mysoulmate.api.error_handlers import error_body
from mysoulmate.core.errors import ApiError
from mysoulmate.core.json_nesting import NestingScanner
from mysoulmate.core.request_context import locale_of, request_id_of
from mysoulmate.observability.error_tracking import tag_request
from mysoulmate.observability.process_logs import log_request
from mysoulmate.observability.signal_catalog import UNMATCHED_ROUTE
from mysoulmate.observability.signals import count, http_request

SECURE_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"strict-transport-security", b"max-age=63072000; includeSubDomains"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
)
# JSON APIs load nothing; pages that need more (Swagger UI) set their own policy.
API_CSP = (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'")
NO_STORE = (b"cache-control", b"no-store")
# API Gateway caps payloads at 10 MB; our largest valid body is far smaller. Refusing early
# keeps one client from making a container buffer arbitrary amounts of memory.
MAX_BODY_BYTES = 1024 * 1024


class BodyTooLargeError(ApiError):
    status_code = 413
    code = "payload_too_large"

    def __init__(self, path: str) -> None:
        super().__init__(limit=MAX_BODY_BYTES)
        self.status_code = too_large_status(path)


def too_large_status(path: str) -> int:
    """413, except on Segment's API, which answers an oversized request with 400 (the
    stock SDKs treat 4xx other than 429 alike: drop the batch, do not retry)."""
    return 400 if path.startswith("/v1/") else 413


class RequestContextMiddleware:
    """Assigns the request id and stamps it, plus the secure headers, on every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = perf_counter()
        status = 500  # unless a response starts: an exception escaping us becomes a 500
        try:
            status = await self._handle(scope, receive, send)
        finally:
            seconds = perf_counter() - started
            route = route_template(scope)
            http_request(route, scope["method"], status, seconds)
            log_request(scope["method"], route, status, seconds, request_id_of(scope))
        if request_events.wanted(scope, route):  # after the response: TRACK_API_REQUESTS
            await request_events.record(scope, route, status, seconds)

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> int:
        """Serve the request; return the status sent (500 when none was)."""
        request_text = request_id_of(scope)
        tag_request(request_text)
        request_id = request_text.encode("latin-1")
        locale = locale_of(scope)
        status = 500

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", ()))
                present = {name.lower() for name, _ in headers}
                if b"x-request-id" not in present:
                    headers.append((b"x-request-id", request_id))
                headers.extend(h for h in SECURE_HEADERS if h[0] not in present)
                for default in (API_CSP, NO_STORE):
                    if default[0] not in present:
                        headers.append(default)
                # Messages (errors at least) depend on the negotiated language; an image does
                # not, and a Vary on the language would split every CDN cache of it.
                if not (status < 400 and _is_image(headers)):
                    if b"content-language" not in present:
                        headers.append((b"content-language", locale.encode("latin-1")))
                    headers = _vary_on_language(headers)
                message["headers"] = headers
            await send(message)

        if _declared_length(scope) > MAX_BODY_BYTES:
            too_large = error_body(
                "payload_too_large", request_id.decode(), None, locale, limit=MAX_BODY_BYTES
            )
            count("Errors", code="payload_too_large", exception=BodyTooLargeError.__name__)
            status_code = too_large_status(scope.get("path", ""))
            await JSONResponse(too_large, status_code=status_code)(
                scope, receive, send_with_headers
            )
            return status
        limited = _limited(receive, scope.get("path", ""), is_encoded(scope))
        await self.app(scope, limited, send_with_headers)
        return status


def route_template(scope: Scope) -> str:
    """The matched route's path template (``/api/v1/analytics/user/{userId}``), never the raw
    path: label values stay bounded. Requests no route matched share one fixed value."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED_ROUTE


def _is_image(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(
        name.lower() == b"content-type" and value.lower().startswith(b"image/")
        for name, value in headers
    )


def _vary_on_language(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    for index, (name, value) in enumerate(headers):
        if name.lower() == b"vary":
            if b"accept-language" not in value.lower() and value.strip() != b"*":
                headers[index] = (name, value + b", Accept-Language")
            return headers
    headers.append((b"vary", b"Accept-Language"))
    return headers


def _declared_length(scope: Scope) -> int:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            return int(value) if value.isdigit() else 0
    return 0


def is_encoded(scope: Scope) -> bool:
    """A compressed body (``Content-Encoding: gzip``): its route scans the decoded JSON."""
    for name, value in scope.get("headers", ()):
        if name == b"content-encoding":
            return value.strip().lower() not in (b"", b"identity")
    return False


def _limited(receive: Receive, path: str, encoded: bool) -> Receive:
    """Count body bytes as they arrive (chunked bodies declare no length) and refuse JSON
    nested deeper than any decoder should be asked to recurse (compressed bodies are
    scanned by their route once decoded)."""
    received = 0
    nesting = NestingScanner()

    async def receive_limited() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            body = message.get("body", b"")
            received += len(body)
            if received > MAX_BODY_BYTES:
                raise BodyTooLargeError(path)
            if not encoded:
                nesting.feed(body, last=not message.get("more_body", False))
        return message

    return receive_limited
