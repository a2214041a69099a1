"""`create_app(*routers, adapters=...)`: the one way any shape builds its FastAPI application.

A Lambda gets an app holding only its own group's router; the container and laptop
shapes pass every router. Middleware, error handling and docs settings are identical. The
composition root (`mysoulmate.runtime`) passes the adapter factories it built from settings.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse

from mysoulmate.api.dependencies import Adapters, provide_adapters
from mysoulmate.api.error_handlers import install_error_handlers
from mysoulmate.api.middleware import RequestContextMiddleware
from mysoulmate.api.request_events import INGEST_ROUTES
from mysoulmate.core.request_context import use_locale_negotiator
from mysoulmate.core.settings import get_settings
from mysoulmate.i18n.negotiation import negotiate_with_settings

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


def create_app(
    *routers: APIRouter, adapters: Adapters | None = None, lifespan: Lifespan | None = None
) -> FastAPI:
    settings = get_settings()
    if adapters is not None:
        provide_adapters(adapters)
    use_locale_negotiator(negotiate_with_settings)
    app = FastAPI(
        title="MySoulmate platform services",
        version=settings.app_version,
        openapi_url=None,  # the docs router serves the whole API's document (api/docs.py)
        docs_url=None,
        redoc_url=None,
        default_response_class=JSONResponse,
        lifespan=lifespan,
        # Traces and metrics go through Powertools, X-Ray and Sentry; FastAPI's own
        # OpenTelemetry hooks would otherwise look for providers on every request (~3 µs).
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    for router in routers:
        app.include_router(router)
    install_error_handlers(app)
    if any(getattr(r, "path", None) in INGEST_ROUTES for router in routers for r in router.routes):
        # Loaded only by the apps that ingest (its auth and rate limits are not theirs).
        from mysoulmate.api.fast_ingest import FastIngest, fast_routes

        fast = fast_routes(routers)
        if fast:  # innermost: CORS and the request context wrap it as they wrap the routes
            app.add_middleware(FastIngest, routes=fast)
    if settings.cors_allow_origins:
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_allow_origins,
            allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type", "X-Request-Id", "Accept-Language"],
            expose_headers=["X-Request-Id"],
            max_age=600,
        )
    # Added last so it wraps everything, CORS preflights and error responses included.
    app.add_middleware(RequestContextMiddleware)
    return app
