"""Error tracking (Sentry): initialised only when SENTRY_DSN is set.

Importing this module imports no Sentry code: without SENTRY_DSN, `init_error_tracking`
returns after one environment lookup and `capture_exception` after one attribute check, so a
function that does not report errors pays nothing for `sentry_sdk` (≈ 170 ms of imports).

With a DSN, the SDK starts narrowly, with only the integrations each shape needs (the SDK's
default and auto-enabled integrations cost a Lambda ≈ 0.7-1 s of init; see
docs/observability.md), and every event, transaction and breadcrumb passes through
`scrubbing.scrub` before it leaves the process. Client errors (4xx), client disconnects and
the configured transient provider errors (SENTRY_IGNORED_ERRORS) are dropped, and errors are
grouped by a fingerprint of type, raising code and message template.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator, MutableMapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from asyncio import AbstractEventLoop

    from sentry_sdk._types import Breadcrumb, BreadcrumbHint, Event, Hint

    from mysoulmate.core.settings import Settings

Shape = Literal["lambda", "container"]

# Lambda freezes the sandbox once the response is returned: an event still queued in the
# SDK's background worker would wait for the next invocation (or be lost), so it is sent
# before answering. Errors are rare; this costs only failing requests.
LAMBDA_FLUSH_SECONDS = 2.0
# Exceptions meaning the client went away: nothing is wrong with the service.
CLIENT_DISCONNECTS = frozenset({"ClientDisconnect", "ClientDisconnected", "CancelledError"})
_PACKAGE = "mysoulmate"


class _State:
    """What the running Sentry client was started with (None: error tracking is off)."""

    config: tuple[Any, ...] | None = None
    shape: Shape = "container"
    ignored: frozenset[str] = frozenset()


def enabled() -> bool:
    return _State.config is not None


def init_error_tracking(shape: Shape) -> None:
    """Start Sentry for this process's shape when configured; a no-op otherwise.

    Idempotent: called by every Lambda handler factory and by the server app factory, it
    starts the SDK again only when the configuration changed.
    """
    if not (os.environ.get("SENTRY_DSN", "").strip() or os.environ.get("SENTRY_DSN_PARAMETER", "")):
        if _State.config is not None:
            shutdown_error_tracking()
        return
    from mysoulmate.core.settings import get_settings

    settings = get_settings()
    dsn = settings.sentry_dsn or _dsn_from_ssm(settings.sentry_dsn_parameter)
    if not dsn:
        return
    config = (
        shape,
        dsn,
        settings.sentry_traces_sample_rate,
        settings.sentry_profiles_sample_rate,
        settings.sentry_environment or settings.stage,
        settings.app_version,
        tuple(settings.sentry_ignored_errors),
    )
    if config == _State.config:
        return
    _start(shape, settings, dsn)
    _State.config = config
    _State.shape = shape
    _State.ignored = frozenset(settings.sentry_ignored_errors)


def _dsn_from_ssm(name: str) -> str:
    """On AWS the DSN lives in SSM (SENTRY_DSN_PARAMETER names it), read once at init. A
    failure leaves error tracking off and says so; it never stops the function."""
    if not name:
        return ""
    try:
        from aws_lambda_powertools.utilities.parameters import get_parameter

        value = str(get_parameter(name, decrypt=True, max_age=3600)).strip()
    except Exception as exc:  # noqa: BLE001 - any SSM/SDK failure: run without Sentry
        from mysoulmate.observability.powertools import get_logger

        get_logger().warning(
            "error tracking off: cannot read SENTRY_DSN_PARAMETER %s (%s)", name, type(exc).__name__
        )
        return ""
    from sentry_sdk.utils import BadDsn, Dsn

    try:
        Dsn(value)
    except BadDsn:
        from mysoulmate.observability.powertools import get_logger

        get_logger().warning("error tracking off: %s does not hold a Sentry DSN", name)
        return ""
    return value


def _start(shape: Shape, settings: Settings, dsn: str) -> None:
    import sentry_sdk
    from sentry_sdk.integrations.dedupe import DedupeIntegration
    from sentry_sdk.integrations.logging import LoggingIntegration

    # Logs become breadcrumbs only: the error handler logs every unhandled error *and*
    # captures it with the request's tags, so a log-made event would be a duplicate.
    integrations: list[Any] = [
        DedupeIntegration(),
        LoggingIntegration(level=logging.INFO, event_level=None),
    ]
    if shape == "lambda":
        from sentry_sdk.integrations.aws_lambda import AwsLambdaIntegration

        integrations.append(AwsLambdaIntegration())
    else:
        from sentry_sdk.integrations.atexit import AtexitIntegration
        from sentry_sdk.integrations.excepthook import ExcepthookIntegration
        from sentry_sdk.integrations.fastapi import FastApiIntegration
        from sentry_sdk.integrations.starlette import StarletteIntegration
        from sentry_sdk.integrations.stdlib import StdlibIntegration
        from sentry_sdk.integrations.threading import ThreadingIntegration

        integrations += [
            AtexitIntegration(),
            ExcepthookIntegration(),
            ThreadingIntegration(),  # the local queue's worker thread
            StdlibIntegration(),  # outgoing HTTP as breadcrumbs and spans
            StarletteIntegration(),
            FastApiIntegration(),
        ]
    sentry_sdk.init(
        dsn=dsn,
        release=settings.app_version,
        environment=settings.sentry_environment or settings.stage,
        # 0 means off, not "trace everything unsampled": None skips tracing machinery.
        traces_sample_rate=settings.sentry_traces_sample_rate or None,
        profiles_sample_rate=settings.sentry_profiles_sample_rate or None,
        default_integrations=False,
        auto_enabling_integrations=False,
        integrations=integrations,
        # Nothing personal from the SDK's integrations: no IPs or user names (the error
        # handler sets the user id itself), no cookies, no request bodies (analytics traits
        # are arbitrary personal data no key list can recognize), no local variables (a
        # secret in a local named `pw` has no marker), no SQL parameters. Headers and query
        # strings keep the SDK's denylist; `scrub` then goes over everything.
        data_collection={
            "user_info": False,
            "cookies": {"mode": "off"},
            "http_headers": {"request": {"mode": "denylist"}},
            "http_bodies": [],
            "url_query_params": {"mode": "denylist"},
            "stack_frame_variables": False,
            "database_query_data": False,
            "gen_ai": {"inputs": False, "outputs": False},
        },
        in_app_include=[_PACKAGE],
        auto_session_tracking=shape == "container",
        max_breadcrumbs=50,
        before_send=_before_send,
        before_send_transaction=_before_send_transaction,
        before_breadcrumb=_before_breadcrumb,
    )
    scope = sentry_sdk.get_global_scope()
    scope.set_tag("shape", shape)
    function = os.environ.get("AWS_LAMBDA_FUNCTION_NAME")
    if shape == "lambda" and function:
        scope.set_tag("function", function)


def shutdown_error_tracking(timeout: float = LAMBDA_FLUSH_SECONDS) -> None:
    """Send what is queued and stop the SDK (tests, and a configuration without a DSN)."""
    if _State.config is None:
        return
    import sentry_sdk

    sentry_sdk.get_client().close(timeout=timeout)
    scope = sentry_sdk.get_global_scope()
    scope.remove_tag("shape")
    scope.remove_tag("function")
    scope.set_client(None)
    _State.config = None


def flush(timeout: float = LAMBDA_FLUSH_SECONDS) -> None:
    if _State.config is None:
        return
    import sentry_sdk

    sentry_sdk.flush(timeout=timeout)


def capture_exception(
    exc: BaseException,
    *,
    asgi_scope: MutableMapping[str, Any] | None = None,
    mechanism: str = "error_handler",
    **tags: Any,
) -> str | None:
    """Report an unexpected exception (with tags such as the request id) when configured.

    With the request's ASGI scope, the event also gets its endpoint group, route, locale
    and the caller's user id (the id only). Returns the event id, None when not sent.
    """
    if _State.config is None:
        return None
    import sentry_sdk
    from sentry_sdk.utils import event_from_exception

    user: dict[str, Any] = {}
    if asgi_scope is not None:
        request_tags, user = _request_context(asgi_scope)
        for key, value in request_tags.items():
            tags.setdefault(key, value)
    event, hint = event_from_exception(
        exc,
        client_options=sentry_sdk.get_client().options,
        mechanism={"type": mechanism, "handled": False},
    )
    scope_kwargs: dict[str, Any] = {
        "tags": {key: str(value) for key, value in tags.items() if value is not None}
    }
    if user:
        scope_kwargs["user"] = user
    event_id = sentry_sdk.capture_event(event, hint=hint, **scope_kwargs)
    if _State.shape == "lambda":
        sentry_sdk.flush(timeout=LAMBDA_FLUSH_SECONDS)
    return event_id


def tag_request(request_id: str) -> None:
    """The request id on every event and transaction of this request (its isolation scope),
    not only on the errors the handler captures. Nothing when Sentry is off."""
    if _State.config is None:
        return
    import sentry_sdk

    sentry_sdk.get_isolation_scope().set_tag("request_id", request_id)


def tag_user(user_id: str) -> None:
    """The caller's id (the id only) on every event and transaction of this request."""
    if _State.config is None:
        return
    import sentry_sdk

    sentry_sdk.get_isolation_scope().set_user({"id": user_id})


