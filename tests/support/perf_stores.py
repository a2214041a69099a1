"""Stores for the perf telemetry contract (`tests/contract/test_perf_contract.py`): each backend
opened with a second store over the same storage and a view of its own perf ledger, and
builders of perf messages and of the counters they should leave."""

from __future__ import annotations

import sqlite3
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pytest
from moto import mock_aws
from mysoulmate.analytics.models import QueuedMessage
from mysoulmate.analytics.perf_models import METRICS, Measurement, PerfPayload
from mysoulmate.analytics.perf_sketch import PerfCell, perf_delta
from mysoulmate.analytics.ports import EventStore, PerfStore
from mysoulmate.storage.dynamodb.store import DynamoEventStore, table_schema
from mysoulmate.storage.sqlite.store import SqliteEventStore

from tests.support.memory_store import MemoryEventStore
from tests.support.messages import jan

EVERYTHING = (date(2026, 1, 1), date(2026, 1, 14))  # every day the tests measure on


@dataclass
class Opened:
    """A store under test, another over the same storage (another process, in production),
    and the user's perf ledger entries read from the backend's own tables or items."""

    backend: str
    store: EventStore
    another: Callable[[], EventStore]
    ledger: Callable[[str], set[str]]
    transactions: list[list[dict[str, Any]]]  # DynamoDB only: every TransactItems sent


def open_backend(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Opened:
    transactions: list[list[dict[str, Any]]] = []
    if backend == "memory":
        memory = MemoryEventStore()
        return Opened(
            backend,
            memory,
            lambda: memory,
            lambda user: {m for u, m in memory._perf_ledger if u == user},
            transactions,
        )
    if backend == "sqlite":
        path = tmp_path / "perf.db"

        def sqlite_ledger(user: str) -> set[str]:
            with sqlite3.connect(path) as conn:
                rows = conn.execute(
                    "SELECT message_id FROM perf_ledger WHERE user_id = ?", (user,)
                ).fetchall()
            return {row[0] for row in rows}

        def another_sqlite() -> EventStore:
            store = SqliteEventStore(path)
            request.addfinalizer(store.close)
            return store

        return Opened(backend, another_sqlite(), another_sqlite, sqlite_ledger, transactions)
    if backend == "dynamodb":
        mock = mock_aws()
        mock.start()
        request.addfinalizer(mock.stop)
        client = boto3.client("dynamodb", region_name="us-east-1")
        table = f"perf-{uuid.uuid4().hex[:8]}"
        client.create_table(TableName=table, **table_schema())
        sent = client.transact_write_items

        def recording(**arguments: Any) -> Any:
            transactions.append(arguments["TransactItems"])
            return sent(**arguments)

        client.transact_write_items = recording  # type: ignore[method-assign]

        def dynamo_ledger(user: str) -> set[str]:
            items = client.query(
                TableName=table,
                KeyConditionExpression="pk = :pk AND begins_with(sk, :perf)",
                ExpressionAttributeValues={":pk": {"S": f"USER#{user}"}, ":perf": {"S": "PERF"}},
                ConsistentRead=True,
            )["Items"]
            return {item["sk"]["S"].partition("#")[2] for item in items}

        def another_dynamo() -> EventStore:
            return DynamoEventStore(table, client, sleep=lambda _: None)

        return Opened(backend, another_dynamo(), another_dynamo, dynamo_ledger, transactions)
    from mysoulmate.storage.postgres.store import PostgresEventStore

    info: str = request.getfixturevalue("postgres_database")
    store: EventStore = request.getfixturevalue("postgres_store")  # emptied for this test

    def postgres_ledger(user: str) -> set[str]:
        with psycopg.connect(info, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT message_id FROM perf_ledger WHERE user_id = %s", (user,)
            ).fetchall()
        return {row[0] for row in rows}

    def another_postgres() -> EventStore:
        other = PostgresEventStore(info)
        request.addfinalizer(other.close)
        return other

    return Opened(backend, store, another_postgres, postgres_ledger, transactions)


_ids = iter(range(1, 1_000_000))


def perf(
    user: str,
    measurements: Sequence[Measurement],
    *,
    at: datetime = jan(5),
    received: datetime | None = None,
    message_id: str | None = None,
    platform: str = "ios",
    version: str = "2.4.0",
    device: str = "mid",
) -> QueuedMessage:
    payload = PerfPayload(appVersion=version, deviceClass=device, measurements=list(measurements))
    return QueuedMessage(
        type="perf",
        messageId=message_id or f"p-{next(_ids):06d}",
        userId=user,
        timestamp=at,
        receivedAt=received or at,
        platform=platform,
        properties=payload.model_dump(mode="json", exclude_none=True),
    )


def render(value: float, name: str = "ChatScreen", at: datetime | None = None) -> Measurement:
    return Measurement(metric="render", name=name, value=value, timestamp=at)


def stored(
    store: PerfStore, start: date = EVERYTHING[0], end: date = EVERYTHING[1]
) -> Counter[Any]:
    """Every counter of every metric in [start, end], as perf_delta counts them."""
    found: Counter[tuple[PerfCell, int]] = Counter()
    for metric in METRICS:
        for cell, bucket, amount in store.perf_rows(metric, start, end, None):
            assert (cell, bucket) not in found, "a counter came back twice"
            found[(cell, bucket)] = amount
    return found


def expected(messages: Sequence[QueuedMessage]) -> Counter[Any]:
    return +perf_delta(messages)  # counters of zero are never stored
