"""Consumer: records/s through the record handler, and DynamoDB calls per 1,000 events.

1. **Throughput** (SQLite): queued-message bodies, as the producer writes them, go through
   `mysoulmate.analytics.ingest.IngestBatch` (`add` each record, `flush` per batch of 100,
   the template's SQS BatchSize) into `SqliteEventStore` on a temporary file. Floor, same run,
   same rows, same connection settings (`open_sqlite`, WAL, synchronous=NORMAL): one
   `executemany` INSERT in one transaction. For information, the same `executemany` in one
   transaction per 100 rows, the batching the consumer is bound to.
2. **DynamoDB calls** per 1,000 events through the consumer Lambda handler
   (`functions/consumer/app.py`, Powertools BatchProcessor included) against moto, with SQS
   events of 100 records each. Every API call is counted by a botocore `before-call.dynamodb`
   hook on the event store's own client. Target (issue): ≤ 45 calls per 1,000 events.

Both run for two mixes: only `track` events (the bulk of the traffic) and 5 % `identify`
(profile merges: one read-merge-write per user and batch), the identifies of a batch coming
from different users. The DynamoDB count also runs a third mix, 5 % identify all from one
user per batch, where merging per user saves calls.
"""

from __future__ import annotations

import gc
import os
import tempfile
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench._common import (
    EVENTS_TABLE,
    FUNCTIONS,
    FakeLambdaContext,
    apply_env,
    lambda_env,
    median,
    print_table,
    ratio,
    sqs_event,
    standalone_main,
    summary,
    verdict,
)
from bench.ingest import one_rollback_copy_per_transaction

BATCH = 100  # template.yaml: the SQS event source's BatchSize
CALLS_TARGET = 45
MIXES = {"track only": 0.0, "5% identify": 0.05}
# DynamoDB calls only: the same 5 % identify, but each batch's identifies all come from one
# user (a client re-sending traits): what merging a user's identifies per batch saves.
REPEAT_MIX = "5% identify, 1 user per batch"


def make_bodies(
    count: int, identify_share: float, users: int = 200, one_identify_user: bool = False
) -> list[str]:
    """Queue message bodies as the API produces them (model_dump_json(exclude_none=True)).

    Events rotate over ``users``, so the identifies of one batch of 100 come from different
    users; with ``one_identify_user`` they all come from the same user in each batch.
    """
    from mysoulmate.analytics.models import QueuedMessage

    start = datetime(2026, 1, 1, tzinfo=UTC)
    every = round(1 / identify_share) if identify_share else 0
    bodies = []
    for i in range(count):
        user = f"user-{i % users:04d}"
        moment = start + timedelta(seconds=i)
        if every and i % every == every - 1:
            message = QueuedMessage(
                type="identify",
                messageId=str(uuid.UUID(int=i)),
                userId=f"user-{(i // BATCH) % users:04d}" if one_identify_user else user,
                traits={"plan": ["free", "plus", "pro"][i % 3], "locale": "en-US"},
                timestamp=moment,
                receivedAt=moment,
                requestId=f"req-{i}",
            )
        else:
            message = QueuedMessage(
                type="track",
                messageId=str(uuid.UUID(int=i)),
                userId=user,
                event=["Song Played", "Message Sent", "Session Started"][i % 3],
                properties={"songId": f"s-{i % 97}", "durationMs": 1000 + i % 5000},
                timestamp=moment,
                receivedAt=moment + timedelta(milliseconds=120),
                platform="ios" if i % 2 else "android",
                context={"app": {"version": "3.2.1"}, "locale": "en-US"},
                requestId=f"req-{i}",
            )
        bodies.append(message.model_dump_json(exclude_none=True))
    return bodies


# -- 1. throughput into SQLite ---------------------------------------------------------


def _ingest(bodies: list[str], path: Path) -> tuple[float, int]:
    from mysoulmate.analytics.ingest import IngestBatch
    from mysoulmate.storage.sqlite.store import SqliteEventStore

    store = SqliteEventStore(path)
    stored = 0
    gc.collect()
    start = time.perf_counter()
    for offset in range(0, len(bodies), BATCH):
        batch = IngestBatch(store)
        for n, body in enumerate(bodies[offset : offset + BATCH]):
            batch.add(f"rec-{offset + n}", body)
        outcome = batch.flush()
        stored += outcome.stored
        if outcome.failed_records:
            raise RuntimeError(f"ingest failed: {next(iter(outcome.failed_records.values()))}")
    elapsed = time.perf_counter() - start
    store.close()
    return elapsed, stored


