"""The forward ledger on every backend (SQLite, DynamoDB in moto, the real PostgreSQL):
the same answers from each, shared by every ledger over the same storage, and each
backend's own way of forgetting old entries."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import boto3
import psycopg
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from mysoulmate.analytics.models import ANONYMOUS_PREFIX
from mysoulmate.analytics.ports import MessageKey, StorageUnavailableError
from mysoulmate.storage.dynamodb.ledger import DynamoForwardLedger
from mysoulmate.storage.dynamodb.store import DynamoEventStore, table_schema
from mysoulmate.storage.postgres.connection import DatabaseNotMigratedError
from mysoulmate.storage.postgres.ledger import PostgresForwardLedger
from mysoulmate.storage.sqlite.ledger import SqliteForwardLedger

from tests.contract.conftest import BACKENDS
from tests.support.messages import consume, identify_as, jan, track, visit
from tests.support.postgres import scratch_database

WEEK = 7 * 86400
RECEIVED = jan(1, 9)
# Keys a careless adapter would mangle: quotes, backslashes, separators its own keys use,
# SQL and format placeholders, non-ASCII and astral characters.
ODD_KEYS: list[MessageKey] = [
    ("o'brien", 'say "hi"'),
    ("back\\slash", "tab\tand\nnewline"),
    ("#hash#", "FWD#ga4#m"),
    ("USER#x", "EVENT#y"),
    ("naïve-ßtraße", "日本語-ключ"),
    ("emoji 😀👩‍👩‍👧", "🚀"),
    ("%s %(x)s {0}", "'; DROP TABLE forward_ledger; --"),
    (ANONYMOUS_PREFIX + "visitor", "comma,separated,(paren)"),
]


class Ledger(Protocol):
    def forwarded(self, provider: str, keys: Any) -> set[MessageKey]: ...
    def record(self, provider: str, keys: Any) -> None: ...


@dataclass
class Opened:
    """A ledger under test, and how to open another over the same storage (another
    process, in production)."""

    backend: str
    ledger: Ledger
    another: Callable[[], Ledger]


def received(keys: Iterable[MessageKey], at: datetime = RECEIVED) -> dict[MessageKey, datetime]:
    """What `record` takes: each key with its message's receipt."""
    return dict.fromkeys(keys, at)


def keys(count: int, user: str = "u") -> list[MessageKey]:
    return [(f"{user}-{n % 7}", f"m-{n:05d}") for n in range(count)]


def postgres_conninfo(request: pytest.FixtureRequest) -> str:
    """The session's migrated database with an empty ledger table."""
    info: str = request.getfixturevalue("postgres_database")
    with psycopg.connect(info, autocommit=True) as conn:
        conn.execute("TRUNCATE forward_ledger")
    return info


