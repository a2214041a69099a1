"""One store fixture, three backends: every contract test runs against SQLite, DynamoDB
(moto) and the real PostgreSQL server, and must see the same answers."""

from __future__ import annotations

import uuid
from pathlib import Path

import boto3
import pytest
from moto import mock_aws
from mysoulmate.analytics.ports import EventStore
from mysoulmate.storage.dynamodb.store import DynamoEventStore, table_schema
from mysoulmate.storage.sqlite.store import SqliteEventStore

from tests.support.moto import (
    fast_sorted_items,
    one_rollback_copy_per_transaction,
    serialized_dynamodb,
)

BACKENDS = ("sqlite", "dynamodb", "postgres")


@pytest.fixture(autouse=True)
def fast_moto_transactions(monkeypatch: pytest.MonkeyPatch) -> None:
    one_rollback_copy_per_transaction(monkeypatch)
    serialized_dynamodb(monkeypatch)
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
