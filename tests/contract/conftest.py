"""One store fixture, three backends: every contract test runs against SQLite, DynamoDB
(moto) and the real PostgreSQL server, and must see the same answers."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from mysoulmate.analytics.models import QueuedMessage
from mysoulmate.analytics.ports import EventStore
from mysoulmate.storage.dynamodb.store import DynamoEventStore, table_schema
from mysoulmate.storage.sqlite.store import SqliteEventStore

from tests.moto_support import fast_sorted_items, one_rollback_copy_per_transaction
from tests.postgres_support import postgres_database, postgres_store

__all__ = ["postgres_database", "postgres_store"]  # fixtures the postgres backend uses

BACKENDS = ("sqlite", "dynamodb", "postgres")


@pytest.fixture(autouse=True)
def fast_moto_transactions(monkeypatch: pytest.MonkeyPatch) -> None:
    one_rollback_copy_per_transaction(monkeypatch)
    fast_sorted_items(monkeypatch)


def make_store(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> EventStore:
    if backend == "sqlite":
        return SqliteEventStore(tmp_path / f"{uuid.uuid4().hex}.db")
    if backend == "dynamodb":
        mock = mock_aws()
        mock.start()
        request.addfinalizer(mock.stop)
        client = boto3.client("dynamodb", region_name="us-east-1")
        table = f"contract-{uuid.uuid4().hex[:8]}"
        client.create_table(TableName=table, **table_schema())
        return DynamoEventStore(table, client, sleep=lambda _: None)
    store: EventStore = request.getfixturevalue("postgres_store")
    return store


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> EventStore:
    return make_store(request.param, request, tmp_path)


def track(
    user: str,
    event: str,
    at: datetime,
    *,
    platform: str | None = "web",
    message_id: str | None = None,
    **properties: Any,
) -> QueuedMessage:
    return QueuedMessage(
        type="track",
        messageId=message_id or uuid.uuid4().hex,
        userId=user,
        event=event,
        timestamp=at,
        receivedAt=at,
        platform=platform,
        properties=properties,
    )


def identify(user: str, at: datetime, **traits: Any) -> QueuedMessage:
    return QueuedMessage(
        type="identify",
        messageId=uuid.uuid4().hex,
        userId=user,
        timestamp=at,
        receivedAt=at,
        traits=traits,
    )


def day(d: int, hour: int = 12, minute: int = 0, second: int = 0) -> datetime:
    """A moment in January 2026 (UTC)."""
    return datetime(2026, 1, d, hour, minute, second, tzinfo=UTC)
