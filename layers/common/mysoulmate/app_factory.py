"""`create_app(*routers)`: the one way any shape builds its FastAPI application.

A Lambda gets an app holding only its own group's router; the container and laptop
shapes pass every router. Middleware, error handling and docs settings are identical.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse

from mysoulmate.api.error_handlers import install_error_handlers
from mysoulmate.middleware import RequestContextMiddleware
from mysoulmate.settings import get_settings

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


def create_app(*routers: APIRouter, lifespan: Lifespan | None = None) -> FastAPI:
    settings = get_settings()
    app = FastAPI(
        title="MySoulmate platform services",
        version=settings.app_version,
        openapi_url="/api-docs.json",
        docs_url=None,
        redoc_url=None,
        default_response_class=JSONResponse,
        lifespan=lifespan,
    )
    for router in routers:
        app.include_router(router)
    install_error_handlers(app)
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