def _rows(bodies: list[str]) -> list[tuple[Any, ...]]:
    """The exact rows SqliteEventStore.insert_events writes, built outside the timing."""
    from mysoulmate.analytics.models import QueuedMessage
    from mysoulmate.storage.sqlite.store import event_row

    return [event_row(QueuedMessage.model_validate_json(body)) for body in bodies]


def _executemany(rows: list[tuple[Any, ...]], path: Path, per_transaction: int) -> float:
    from mysoulmate.storage.sqlite.connection import open_sqlite
    from mysoulmate.storage.sqlite.schema import EVENT_INSERT, SCHEMA  # as the store does

    conn = open_sqlite(path, synchronous="NORMAL")
    conn.executescript(SCHEMA)
    sql = EVENT_INSERT
    gc.collect()
    start = time.perf_counter()
    for offset in range(0, len(rows), per_transaction):
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(sql, rows[offset : offset + per_transaction])
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return elapsed


def run_throughput(quick: bool) -> dict[str, Any]:
    count = 5_000 if quick else 20_000
    rounds = 3 if quick else 5
    results: dict[str, Any] = {}
    rows_out = []
    for mix, share in MIXES.items():
        bodies = make_bodies(count, share)
        rows = _rows(bodies)
        samples: dict[str, list[float]] = {"ingest": [], "floor": [], "floor_per_100": []}
        stored = 0
        with tempfile.TemporaryDirectory(prefix="mysoulmate-bench-") as tmp:
            for r in range(rounds):
                order = ["ingest", "floor", "floor_per_100"]
                order = order[r % 3 :] + order[: r % 3]
                for kind in order:
                    path = Path(tmp) / f"{kind}-{r}.db"
                    if kind == "ingest":
                        elapsed, stored = _ingest(bodies, path)
                    else:
                        per = len(rows) if kind == "floor" else BATCH
                        elapsed = _executemany(rows, path, per)
                    samples[kind].append(count / elapsed)
        if stored != count:
            raise RuntimeError(f"{mix}: stored {stored} of {count} events")
        med = {k: median(v) for k, v in samples.items()}
        results[mix] = {
            "events": count,
            "rounds": rounds,
            "records_per_second": {k: summary(v) for k, v in samples.items()},
            "ingest_share_of_floor": ratio(med["ingest"], med["floor"]),
            "floor_over_ingest": ratio(med["floor"], med["ingest"]),
        }
        rows_out += [
            [
                f"{mix}: IngestBatch → SqliteEventStore",
                med["ingest"],
                ratio(med["floor"], med["ingest"]),
            ],
            [f"{mix}: floor, executemany, 1 transaction", med["floor"], 1.0],
            [
                f"{mix}: executemany, 1 transaction per 100",
                med["floor_per_100"],
                ratio(med["floor"], med["floor_per_100"]),
            ],
        ]
    print_table(
        ["SQLite", "records/s", "floor ÷ this"],
        rows_out,
        title=f"Consumer throughput, {count:,} events in batches of {BATCH}, median of {rounds}",
    )
    return results


# -- 2. DynamoDB API calls through the consumer Lambda handler, against moto -----------


def _create_table(client: Any) -> None:
    from mysoulmate.storage.dynamodb.store import table_schema

    client.create_table(TableName=EVENTS_TABLE, **table_schema())


def _count_events(client: Any) -> int:
    """Event items in the table (a Scan pages at 1 MB, so follow LastEvaluatedKey)."""
    count, start = 0, None
    while True:
        page = client.scan(
            TableName=EVENTS_TABLE,
            Select="COUNT",
            FilterExpression="begins_with(sk, :event)",
            ExpressionAttributeValues={":event": {"S": "EVENT#"}},
            **({"ExclusiveStartKey": start} if start else {}),
        )
        count += page["Count"]
        start = page.get("LastEvaluatedKey")
        if not start:
            return count


