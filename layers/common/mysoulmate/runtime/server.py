"""The container and laptop shape: one FastAPI app with every router and, with the local
queue, the in-process worker that drains it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import FastAPI

from mysoulmate.api import docs, openapi
from mysoulmate.api.app_factory import create_app
from mysoulmate.core.settings import get_settings
from mysoulmate.queue.local import LocalQueue
from mysoulmate.runtime.backends import api_adapters, event_store, local_queue
from mysoulmate.runtime.media import install_media

if TYPE_CHECKING:
    from mysoulmate.runtime.forwarding import ForwardWorker
    from mysoulmate.runtime.worker import LocalWorker

# Every router of the API document (metrics included: /metrics and /api/v1/metrics are
# container and laptop only, CloudWatch on Lambda), and the docs pages that serve it.
ROUTERS = (*openapi.ROUTERS, docs.router)


@asynccontextmanager
async def _lifespan(_: FastAPI) -> AsyncIterator[None]:
    settings = get_settings()
    from mysoulmate.observability.error_tracking import install_asyncio_exception_handler
    from mysoulmate.runtime.backends import event_store

    install_asyncio_exception_handler(asyncio.get_running_loop())  # logged and reported
    # Built before serving: an unreachable or unmigrated database stops start-up here.
    event_store()
    if settings.queue_backend == "rabbitmq":
        # The queues are declared before serving (an unreachable broker stops start-up);
        # `mysoulmate worker` consumes them, in processes of its own.
        from mysoulmate.runtime.backends import message_queue

        message_queue().ping()
    workers: list[LocalWorker | ForwardWorker] = []
    if settings.queue_backend == "local" and settings.worker_enabled:
        from mysoulmate.runtime.forwarding import ForwardWorker, enqueue_hook, routes
        from mysoulmate.runtime.worker import LocalWorker

        forwarding = routes(event_store())
        FORWARD_QUEUES.clear()
        FORWARD_QUEUES.update({r.forwarder.provider.name: r.queue for r in forwarding})

        workers.append(
            LocalWorker(
                local_queue(),
                event_store(),
                batch_size=settings.worker_batch_size,
                max_batch_size=settings.worker_max_batch_size,
                poll_interval=settings.worker_poll_interval_seconds,
                forward=enqueue_hook([r.queue for r in forwarding]) if forwarding else None,
            )
        )
        workers += [
            ForwardWorker(
                route,
                batch_size=settings.worker_batch_size,
                poll_interval=settings.worker_poll_interval_seconds,
            )
            for route in forwarding
        ]
    for worker in workers:
        worker.start()
    try:
        yield
    finally:
        for worker in workers:
            worker.stop()


def create_server_app() -> FastAPI:
    from mysoulmate.observability import init_error_tracking

    init_error_tracking("container")
    register_scrape_sources()
    use_shared_rate_limits()
    install_media()  # the images router's stores (runtime/media.py)
    return create_app(*ROUTERS, adapters=api_adapters(), lifespan=_lifespan)


def use_shared_rate_limits() -> None:
    """Pods share their buckets through Redis when RATE_LIMIT_STORE=redis."""
    settings = get_settings()
    if settings.rate_limit_store == "redis":
        from mysoulmate.api.rate_limit import use_bucket_store
        from mysoulmate.storage.redis_buckets import RedisBuckets

        use_bucket_store(RedisBuckets(settings.redis_url))


# The local forward queues the running server drains (filled at start-up), for /metrics.
FORWARD_QUEUES: dict[str, LocalQueue] = {}


def register_scrape_sources() -> None:
    """Tell /metrics where the figures it reads at scrape time live (observability cannot
    import storage, the queue or the catalogs itself)."""
    from mysoulmate.analytics.active_users import active_users_by_window
    from mysoulmate.analytics.perf import perf_screens_now
    from mysoulmate.i18n.translate import catalogs
    from mysoulmate.observability.prometheus import ScrapeSources, register_sources

    def local_queue_if_used() -> LocalQueue | None:
        return local_queue() if get_settings().queue_backend == "local" else None

    def pool_stats() -> dict[str, int] | None:
        stats = getattr(event_store(), "pool_stats", None)
        return stats() if callable(stats) else None

    def catalog_counts() -> tuple[int, int]:
        store = catalogs()
        return store.hits, store.misses

    register_sources(
        ScrapeSources(
            local_queue=local_queue_if_used,
            pool_stats=pool_stats,
            store=event_store,
            active_users=active_users_by_window,
            perf_screens=perf_screens_now,
            catalog_counts=catalog_counts,
            forward_queues=lambda: dict(FORWARD_QUEUES),
        )
    )
