"""Client performance telemetry on every backend (SQLite, DynamoDB in moto, the real
PostgreSQL, and the in-memory test store): each perf message is counted once whatever the
redeliveries and races, never after its user was erased, and the stored counters answer
quantiles within the sketch's 1 %."""

from __future__ import annotations

import random
import sqlite3
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pytest
from botocore.exceptions import EndpointConnectionError
from moto import mock_aws
from mysoulmate.analytics.models import QueuedMessage
from mysoulmate.analytics.perf_models import Measurement
from mysoulmate.analytics.perf_sketch import SUM_BUCKET, Tally
from mysoulmate.analytics.ports import PERF_LEDGER_DAYS, StoreResult
from mysoulmate.storage.dynamodb.store import DynamoEventStore, table_schema

from tests.contract.conftest import BACKENDS
from tests.support.messages import consume, identify_as, jan
from tests.support.perf_stores import (
    Opened,
    expected,
    open_backend,
    perf,
    render,
    stored,
)

ALL_BACKENDS = (*BACKENDS, "memory")
TRANSACT_LIMIT = 100  # AWS's, which moto does not enforce
EXPRESSION_LIMIT = 4096  # bytes of one expression string (AWS)


@pytest.fixture(params=ALL_BACKENDS)
def opened(request: pytest.FixtureRequest, tmp_path: Path) -> Opened:
    return open_backend(request.param, request, tmp_path)


def mixed_batch() -> list[QueuedMessage]:
    """Users, days, platforms, versions, device classes, metrics and measurement times."""
    return [
        perf("ann", [render(120.5), render(88), render(88), render(0)]),
        perf(
            "ann",
            [
                Measurement(metric="fps", name="ChatScreen", value=59.9),
                Measurement(metric="fps", name="ChatScreen", value=0),
                Measurement(metric="dropped_frames", name="ChatScreen", value=3),
            ],
            at=jan(6),
            platform="android",
            device="low",
        ),
        perf(
            "bob",
            [
                Measurement(metric="app_start", name="cold", value=1830.25),
                Measurement(metric="operation", name="send_message", value=42.001),
                Measurement(metric="bundle_size", name="main.jsbundle", value=1_900_000_000),
                # Measured just before midnight, sent in the next day's batch.
                render(300, "Settings", at=datetime(2026, 1, 6, 23, 59, 59, tzinfo=UTC)),
            ],
            at=jan(7),
            platform="web",
            version="2.5.0-beta.1",
            device="unknown",
        ),
    ]


def check_recorded(result: StoreResult, messages: Sequence[QueuedMessage]) -> None:
    keys = {m.key for m in messages}
    assert (result.written, result.duplicates, result.failed, result.erased) == (
        len(keys),
        len(messages) - len(keys),
        {},
        set(),
    )
    assert result.new_keys == keys


# -- counting once ----------------------------------------------------------------------------


def test_recorded_counters_are_exactly_the_messages_delta(opened: Opened) -> None:
    store = opened.store
    assert stored(store) == Counter()
    batch = mixed_batch()
    check_recorded(store.record_perf(batch), batch)
    assert stored(store) == expected(batch)
    # Another process over the same storage reads the same counters.
    assert stored(opened.another()) == expected(batch)
    assert store.record_perf([]) == StoreResult()


def test_a_redelivered_batch_and_a_repeat_within_a_batch_count_once(opened: Opened) -> None:
    store = opened.store
    batch = mixed_batch()
    store.record_perf(batch)
    again = store.record_perf(batch)
    assert (again.written, again.duplicates, again.new_keys) == (0, len(batch), set())
    twice, fresh = perf("carol", [render(61)]), perf("carol", [render(62)])
    result = store.record_perf([twice, batch[0], twice, fresh])
    assert (result.written, result.duplicates) == (2, 2)
    assert result.new_keys == {twice.key, fresh.key}
    # The same message id of another user is another message.
    other = twice.model_copy(update={"userId": "dave"})
    assert store.record_perf([other]).new_keys == {other.key}
    assert stored(store) == expected([*batch, twice, fresh, other])