def run_dynamodb_calls(quick: bool) -> dict[str, Any]:
    import importlib.util
    import io
    from contextlib import redirect_stdout

    import mysoulmate.runtime.backends
    from moto import mock_aws

    count = 1_000 if quick else 2_000
    results: dict[str, Any] = {}
    table_rows = []
    mixes = {mix: (share, False) for mix, share in MIXES.items()}
    mixes[REPEAT_MIX] = (0.05, True)
    for mix, (share, one_user) in mixes.items():
        bodies = make_bodies(count, share, users=50, one_identify_user=one_user)
        # Without it moto copies the table 100 times per transaction: flushes then take
        # seconds, outlast the SEEN read's reuse window (`PREFETCH_SECONDS`) and add reads
        # that a real table, answering in milliseconds, would not.
        with mock_aws(), one_rollback_copy_per_transaction():
            mysoulmate.runtime.backends.reset_backends()
            store = mysoulmate.runtime.backends.event_store()
            client = store._client  # type: ignore[attr-defined]
            _create_table(client)
            spec = importlib.util.spec_from_file_location(
                f"bench_consumer_app_{len(results)}", FUNCTIONS / "consumer" / "app.py"
            )
            assert spec is not None
            assert spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            calls: Counter[str] = Counter()
            sends: Counter[str] = Counter()

            def on_call(model: Any, calls: Counter[str] = calls, **_: Any) -> None:
                calls[model.name] += 1

            def on_send(event_name: str, sends: Counter[str] = sends, **_: Any) -> None:
                sends[event_name.rsplit(".", 1)[-1]] += 1

            client.meta.events.register("before-call.dynamodb", on_call)
            client.meta.events.register("before-send.dynamodb", on_send)
            failures = 0
            start = time.perf_counter()
            with redirect_stdout(io.StringIO()):  # EMF metrics lines
                for offset in range(0, count, BATCH):
                    event = sqs_event(bodies[offset : offset + BATCH], offset)
                    response = module.handler(event, FakeLambdaContext())
                    failures += len(response.get("batchItemFailures", []))
            elapsed = time.perf_counter() - start
            client.meta.events.unregister("before-call.dynamodb", on_call)
            client.meta.events.unregister("before-send.dynamodb", on_send)
            stored = _count_events(client)
        mysoulmate.runtime.backends.reset_backends()
        if stored != count or failures:
            raise RuntimeError(f"{mix}: {stored} of {count} events stored, {failures} failures")
        total = sum(calls.values())
        per_1000 = total / count * 1000
        identifies = sum(1 for b in bodies if '"type":"identify"' in b)
        results[mix] = {
            "events": count,
            "identify_events": identifies,
            "calls_total": total,
            "calls_per_1000_events": per_1000,
            "calls_by_operation": dict(calls),
            "http_requests_by_operation": dict(sends),
            "batch_item_failures": failures,
            "events_in_table": stored,
            "seconds_against_moto": elapsed,
            "target": CALLS_TARGET,
            "verdict": verdict(per_1000, CALLS_TARGET),
        }
        table_rows.append(
            [
                mix,
                count,
                total,
                per_1000,
                ", ".join(f"{k} {v}" for k, v in sorted(calls.items())),
                failures,
                verdict(per_1000, CALLS_TARGET),
            ]
        )
    print_table(
        [
            "consumer handler vs moto",
            "events",
            "calls",
            "per 1,000",
            "by operation",
            "failures",
            f"target ≤{CALLS_TARGET}",
        ],
        table_rows,
        title=f"DynamoDB API calls, SQS events of {BATCH} records",
    )
    return results


def run(quick: bool) -> dict[str, Any]:
    apply_env(lambda_env("consumer"))
    os.environ["AWS_LAMBDA_FUNCTION_NAME"] = "mysoulmate-bench-consumer"
    throughput = run_throughput(quick)
    calls = run_dynamodb_calls(quick)
    return {"sqlite_throughput": throughput, "dynamodb_calls": calls, "batch_size": BATCH}


if __name__ == "__main__":
    standalone_main("consumer", run)