def _request_context(
    asgi_scope: MutableMapping[str, Any],
) -> tuple[dict[str, str], dict[str, Any]]:
    from mysoulmate.core.request_context import locale_of, request_id_of

    tags = {"request_id": request_id_of(asgi_scope), "locale": locale_of(asgi_scope)}
    route = asgi_scope.get("route")  # FastAPI's matched APIRoute
    route_tags = getattr(route, "tags", None)
    route_path = getattr(route, "path", None)
    path = str(route_path or asgi_scope.get("path", ""))
    tags["endpoint_group"] = str(route_tags[0]) if route_tags else _group_of_path(path)
    if route_path:
        tags["route"] = f"{asgi_scope.get('method', '')} {route_path}".strip()
    principal = (asgi_scope.get("state") or {}).get("principal")
    subject = getattr(principal, "subject", None)
    return tags, ({"id": str(subject)} if subject else {})


def _group_of_path(path: str) -> str:
    """``/api/v1/<group>/…`` → group; ``/health/ready`` → health."""
    parts = [part for part in path.split("/") if part]
    if len(parts) >= 3 and parts[0] == "api":
        return parts[2]
    return parts[0] if parts else "root"


# -- asyncio ------------------------------------------------------------------------------


def install_asyncio_exception_handler(loop: AbstractEventLoop) -> None:
    """Log and report errors nobody awaited (a failed fire-and-forget task, a callback)."""
    previous = loop.get_exception_handler()

    def handle(loop: AbstractEventLoop, context: dict[str, Any]) -> None:
        # Both on first use: `scrubbing` compiles its patterns at import (cold start).
        from mysoulmate.observability.powertools import get_logger
        from mysoulmate.observability.scrubbing import scrub_text

        exc = context.get("exception")
        message = scrub_text(str(context.get("message") or "unhandled asyncio error"))
        error = exc if isinstance(exc, BaseException) else None
        get_logger().error("unhandled asyncio error: %s", message, exc_info=error)
        if isinstance(exc, Exception):
            capture_exception(exc, mechanism="asyncio", source="asyncio")
        if previous is not None:
            previous(loop, context)

    loop.set_exception_handler(handle)


