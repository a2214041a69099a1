"""The accepted path of `POST /api/v1/analytics/track` and `/identify` without FastAPI's
routing, dependency solving and response model: issue 18's ingest goals are ratios to a bare
route, and those three were a third of a track request's CPU.

The middleware sits inside `RequestContextMiddleware` (and CORS), so request ids, headers,
logs and metrics are the app's own. It does what the route's dependencies and body do, in the
same order, and steps aside for anything else:

* **Before anything changes** (body not JSON, no valid token, the model refuses the body, an
  override installed by a test): the request goes to the app as it came, the body replayed,
  and the app answers it, errors and their wording included. Nothing was taken or queued yet,
  so doing it twice changes nothing.
* **After** (the rate limit refuses, the queue fails): the exception is answered by the app's
  own exception handler for it, as the app's `ExceptionMiddleware` would.

`tests/integration/test_fast_ingest.py` sends the same requests to both paths and compares
status, headers and bodies byte for byte. A route whose dependencies are no longer exactly
the ones replayed here is not taken over (`fast_routes`), and a test names it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mysoulmate.analytics import service
from mysoulmate.api import rate_limit
from mysoulmate.api.auth import current_principal, sign_in, verified_caller
from mysoulmate.api.dependencies import get_queue
from mysoulmate.api.middleware import is_encoded
from mysoulmate.api.request_events import INGEST_ROUTES
from mysoulmate.api.strict_query import reject_unknown_query
from mysoulmate.core.request_context import header_of, request_id_of

# The ingest routes' dependencies, every one replayed below; a route with any other keeps
# FastAPI's path.
REPLAYED: frozenset[Callable[..., Any]] = frozenset(
    {reject_unknown_query, rate_limit.limit_ingest, current_principal, get_queue}
)


@dataclass(frozen=True)
class FastRoute:
    route: APIRoute  # put in the scope, as the router would (metrics and logs name it)
    model: type[BaseModel]  # the body's request model


def fast_routes(routers: Sequence[APIRouter]) -> dict[str, FastRoute]:
    """The ingest routes of ``routers`` this path can take over, by path.

    The routers' own routes, which the app puts in the scope: their dependencies include
    the router's (`create_app` includes routers without adding any). Not the app's route
    contexts: listing those makes FastAPI build every route's app, which it otherwise does
    on first use (60 ms of a Lambda's init)."""
    found: dict[str, FastRoute] = {}
    for route in (route for router in routers for route in router.routes):
        if not isinstance(route, APIRoute) or route.path not in INGEST_ROUTES:
            continue
        model = route.body_field.field_info.annotation if route.body_field else None
        if (
            route.methods == {"POST"}
            and _dependencies(route) == REPLAYED
            and isinstance(model, type)
            and issubclass(model, BaseModel)
        ):
            found[route.path] = FastRoute(route, model)
    return found


def _dependencies(route: APIRoute) -> set[Callable[..., Any]]:
    calls: set[Callable[..., Any]] = set()
    pending = list(route.dependant.dependencies)
    while pending:
        dependant = pending.pop()
        if dependant.call is not None:
            calls.add(dependant.call)
        pending.extend(dependant.dependencies)
    return calls


class FastIngest:
    def __init__(self, app: ASGIApp, routes: Mapping[str, FastRoute]) -> None:
        self.app = app
        self.routes = dict(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        fast = self.routes.get(scope["path"]) if scope["type"] == "http" else None
        if (
            fast is None
            or scope["method"] != "POST"
            or scope.get("root_path")  # mounted below a prefix: the router strips it
            or not _plain_json(scope)
            or scope["app"].dependency_overrides  # a test swapped an adapter: FastAPI knows it
        ):
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        try:
            body = await request.body()
        except Exception as exc:  # noqa: BLE001 - FastAPI turns any of them into a 400
            # FastAPI's words for any failure while reading (the handler names our cause).
            error = HTTPException(status_code=400, detail="There was an error parsing the body")
            error.__cause__ = exc
            await _answer_error(request, send, error)
            return
        replay = _replaying(body, receive)
        try:
            payload = fast.model.model_validate(json.loads(body))
            caller = verified_caller(scope)
        except Exception:  # noqa: BLE001 - nothing changed yet: the app answers it
            await self.app(scope, replay, send)  # the app says what is wrong
            return
        # As the router and the route's dependencies leave the scope.
        scope["route"], scope["endpoint"], scope["path_params"] = (
            fast.route,
            fast.route.endpoint,
            {},
        )
        sign_in(scope, caller)
        try:
            headers = await rate_limit.take("ingest", "user:" + caller.subject)
            accepted = await service.accept(
                payload,  # type: ignore[arg-type]  # the route's own model (fast_routes)
                caller,
                request_id_of(scope),
                await get_queue(),
            )
        except Exception as exc:  # noqa: BLE001 - answered by its handler, or re-raised
            await _answer_error(request, send, exc)
            return
        response = JSONResponse(accepted.model_dump(mode="json", by_alias=True), status_code=202)
        response.headers.update(headers)
        await response(scope, replay, send)


def _plain_json(scope: Scope) -> bool:
    """A JSON body as is (not compressed): the only kind taken here."""
    content_type = (header_of(scope, b"content-type") or "").partition(";")[0]
    return content_type.strip().lower() == "application/json" and not is_encoded(scope)


def _replaying(body: bytes, receive: Receive) -> Receive:
    """``receive`` with the already read body given once more, first."""
    pending = True

    async def replay() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _answer_error(request: Request, send: Send, exc: Exception) -> None:
    """Answer ``exc`` with the app's handler for it (looked up by class, as Starlette's
    `ExceptionMiddleware` does); re-raised when only the server's last resort handles it."""
    handlers: dict[Any, Any] = request.app.exception_handlers
    handler = next(
        (
            handlers[kind]
            for kind in type(exc).__mro__
            if kind is not Exception and kind in handlers
        ),
        None,
    )
    if handler is None:
        raise exc
    response = await handler(request, exc)
    await response(request.scope, request.receive, send)