def open_backend(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Opened:
    another: Callable[[], Ledger]
    if backend == "sqlite":
        path = tmp_path / "forward-ledger.db"

        def another() -> Ledger:
            ledger = SqliteForwardLedger(path)
            request.addfinalizer(ledger.close)
            return ledger

    elif backend == "dynamodb":
        mock = mock_aws()
        mock.start()
        request.addfinalizer(mock.stop)
        client = boto3.client("dynamodb", region_name="us-east-1")
        table = f"ledger-{uuid.uuid4().hex[:8]}"
        client.create_table(TableName=table, **table_schema())

        def another() -> Ledger:
            return DynamoForwardLedger(table, client, sleep=lambda _: None)

    else:
        info = postgres_conninfo(request)

        def another() -> Ledger:
            ledger = PostgresForwardLedger(info, pool_size=2)
            request.addfinalizer(ledger.close)
            return ledger

    return Opened(backend, another(), another)


@pytest.fixture(params=BACKENDS)
def opened(request: pytest.FixtureRequest, tmp_path: Path) -> Opened:
    return open_backend(request.param, request, tmp_path)


# -- the contract: the same answers on every backend -----------------------------------------


def test_an_empty_ledger_has_forwarded_nothing(opened: Opened) -> None:
    assert opened.ledger.forwarded("ga4", keys(10)) == set()
    assert opened.ledger.forwarded("ga4", []) == set()
    opened.ledger.record("ga4", received([]))  # nothing to record is not an error
    assert opened.ledger.forwarded("ga4", keys(10)) == set()


def test_recorded_keys_are_forwarded_for_that_provider_only(opened: Opened) -> None:
    ledger = opened.ledger
    recorded = [("ann", "m1"), ("ann", "m2"), ("bob", "m1")]
    ledger.record("ga4", received(recorded))
    asked = [*recorded, ("ann", "m3"), ("bob", "m2"), ("carol", "m1")]
    assert ledger.forwarded("ga4", asked) == set(recorded)
    assert ledger.forwarded("mixpanel", asked) == set()
    # A message id is unique per user only: the same id of another user is another message.
    assert ledger.forwarded("ga4", [("carol", "m2"), ("bob", "m2")]) == set()
    ledger.record("mixpanel", received([("carol", "m1")]))
    assert ledger.forwarded("mixpanel", asked) == {("carol", "m1")}
    assert ledger.forwarded("ga4", asked) == set(recorded)


def test_record_is_idempotent(opened: Opened) -> None:
    ledger = opened.ledger
    ledger.record("ga4", received([("ann", "m1"), ("ann", "m2")]))
    ledger.record("ga4", received([("ann", "m1"), ("ann", "m2")]))  # a redelivered batch
    ledger.record("ga4", received([("ann", "m2"), ("ann", "m3")]))  # an overlapping one
    asked = [("ann", f"m{n}") for n in range(1, 6)]
    assert ledger.forwarded("ga4", asked) == {("ann", "m1"), ("ann", "m2"), ("ann", "m3")}


def test_another_ledger_over_the_same_storage_sees_what_one_recorded(opened: Opened) -> None:
    other = opened.another()
    opened.ledger.record("ga4", received([("ann", "m1")]))
    assert other.forwarded("ga4", [("ann", "m1"), ("ann", "m2")]) == {("ann", "m1")}
    other.record("ga4", received([("ann", "m2")]))
    assert opened.ledger.forwarded("ga4", [("ann", "m2")]) == {("ann", "m2")}


def test_a_thousand_keys_round_trip_over_several_chunks(opened: Opened) -> None:
    ledger = opened.ledger
    recorded = keys(1_000)
    ledger.record("ga4", received(recorded))
    unrecorded = [(user, message.replace("m-", "n-")) for user, message in keys(500)]
    assert ledger.forwarded("ga4", [*unrecorded, *recorded]) == set(recorded)
    assert ledger.forwarded("ga4", recorded[::-1][:333]) == set(recorded[::-1][:333])
    assert ledger.forwarded("mixpanel", recorded) == set()


def test_keys_with_quotes_separators_and_unicode_round_trip(opened: Opened) -> None:
    ledger = opened.ledger
    ledger.record("ga4", received(ODD_KEYS[::2]))
    assert ledger.forwarded("ga4", ODD_KEYS) == set(ODD_KEYS[::2])
    ledger.record("ga4", received(ODD_KEYS))
    assert ledger.forwarded("ga4", ODD_KEYS) == set(ODD_KEYS)
    # Near misses of odd keys are other keys.
    near = [(user, message + " ") for user, message in ODD_KEYS] + [
        (user.upper(), message) for user, message in ODD_KEYS if user.upper() != user
    ]
    assert ledger.forwarded("ga4", near) == set()


# -- DynamoDB: items in the user's partition, TTL, AWS's batch limits ---------------------------


@pytest.fixture
def dynamo() -> Iterator[tuple[Any, str]]:
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        table = f"ledger-{uuid.uuid4().hex[:8]}"
        client.create_table(TableName=table, **table_schema())
        yield client, table


def test_dynamodb_entries_expire_a_week_after_they_are_recorded(dynamo: tuple[Any, str]) -> None:
    client, table = dynamo
    before = time.time()
    DynamoForwardLedger(table, client).record("ga4", received([("ann", "m1")]))
    after = time.time()
    item = client.get_item(
        TableName=table, Key={"pk": {"S": "USER#ann"}, "sk": {"S": "FWD#ga4#m1"}}
    )["Item"]
    assert int(before) + WEEK <= int(item["expiresAt"]["N"]) <= int(after) + WEEK
    # The table's TTL attribute, as template.yaml declares it.
    assert "expiresAt" in item
    # Nothing of the message but its key and receipt (what an erasure compares).
    assert set(item) == {"pk", "sk", "expiresAt", "received"}
    assert item["received"] == {"S": "2026-01-01T09:00:00.000000Z"}


def test_dynamodb_refuses_a_provider_name_that_could_collide(dynamo: tuple[Any, str]) -> None:
    client, table = dynamo
    ledger = DynamoForwardLedger(table, client)
    with pytest.raises(ValueError, match="must not contain '#'"):
        ledger.record("ga4#x", received([("ann", "m1")]))


class StingyClient:
    """moto behind AWS's batch limits (moto takes more than 25 writes or 100 reads in one
    call), throttling the first call of each kind and leaving half of every other batch
    unprocessed, as DynamoDB may under load."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.sizes: dict[str, list[int]] = {"get": [], "write": []}
        self._stingy = False
        self._throttled: set[str] = set()

    def _throttle_first(self, kind: str, operation: str) -> None:
        if kind not in self._throttled:
            self._throttled.add(kind)
            error = {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "x"}}
            raise ClientError(error, operation)  # type: ignore[arg-type]

    def _halves(self, items: list[Any]) -> tuple[list[Any], list[Any]]:
        self._stingy = not self._stingy
        if not self._stingy or len(items) < 2:
            return items, []
        return items[: len(items) // 2], items[len(items) // 2 :]

    def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        self._throttle_first("get", "BatchGetItem")
        ((table, request),) = RequestItems.items()
        assert len(request["Keys"]) <= 100
        self.sizes["get"].append(len(request["Keys"]))
        sent, left = self._halves(request["Keys"])
        response: dict[str, Any] = self._client.batch_get_item(
            RequestItems={table: {**request, "Keys": sent}}
        )
        response["UnprocessedKeys"] = {table: {**request, "Keys": left}} if left else {}
        return response

    def batch_write_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        self._throttle_first("write", "BatchWriteItem")
        ((table, requests),) = RequestItems.items()
        assert len(requests) <= 25
        self.sizes["write"].append(len(requests))
        sent, left = self._halves(requests)
        response: dict[str, Any] = self._client.batch_write_item(RequestItems={table: sent})
        response["UnprocessedItems"] = {table: left} if left else {}
        return response


def test_dynamodb_keeps_to_aws_limits_and_retries_what_was_left(dynamo: tuple[Any, str]) -> None:
    client, table = dynamo
    stingy = StingyClient(client)
    slept: list[float] = []
    ledger = DynamoForwardLedger(table, stingy, sleep=slept.append)  # type: ignore[arg-type]
    recorded = keys(130)
    ledger.record("ga4", received(recorded))
    # 130 puts: 6 calls of 25 and one of 5, each but the 5 cut in half once, plus the throttle.
    assert max(stingy.sizes["write"]) == 25
    assert len(stingy.sizes["write"]) > 130 // 25 + 1
    asked = [*recorded, *keys(90, user="other")]
    assert ledger.forwarded("ga4", asked) == set(recorded)
    assert max(stingy.sizes["get"]) == 100
    assert len(stingy.sizes["get"]) > 2
    assert slept  # every retry waited first
    assert client.scan(TableName=table, Select="COUNT")["Count"] == 130


def test_dynamodb_gives_up_on_what_stays_unprocessed(dynamo: tuple[Any, str]) -> None:
    _, table = dynamo

    class Overloaded:
        def batch_write_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
            return {"UnprocessedItems": RequestItems}

    slept: list[float] = []
    ledger = DynamoForwardLedger(table, Overloaded(), sleep=slept.append)  # type: ignore[arg-type]
    with pytest.raises(StorageUnavailableError, match="unprocessed"):
        ledger.record("ga4", received([("ann", "m1")]))
    assert len(slept) >= 3


def test_dynamodb_entries_go_with_an_erasure_and_trip_no_user_read(
    dynamo: tuple[Any, str],
) -> None:
    client, table = dynamo
    store = DynamoEventStore(table, client, sleep=lambda _: None)
    ledger = DynamoForwardLedger(table, client, sleep=lambda _: None)
    consume(
        store,
        track("ann", "open", jan(1, 9), message_id="a1"),
        visit("v1", jan(1, 8)),
        track("bob", "open", jan(1, 9), message_id="b1"),
    )
    (visitor_event,) = store.list_events(ANONYMOUS_PREFIX + "v1", 10, None).events
    forwarded = [
        ("ann", "a1"),
        (ANONYMOUS_PREFIX + "v1", visitor_event.messageId),
        ("bob", "b1"),
    ]
    ledger.record("ga4", received(forwarded))
    ledger.record("mixpanel", received(forwarded))
    # Received after the erasure's time, forwarded before it ran: new data, whose entry stays.
    ledger.record("ga4", received([("ann", "a2")], at=jan(2, 13)))
    # Reads of the user's events and a visitor's move ignore the ledger's items.
    assert [e.messageId for e in store.list_events("ann", 10, None).events] == ["a1"]
    consume(store, identify_as("ann", "v1", jan(1, 10)))
    assert len(store.list_events("ann", 10, None).events) == 3
    assert store.list_events(ANONYMOUS_PREFIX + "v1", 10, None).events == []

    erased = store.delete_user("ann", jan(2))
    assert erased.events == 3  # ledger entries are not events
    for provider in ("ga4", "mixpanel"):
        assert ledger.forwarded(provider, forwarded) == {("bob", "b1")}
    assert ledger.forwarded("ga4", [("ann", "a2")]) == {("ann", "a2")}
    left = client.query(
        TableName=table,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": "USER#ann"}},
        ConsistentRead=True,
    )["Items"]
    # The tombstone and the entry received after the erasure's time stay.
    assert [item["sk"]["S"] for item in left] == ["FWD#ga4#a2", "SEEN"]
    store.delete_user("ann", jan(3))  # a later erasure covers it
    assert ledger.forwarded("ga4", [("ann", "a2")]) == set()


# -- PostgreSQL: pruning, and the schema check ---------------------------------------------------


def test_postgres_prunes_entries_older_than_a_week_now_and_then(
    request: pytest.FixtureRequest,
) -> None:
    info = postgres_conninfo(request)

    def age(days: float, *messages: str) -> None:
        with psycopg.connect(info, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO forward_ledger (provider, user_id, message_id, forwarded_at) "
                "SELECT 'ga4', 'ann', m, now() - %s * interval '1 day' FROM unnest(%s::text[]) m",
                (days, list(messages)),
            )

    def stored() -> set[str]:
        with psycopg.connect(info, autocommit=True) as conn:
            rows = conn.execute("SELECT message_id FROM forward_ledger").fetchall()
        return {row[0] for row in rows}

    now = [0.0]
    ledger = PostgresForwardLedger(info, clock=lambda: now[0])
    request.addfinalizer(ledger.close)
    age(8, "old")
    age(6.9, "recent")
    ledger.record("ga4", received([("ann", "new")]))  # the first record of a process prunes
    assert stored() == {"recent", "new"}
    assert ledger.forwarded("ga4", [("ann", "old"), ("ann", "recent")]) == {("ann", "recent")}
    age(9, "older")
    now[0] += 60  # not due yet: a record inserts only
    ledger.record("ga4", received([("ann", "newer")]))
    assert stored() == {"recent", "new", "older", "newer"}
    now[0] += 3600
    ledger.record("ga4", received([("ann", "newest")]))
    assert stored() == {"recent", "new", "newer", "newest"}


def test_postgres_ledger_refuses_a_database_that_is_not_at_head() -> None:
    with scratch_database() as info, pytest.raises(DatabaseNotMigratedError, match="migrate"):
        PostgresForwardLedger(info)


def test_postgres_ledger_reports_an_unreachable_database() -> None:
    info = "host=127.0.0.1 port=1 user=postgres dbname=test connect_timeout=1"
    with pytest.raises(StorageUnavailableError, match="cannot reach PostgreSQL database test"):
        PostgresForwardLedger(info)


def test_postgres_entries_go_with_an_erasure(postgres_store: Any, postgres_database: str) -> None:
    ledger = PostgresForwardLedger(postgres_database)
    try:
        consume(postgres_store, track("ann", "open", jan(1, 9), message_id="a1"))
        forwarded = [("ann", "a1"), ("bob", "b1")]
        ledger.record("ga4", received(forwarded))
        ledger.record("mixpanel", received(forwarded))
        # Received after the erasure's time, forwarded before it ran: new data, kept.
        ledger.record("ga4", received([("ann", "a2")], at=jan(2, 13)))
        postgres_store.delete_user("ann", jan(2))
        for provider in ("ga4", "mixpanel"):
            assert ledger.forwarded(provider, forwarded) == {("bob", "b1")}
        assert ledger.forwarded("ga4", [("ann", "a2")]) == {("ann", "a2")}
        postgres_store.delete_user("ann", jan(3))  # a later erasure covers it
        assert ledger.forwarded("ga4", [("ann", "a2")]) == set()
    finally:
        ledger.close()
