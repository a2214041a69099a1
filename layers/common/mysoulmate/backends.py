"""Builds the storage and queue adapters that settings choose, once per process.

Adapters import their drivers (boto3, psycopg, sqlite3) only when chosen, so a function pays at
cold start only for the backend it actually uses.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any

from mysoulmate.settings import get_settings

if TYPE_CHECKING:
    from mysoulmate.queue.base import MessageQueue
    from mysoulmate.queue.local import LocalQueue
    from mysoulmate.storage.base import EventStore


def aws_client(service: str) -> Any:
    """A boto3 client with the region and (for tests, LocalStack-style setups) endpoint."""
    import boto3
    from botocore.config import Config

    settings = get_settings()
    return boto3.client(  # type: ignore[call-overload]
        service,
        region_name=settings.aws_region,
        endpoint_url=settings.aws_endpoint_url,
        config=Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=3),
    )


@lru_cache(maxsize=1)
def event_store() -> EventStore:
    settings = get_settings()
    if settings.storage_backend == "dynamodb":
        from mysoulmate.storage.dynamodb import DynamoEventStore

        return DynamoEventStore(
            settings.events_table,
            aws_client("dynamodb"),
            retention_days=settings.event_retention_days,
        )
    if settings.storage_backend == "postgres":
        # psycopg is imported here only: the other backends never pay for it at cold start.
        from mysoulmate import concurrency
        from mysoulmate.storage.postgres import PostgresEventStore
        from mysoulmate.storage.postgres_connection import conninfo

        # Lambda serves one request per process: one reused connection, no pool threads.
        return PostgresEventStore(
            conninfo(settings),
            pool_size=None if concurrency.ON_LAMBDA else settings.database_pool_size,
        )
    from mysoulmate.storage.sqlite import SqliteEventStore

    return SqliteEventStore(settings.data_dir / "analytics.db")


@lru_cache(maxsize=1)
def local_queue() -> LocalQueue:
    from mysoulmate.queue.local import LocalQueue

    settings = get_settings()
    return LocalQueue(
        settings.data_dir / "queue.db",
        visibility_timeout=settings.queue_visibility_timeout_seconds,
        max_receive_count=settings.queue_max_receive_count,
    )


@lru_cache(maxsize=1)
def message_queue() -> MessageQueue:
    settings = get_settings()
    if settings.queue_backend == "sqs":
        from mysoulmate.queue.sqs import SqsQueue

        return SqsQueue(settings.events_queue_url, aws_client("sqs"))
    return local_queue()


def reset_backends() -> None:
    """Forget built adapters and settings (tests switch configuration between cases)."""
    event_store.cache_clear()
    local_queue.cache_clear()
    message_queue.cache_clear()
    get_settings.cache_clear()