# -- what leaves the process ------------------------------------------------------------------


def _before_send(event: Event, hint: Hint) -> Event | None:
    exc_info = hint.get("exc_info")
    exc = exc_info[1] if exc_info else None
    if isinstance(exc, BaseException) and noise_reason(exc, _State.ignored) is not None:
        return None
    cleaned = _clean(event)
    if isinstance(exc, BaseException) and not event.get("fingerprint"):
        cleaned["fingerprint"] = fingerprint(exc)
    return cleaned


def _before_send_transaction(event: Event, hint: Hint) -> Event | None:
    return _clean(event)


def _clean(event: Event) -> Event:
    """The event scrubbed throughout, its user reduced to the id."""
    # Sentry only: a function without a DSN never loads `scrubbing` at cold start.
    from mysoulmate.observability.scrubbing import scrub, scrub_user

    cleaned: Event = scrub(event)
    user = scrub_user(event.get("user"))
    if user:
        cleaned["user"] = user
    else:
        cleaned.pop("user", None)
    return cleaned


def _before_breadcrumb(crumb: Breadcrumb, hint: BreadcrumbHint) -> Breadcrumb | None:
    # Sentry only: a function without a DSN never loads `scrubbing` at cold start.
    from mysoulmate.observability.scrubbing import scrub

    cleaned: Breadcrumb = scrub(crumb)
    return cleaned


