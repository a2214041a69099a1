"""The container and laptop shape: one FastAPI app with every router and, with the local
queue, the in-process worker that drains it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from mysoulmate.api import analytics, health, i18n, metrics
from mysoulmate.app_factory import create_app
from mysoulmate.settings import get_settings

# metrics: /metrics and /api/v1/metrics, container and laptop only (CloudWatch on Lambda).
ROUTERS = (health.router, analytics.router, i18n.router, metrics.router)


@asynccontextmanager
async def _lifespan(_: FastAPI) -> AsyncIterator[None]:
    settings = get_settings()
    from mysoulmate.backends import event_store
    from mysoulmate.observability.error_tracking import install_asyncio_exception_handler

    install_asyncio_exception_handler(asyncio.get_running_loop())  # logged and reported
    # Built before serving: an unreachable or unmigrated database stops start-up here.
    event_store()
    worker = None
    if settings.queue_backend == "local" and settings.worker_enabled:
        from mysoulmate.backends import local_queue
        from mysoulmate.worker import LocalWorker

        worker = LocalWorker(
            local_queue(),
            event_store(),
            batch_size=settings.worker_batch_size,
            poll_interval=settings.worker_poll_interval_seconds,
        )
        worker.start()
    try:
        yield
    finally:
        if worker is not None:
            worker.stop()


def create_server_app() -> FastAPI:
    from mysoulmate.observability import init_error_tracking

    init_error_tracking("container")
    return create_app(*ROUTERS, lifespan=_lifespan)
