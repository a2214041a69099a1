"""Builds the storage and queue adapters that settings choose, once per process.

Adapters import their drivers (boto3, psycopg, sqlite3) only when chosen, so a function pays at
cold start only for the backend it actually uses.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any

from mysoulmate.core.settings import get_settings
from mysoulmate.storage.aws import aws_client

if TYPE_CHECKING:
    from mysoulmate.analytics.gdpr import ErasureHook
    from mysoulmate.analytics.ports import EventStore, MessageQueue, SourceStore
    from mysoulmate.api.dependencies import Adapters
    from mysoulmate.providers.ports import ForwardLedger
    from mysoulmate.queue.local import LocalQueue


@lru_cache(maxsize=1)
def event_store() -> EventStore:
    settings = get_settings()
    if settings.storage_backend == "dynamodb":
        from mysoulmate.storage.dynamodb.store import DynamoEventStore

        return DynamoEventStore(
            settings.events_table,
            aws_client("dynamodb"),
            retention_days=settings.event_retention_days,
        )
    if settings.storage_backend == "postgres":
        # psycopg is imported here only: the other backends never pay for it at cold start.
        from mysoulmate.core import concurrency
        from mysoulmate.storage.postgres.connection import conninfo
        from mysoulmate.storage.postgres.store import PostgresEventStore

        # Lambda serves one request per process: one reused connection, no pool threads.
        return PostgresEventStore(
            conninfo(settings),
            pool_size=None if concurrency.ON_LAMBDA else settings.database_pool_size,
        )
    from mysoulmate.storage.sqlite.store import SqliteEventStore

    return SqliteEventStore(settings.data_dir / "analytics.db")


@lru_cache(maxsize=1)
def source_store() -> SourceStore:
    """Write-key sources, on the same backend (and table, database or file) as the events."""
    settings = get_settings()
    if settings.storage_backend == "dynamodb":
        from mysoulmate.storage.dynamodb.sources import DynamoSourceStore

        return DynamoSourceStore(settings.events_table, aws_client("dynamodb"))
    if settings.storage_backend == "postgres":
        from mysoulmate.storage.postgres.connection import conninfo
        from mysoulmate.storage.postgres.sources import PostgresSourceStore

        return PostgresSourceStore(conninfo(settings))
    from mysoulmate.storage.sqlite.sources import SqliteSourceStore

    return SqliteSourceStore(settings.data_dir / "analytics.db")


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
    if settings.queue_backend == "rabbitmq":
        # pika is imported here only: the other backends never load it.
        from mysoulmate.queue.rabbitmq import RabbitQueue

        return RabbitQueue(settings.rabbitmq_url, queue=settings.rabbitmq_queue)
    return local_queue()


def api_adapters() -> Adapters:
    """The factories routes get their store and queue from (built on first use)."""
    from mysoulmate.api.dependencies import Adapters

    return Adapters(
        store=event_store, queue=message_queue, sources=source_store, erasure_hooks=erasure_hooks
    )


@lru_cache(maxsize=1)
def forward_ledger() -> ForwardLedger:
    """What each provider accepted, on the backend that stores the events: shared by every
    process and function of a deployment (a SQLite file of its own on the laptop)."""
    settings = get_settings()
    if settings.storage_backend == "dynamodb":
        from mysoulmate.storage.dynamodb.ledger import DynamoForwardLedger

        return DynamoForwardLedger(settings.events_table, aws_client("dynamodb"))
    if settings.storage_backend == "postgres":
        from mysoulmate.core import concurrency
        from mysoulmate.storage.postgres.connection import conninfo
        from mysoulmate.storage.postgres.ledger import PostgresForwardLedger

        return PostgresForwardLedger(
            conninfo(settings), pool_size=None if concurrency.ON_LAMBDA else 2
        )
    from mysoulmate.storage.sqlite.ledger import SqliteForwardLedger

    return SqliteForwardLedger(settings.data_dir / "forward-ledger.db")


@lru_cache(maxsize=1)
def erasure_hooks() -> tuple[ErasureHook, ...]:
    """Providers asked to erase a person with us: Mixpanel, when its GDPR token is set
    (its module is light: standard-library HTTP, imported only then)."""
    settings = get_settings()
    has_token = settings.mixpanel_token or settings.mixpanel_token_parameter
    if not (has_token and (settings.mixpanel_gdpr_token or settings.mixpanel_gdpr_token_parameter)):
        return ()
    from mysoulmate.providers.mixpanel_gdpr import erasure_hook
    from mysoulmate.runtime.secrets import SecretUnavailableError, secret

    def erase_in_mixpanel(user_id: str, anonymous_ids: list[str]) -> dict[str, Any]:
        # The tokens are read at each erasure (cached by Powertools on AWS): an SSM failure
        # lands in the erasure's audit entry like a failed deletion request, and never
        # stops the erasure of our own data.
        try:
            token = secret(settings.mixpanel_token, settings.mixpanel_token_parameter)
            gdpr = secret(settings.mixpanel_gdpr_token, settings.mixpanel_gdpr_token_parameter)
        except SecretUnavailableError as exc:
            return {"mixpanel": {"deletion": "failed", "reason": str(exc)[:300]}}
        return erasure_hook(token, gdpr, settings.mixpanel_api_host)(user_id, anonymous_ids)

    return (erase_in_mixpanel,)


def reset_backends() -> None:
    """Forget built adapters and settings (tests switch configuration between cases)."""
    from mysoulmate.analytics.write_keys import WRITE_KEYS

    event_store.cache_clear()
    source_store.cache_clear()
    WRITE_KEYS.forget()  # what it cached came from the store just forgotten
    local_queue.cache_clear()
    message_queue.cache_clear()
    erasure_hooks.cache_clear()
    forward_ledger.cache_clear()
    get_settings.cache_clear()