def test_racing_deliveries_of_the_same_messages_count_once(opened: Opened) -> None:
    if opened.backend == "memory":
        pytest.skip("the in-memory store is not shared between threads")
    messages = [perf(f"u{n % 5}", [render(10 + n), render(500)]) for n in range(40)]
    # Four consumers, each with its own connection, get overlapping deliveries at once.
    deliveries = [messages[0:30], messages[10:40], messages[::-1], messages[5:35]]
    stores = [opened.another() for _ in deliveries]
    start = threading.Barrier(len(deliveries))
    results: list[StoreResult] = [StoreResult() for _ in deliveries]

    def consume(index: int) -> None:
        start.wait()
        results[index] = stores[index].record_perf(deliveries[index])

    threads = [threading.Thread(target=consume, args=(n,)) for n in range(len(deliveries))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(result.failed == {} for result in results)
    assert sum(result.written for result in results) == len(messages)
    new_keys = [key for result in results for key in result.new_keys]
    assert sorted(new_keys) == sorted(m.key for m in messages)
    assert stored(opened.store) == expected(messages)


# -- erasure ----------------------------------------------------------------------------------


def test_messages_received_before_an_erasure_are_never_counted(opened: Opened) -> None:
    store = opened.store
    counted = perf("erin", [render(100)], at=jan(3))
    store.record_perf([counted])
    store.delete_user("erin", jan(10))
    in_flight = [
        perf("erin", [render(200)], at=jan(9)),
        perf("erin", [render(300)], at=jan(9, 23), received=jan(10)),  # the same instant
    ]
    after = perf("erin", [render(400)], at=jan(11))
    someone_else = perf("fay", [render(500)], at=jan(9))
    result = store.record_perf([*in_flight, after, someone_else])
    assert result.erased == {m.key for m in in_flight}
    assert result.new_keys == {after.key, someone_else.key}
    assert (result.written, result.duplicates, result.failed) == (2, 0, {})
    # What was counted before the erasure stays: the counters hold no person.
    assert stored(store) == expected([counted, after, someone_else])


def test_an_erasure_deletes_the_persons_ledger_entries(opened: Opened) -> None:
    store = opened.store
    erin = [perf("erin", [render(100)], at=jan(3)), perf("erin", [render(150)], at=jan(4))]
    fay = perf("fay", [render(500)], at=jan(4))
    store.record_perf([*erin, fay])
    assert opened.ledger("erin") == {m.messageId for m in erin}
    store.delete_user("erin", jan(10))
    assert opened.ledger("erin") == set()
    assert opened.ledger("fay") == {fay.messageId}
    # Without its ledger entry a redelivery is still refused: the tombstone covers it.
    again = store.record_perf(erin)
    assert (again.written, again.erased) == (0, {m.key for m in erin})
    assert stored(store) == expected([*erin, fay])
    assert opened.ledger("erin") == set()


def test_an_erasure_keeps_the_entries_of_messages_received_after_its_time(opened: Opened) -> None:
    """An erasure is requested at its time and runs a moment later. A message received in
    between and counted before it ran is new data, as it would be a moment later: its entry
    stays, so that a redelivery still finds it and counts nothing."""
    store = opened.store
    before = perf("erin", [render(100)], at=jan(3))
    between = perf("erin", [render(200)], at=jan(10, 13))
    store.record_perf([before, between])
    store.delete_user("erin", jan(10))
    assert opened.ledger("erin") == {between.messageId}
    again = store.record_perf([before, between])
    assert again.erased == {before.key}
    assert (again.written, again.duplicates, again.failed) == (0, 1, {})
    assert stored(store) == expected([before, between])
    # A later erasure covers it: its entry goes, and a redelivery is refused.
    store.delete_user("erin", jan(11))
    assert opened.ledger("erin") == set()
    assert store.record_perf([between]).erased == {between.key}


# -- reads ------------------------------------------------------------------------------------


def test_rows_are_filtered_by_metric_name_and_days(opened: Opened) -> None:
    store = opened.store
    store.record_perf(
        [
            perf("ann", [render(10, "Home"), render(20, "Chat"), render(30, "chat")], at=jan(4)),
            perf("ann", [render(40, "Home"), render(50, "HomeScreen")], at=jan(5)),
            perf("bob", [render(60, "Home")], at=jan(6)),
            perf("bob", [Measurement(metric="fps", name="Home", value=60)], at=jan(5)),
        ]
    )

    def values(name: str | None, start: int, end: int, metric: str = "render") -> list[Any]:
        rows = store.perf_rows(metric, date(2026, 1, start), date(2026, 1, end), name)
        return sorted(
            (r.cell.day.day, r.cell.name, r.amount) for r in rows if r.bucket == SUM_BUCKET
        )

    assert values("Home", 1, 31) == [(4, "Home", 10_000), (5, "Home", 40_000), (6, "Home", 60_000)]
    assert values("Home", 5, 5) == [(5, "Home", 40_000)]
    assert values("Home", 5, 6) == [(5, "Home", 40_000), (6, "Home", 60_000)]
    assert values("Chat", 1, 31) == [(4, "Chat", 20_000)]  # not "chat", nor a prefix
    assert values("Hom", 1, 31) == []
    assert values(None, 4, 5) == [
        (4, "Chat", 20_000),
        (4, "Home", 10_000),
        (4, "chat", 30_000),
        (5, "Home", 40_000),
        (5, "HomeScreen", 50_000),
    ]
    assert values(None, 7, 31) == []
    assert values("Home", 1, 31, "fps") == [(5, "Home", 60_000)]
    assert values(None, 1, 31, "operation") == []


def test_names_with_unicode_and_key_separators_round_trip(opened: Opened) -> None:
    names = ["Écran d'accueil", "チャット画面", "😀 Feed", "100%23 done", "a:b/c\\d", "ChatScreen"]
    message = perf("ann", [render(10 * (n + 1), name) for n, name in enumerate(names)])
    opened.store.record_perf([message])
    assert stored(opened.store) == expected([message])
    for n, name in enumerate(names):
        rows = opened.store.perf_rows("render", date(2026, 1, 5), date(2026, 1, 5), name)
        assert {(r.cell.name, r.bucket, r.amount) for r in rows if r.bucket == SUM_BUCKET} == {
            (name, SUM_BUCKET, 10_000 * (n + 1))
        }


def test_a_cell_of_many_buckets_and_a_batch_of_many_cells(opened: Opened) -> None:
    store = opened.store
    # 300 distinct buckets in one cell, from one message.
    spread = perf("ann", [render(1.04**n) for n in range(300)])
    # 150 cells: one message with 120 screens, and smaller ones.
    screens = perf("bob", [render(5 + n, f"Screen{n:03d}") for n in range(120)])
    others = [perf(f"u{k}", [render(7 + n, f"Other{k}-{n}") for n in range(10)]) for k in range(3)]
    batch = [spread, screens, *others]
    check_recorded(store.record_perf(batch), batch)
    cells = {cell for cell, _ in expected(batch)}
    assert len(cells) == 151
    assert len(expected([spread])) == 301  # its buckets and the sum
    assert stored(store) == expected(batch)
    again = store.record_perf(batch)
    assert (again.written, again.duplicates) == (0, len(batch))
    assert stored(store) == expected(batch)
    for actions in opened.transactions:  # what AWS would accept
        assert len(actions) <= TRANSACT_LIMIT
        keys = [_item_key(body) for action in actions for body in action.values()]
        assert len(set(keys)) == len(keys), "an item twice in a transaction"
        for action in actions:
            for body in action.values():
                for expression in ("UpdateExpression", "ConditionExpression"):
                    assert len(body.get(expression, "").encode()) <= EXPRESSION_LIMIT


def _item_key(body: dict[str, Any]) -> tuple[str, str]:
    key = body["Key"] if "Key" in body else body["Item"]
    return key["pk"]["S"], key["sk"]["S"]


def test_quantiles_from_the_counters_are_within_one_percent(opened: Opened) -> None:
    rng = random.Random(19)
    values = [round(min(rng.lognormvariate(5.5, 1.1), 600_000), 3) for _ in range(3_000)]
    messages = [
        perf(f"u{n % 7}", [render(v) for v in values[start : start + 500]])
        for n, start in enumerate(range(0, len(values), 500))
    ]
    opened.store.record_perf(messages)
    tally = Tally()
    for _, bucket, amount in opened.store.perf_rows(
        "render", date(2026, 1, 5), date(2026, 1, 5), None
    ):
        tally.add(bucket, amount)
    summary = tally.quantiles()
    assert summary.count == len(values)
    ordered = sorted(values)
    for quantile, answer in ((0.5, summary.p50), (0.9, summary.p90), (0.99, summary.p99)):
        exact = ordered[int(quantile * (len(ordered) - 1))]
        assert answer is not None
        assert abs(answer - exact) <= 0.01 * exact, (quantile, answer, exact)
    assert summary.mean == pytest.approx(sum(values) / len(values), rel=1e-6)


def test_a_message_that_is_not_a_perf_payload_fails_alone(opened: Opened) -> None:
    good = perf("ann", [render(10)])
    bad = good.model_copy(update={"messageId": "bad", "properties": {"appVersion": "1"}})
    result = opened.store.record_perf([bad, good])
    assert result.new_keys == {good.key}
    assert set(result.failed) == {bad.key}
    assert stored(opened.store) == expected([good])


# -- each backend's way of forgetting old ledger entries ----------------------------------------


def test_dynamodb_ledger_items_expire_after_the_ledger_days(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    opened = open_backend("dynamodb", request, tmp_path)
    before = time.time()
    opened.store.record_perf([perf("ann", [render(10)], message_id="m1")])
    after = time.time()
    (put,) = [a["Put"]["Item"] for t in opened.transactions for a in t if "Put" in a]
    assert put["sk"] == {"S": "PERF#m1"}
    days = PERF_LEDGER_DAYS * 86400
    assert int(before) + days <= int(put["expiresAt"]["N"]) <= int(after) + days


_LEDGER_ROW = "INSERT INTO perf_ledger (user_id, message_id, recorded_at) VALUES ('ann', ?, ?)"


def test_sqlite_prunes_ledger_entries_older_than_the_ledger_days(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    opened = open_backend("sqlite", request, tmp_path)
    old = time.time() - (PERF_LEDGER_DAYS + 1) * 86400
    with sqlite3.connect(tmp_path / "perf.db") as conn:
        conn.execute(_LEDGER_ROW, ("old", old))
        conn.execute(_LEDGER_ROW, ("recent", old + 2 * 86400))
    opened.another().record_perf([perf("ann", [render(10)], message_id="new")])
    assert opened.ledger("ann") == {"recent", "new"}


def test_postgres_prunes_ledger_entries_older_than_the_ledger_days(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    opened = open_backend("postgres", request, tmp_path)
    info: str = request.getfixturevalue("postgres_database")
    with psycopg.connect(info, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO perf_ledger VALUES ('ann', 'old', now() - make_interval(days => %s)), "
            "('ann', 'recent', now() - make_interval(days => %s))",
            (PERF_LEDGER_DAYS + 1, PERF_LEDGER_DAYS - 1),
        )
    opened.another().record_perf([perf("ann", [render(10)], message_id="new")])
    assert opened.ledger("ann") == {"recent", "new"}


# -- DynamoDB: messages cut into parts, erasures racing the consumer ------------------------------


@pytest.fixture
def dynamo() -> Iterator[tuple[Any, str]]:
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        table = f"perf-{uuid.uuid4().hex[:8]}"
        client.create_table(TableName=table, **table_schema())
        yield client, table


def test_dynamodb_a_message_cut_short_between_its_parts_is_completed_by_its_redelivery(
    dynamo: tuple[Any, str],
) -> None:
    client, table = dynamo
    message = perf("ann", [render(1.04**n) for n in range(300)])  # more buckets than one ADD
    real = client.transact_write_items
    calls: list[int] = []

    def second_call_lost(**arguments: Any) -> Any:
        calls.append(len(arguments["TransactItems"]))
        if len(calls) == 2:
            raise EndpointConnectionError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com")
        return real(**arguments)

    client.transact_write_items = second_call_lost
    store = DynamoEventStore(table, client, sleep=lambda _: None)
    first = store.record_perf([message])
    assert len(calls) > 2  # the message took several transactions
    assert (set(first.failed), first.new_keys) == ({message.key}, set())
    assert stored(store) != expected([message])
    again = store.record_perf([message])  # the queue redelivers it
    assert (again.written, again.failed) == (1, {})
    assert stored(store) == expected([message])
    last = store.record_perf([message])
    assert (last.written, last.duplicates) == (0, 1)
    assert stored(store) == expected([message])


def test_dynamodb_an_erasure_landing_before_the_transaction_cancels_only_its_users_messages(
    dynamo: tuple[Any, str],
) -> None:
    client, table = dynamo
    eraser = DynamoEventStore(table, boto3.client("dynamodb", region_name="us-east-1"))
    real = client.transact_write_items

    def erasure_first(**arguments: Any) -> Any:
        if not eraser.erased_users(["erin"]):  # after record_perf read the tombstones
            eraser.delete_user("erin", jan(10))
        return real(**arguments)

    client.transact_write_items = erasure_first
    store = DynamoEventStore(table, client, sleep=lambda _: None)
    erin, fay = perf("erin", [render(10)], at=jan(9)), perf("fay", [render(20)], at=jan(9))
    result = store.record_perf([erin, fay])
    assert (result.erased, result.new_keys, result.failed) == ({erin.key}, {fay.key}, {})
    assert stored(store) == expected([fay])


def test_a_visitors_message_redelivered_after_the_visitor_signed_in_counts_once(
    opened: Opened,
) -> None:
    store = opened.store
    message = perf("anon:x", [render(10), render(20)], at=jan(5)).model_copy(
        update={"anonymousId": "x"}
    )
    consume(store, message)
    consume(store, identify_as("ann", "x", jan(5, 13)))  # the visitor signs in: linked
    consume(store, message)  # redelivered (at least once), now from a linked visitor
    assert stored(store) == expected([message])
    store.delete_user("ann", jan(6))
    # Received before the erasure: dropped, as the linked visitor's events are (its tombstone).
    assert store.record_perf([message]).erased == {message.key}
    # The visitor's ledger entry went with the user: the same messageId received after the
    # erasure is new data, and counts.
    later = message.model_copy(update={"receivedAt": jan(7)})
    assert store.record_perf([later]).written == 1