# -- noise and grouping -----------------------------------------------------------------------


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception and what caused it (``raise … from``, or raised while handling)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _names(exc: BaseException) -> set[str]:
    names = set()
    for cls in type(exc).__mro__:
        names.add(cls.__name__)
        names.add(f"{cls.__module__}.{cls.__qualname__}")
    code = _provider_error_code(exc)
    if code:
        names.add(code)
    return names


def _provider_error_code(exc: BaseException) -> str | None:
    """An AWS error code (botocore's ClientError carries it in ``response``)."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = (response.get("Error") or {}).get("Code")
        if isinstance(code, str):
            return code
    return None


def noise_reason(exc: BaseException, ignored: frozenset[str] = frozenset()) -> str | None:
    """Why ``exc`` is not an error worth reporting, or None when it is.

    * ``client_error``: it carries a 4xx ``status_code`` (our ApiErrors, HTTPException);
    * ``client_disconnect``: the client went away (anywhere in the cause chain);
    * ``transient``: a configured transient provider error (class name, dotted name or AWS
      error code) anywhere in the cause chain: throttling, timeouts, endpoint outages,
      which retries, alarms and metrics cover.
    """
    status = getattr(exc, "status_code", None)
    if isinstance(status, int) and 400 <= status < 500:
        return "client_error"
    for link in _chain(exc):
        names = _names(link)
        if names & CLIENT_DISCONNECTS:
            return "client_disconnect"
        if ignored and names & ignored:
            return "transient"
    return None


_VARIABLE_PARTS = (
    (re.compile(r"\[Filtered\]"), "<x>"),
    (
        re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"),
        "<id>",
    ),
    (re.compile(r"\b0x[0-9a-fA-F]+\b"), "<addr>"),
    (re.compile(r"\b[0-9a-fA-F]{16,}\b"), "<id>"),
    (re.compile(r"'[^']*'|\"[^\"]*\""), "<s>"),
    (re.compile(r"\d+(?:\.\d+)?"), "<n>"),
)


def message_template(message: str) -> str:
    """``message`` with what varies between occurrences (ids, numbers, quoted values)
    replaced, so "user 41 not found" and "user 42 not found" group together."""
    # Sentry only: a function without a DSN never loads `scrubbing` at cold start.
    from mysoulmate.observability.scrubbing import scrub_text

    text = scrub_text(message)
    for pattern, replacement in _VARIABLE_PARTS:
        text = pattern.sub(replacement, text)
    return text[:200]


def fingerprint(exc: BaseException) -> list[str]:
    """Type, where it was raised in our code, and the message template.

    Sentry's default groups by the whole stack, which splits one failure (the database is
    down) into a group per route that reached it; the innermost frame of our own code is
    where the failure is, whatever the caller.
    """
    kind = f"{type(exc).__module__}.{type(exc).__qualname__}"
    return [kind, _raised_at(exc.__traceback__), message_template(str(exc))]


def _raised_at(tb: TracebackType | None) -> str:
    innermost = "unknown"
    ours = None
    while tb is not None:
        module = str(tb.tb_frame.f_globals.get("__name__", "?"))
        innermost = f"{module}.{tb.tb_frame.f_code.co_name}"
        if module == _PACKAGE or module.startswith(_PACKAGE + "."):
            ours = innermost
        tb = tb.tb_next
    return ours or innermost
