"""Ingest: batches vs one event per request (issue 14, "Batching is the cheap path").

1. **AWS calls per 1,000 events, end to end** (API → SQS → consumer → DynamoDB), under moto:
   `functions/analytics/app.py` (the deployed Lambda handler: Powertools decorators, Mangum,
   the app) gets API Gateway HTTP API v2 events for `POST /v1/batch`, 10 requests of 100
   Segment `track` messages each (~330 bytes, 100 users, two platforms, Basic auth with a
   server write key made by `write_keys.create_source`). The bench then receives the queued
   SQS messages and hands them to `functions/consumer/app.py` as SQS Lambda events of the
   template's BatchSize (`EventsQueueBatch`, read from template.yaml), deleting what the
   handler did not report as failed. Every AWS API call any botocore client makes is counted
   by wrapping `BaseClient._make_api_call` (and HTTP attempts by wrapping
   `Endpoint._get_response`, so retries would show), labelled by phase: **api** (the
   analytics handler: SendMessageBatch, and the write-key lookup on the first request, later
   ones hit `WriteKeyCache`), **consumer** (the consumer handler: DynamoDB), and **esm**
   (the bench's own ReceiveMessage/DeleteMessageBatch: on Lambda the event source mapping
   makes them, not our code; shown apart and not counted). Goal: ≤ 15 product calls per
   1,000 events. Floor (peer figure, same run, fresh moto): the same 1,000 events sent one
   per request to `POST /v1/track`, consumed the same way. For information: batches of 500
   (what bigger batches still buy), and the per-request path with SQS events of 10 records
   (full runs only; it changes only the per-request figure: the 10 batch bodies are one
   delivery at either size), and the batches delivered one body per invocation (full runs
   only: requests further apart than the mapping's batching window). The consumer's
   TransactWriteItems are broken down by action kind (event Puts vs rollup and per-user
   updates), which is where its calls go.
   moto itself is sped up in two places that only change its speed, not what it answers
   (one rollback copy per transaction, a retention check without scanning the queue).
2. **events/s through `POST /v1/batch` of the local server**: `mysoulmate serve` as a child
   process (SQLite, the local queue, `WORKER_ENABLED=false` so only the durable enqueue is
   measured, rate limits off, a fresh DATA_DIR on the machine's disk), 4 client threads with
   keep-alive `http.client` connections posting pre-built batches of 100 and of 500
   messages, rounds interleaved (order rotated) with the floor: the same kind of messages
   one per request to `POST /v1/track`. Reports events/s, p50/p99 request latency, and the
   server's CPU per event and cores busy (from /proc). Goal: ≥ 20,000 events/s on 2 cores,
   durably queued. At the end the server is stopped and the queue file read back
   (`LocalQueue.depth()` and every body parsed): each message answered 200 must be in it
   exactly once. Where the server's CPU goes: its CPU per event next to the route's steps
   timed alone (thread CPU time) in a fresh interpreter configured as the server: JSON
   parse (`NestingScanner` + `json.loads`), `segment.parse_messages`, `queue_bodies`,
   `LocalQueue.send_batch`; a `/v1/track` request minus one message's steps is the fixed
   cost of a request, which a batch shares.
"""

from __future__ import annotations

import base64
import contextlib
import gc
import http.client
import io
import json
import os
import re
import resource
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench._common import (
    EVENTS_TABLE,
    LAYER,
    QUEUE_URL,
    ROOT,
    FakeLambdaContext,
    api_gateway_event,
    apply_env,
    lambda_env,
    load_entry_point,
    median,
    print_table,
    ratio,
    sqs_event,
    standalone_main,
    summary,
    verdict,
)

EVENTS = 1_000
API_BATCH = 100  # messages per /v1/batch request (Segment's SDKs flush at 100 or so)
USERS = 100
CALLS_TARGET = 15.0  # AWS calls per 1,000 events, end to end (issue 14)
EPS_TARGET = 20_000.0  # events/s through the local server's /v1/batch (issue 14)
INFO_ESM_BATCH = 10
CLIENT_THREADS = 4
EVENT_NAMES = ("Song Played", "Message Sent", "Session Started", "Companion Created")
GENRES = ("synthwave", "jazz", "lo-fi", "ambient", "pop")
PLATFORMS = ("iOS", "Android")


def template_batch_size() -> int:
    """The consumer's SQS BatchSize in template.yaml (`EventsQueueBatch`), 100 if not found."""
    try:
        text = (ROOT / "template.yaml").read_text()
    except OSError:
        return 100
    found = re.search(r"EventsQueueBatch:.*?BatchSize:\s*(\d+)", text, re.S)
    return int(found.group(1)) if found else 100


def track_message(n: int, at: datetime) -> dict[str, Any]:
    """One Segment `track` message as a server library sends it (~300 bytes compact)."""
    return {
        "type": "track",
        "userId": f"user-{n % USERS:04d}",
        "event": EVENT_NAMES[n % len(EVENT_NAMES)],
        "properties": {
            "songId": f"s-{n % 997:05d}",
            "durationMs": 1000 + n % 300_000,
            "genre": GENRES[n % len(GENRES)],
        },
        "context": {
            "library": {"name": "analytics-python", "version": "2.3.3"},
            "os": {"name": PLATFORMS[n % len(PLATFORMS)]},
            "locale": "en-US",
        },
        "messageId": str(uuid.UUID(int=(0xB3 << 120) + n)),
        "timestamp": (at - timedelta(milliseconds=n % 5000)).isoformat(timespec="milliseconds"),
    }


def compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def batch_body(messages: list[dict[str, Any]], at: datetime) -> str:
    return compact({"batch": messages, "sentAt": at.isoformat(timespec="milliseconds")})


def basic_auth(key: str) -> str:
    return "Basic " + base64.b64encode(f"{key}:".encode()).decode()


# -- 1. AWS calls per 1,000 events, end to end, against moto ----------------------------


class AwsCalls:
    """Every botocore API call (and HTTP attempt), by phase, service and operation."""

    def __init__(self) -> None:
        self.phase = "setup"
        self.calls: Counter[tuple[str, str, str]] = Counter()
        self.attempts: Counter[tuple[str, str, str]] = Counter()
        # TransactWriteItems of the consumer: (actions, event Puts) per call, and action kinds.
        self.transactions: list[tuple[int, int]] = []
        self.actions: Counter[str] = Counter()
        self.send_entries: list[int] = []

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        from botocore.client import BaseClient
        from botocore.endpoint import Endpoint

        make_api_call = getattr(BaseClient, "_make_api_call")  # noqa: B009
        get_response = getattr(Endpoint, "_get_response")  # noqa: B009
        calls = self

        def counting_call(client: Any, operation_name: str, api_params: Any) -> Any:
            service = client.meta.service_model.service_name
            calls.calls[(calls.phase, service, operation_name)] += 1
            if operation_name == "TransactWriteItems" and calls.phase == "consumer":
                calls._transaction(api_params.get("TransactItems", []))
            if operation_name == "SendMessageBatch" and calls.phase == "api":
                calls.send_entries.append(len(api_params.get("Entries", [])))
            return make_api_call(client, operation_name, api_params)

        def counting_attempt(
            endpoint: Any, request: Any, operation_model: Any, context: Any
        ) -> Any:
            service = operation_model.service_model.service_name
            calls.attempts[(calls.phase, service, operation_model.name)] += 1
            return get_response(endpoint, request, operation_model, context)

        setattr(BaseClient, "_make_api_call", counting_call)  # noqa: B010
        setattr(Endpoint, "_get_response", counting_attempt)  # noqa: B010
        try:
            yield
        finally:
            setattr(BaseClient, "_make_api_call", make_api_call)  # noqa: B010
            setattr(Endpoint, "_get_response", get_response)  # noqa: B010

    def _transaction(self, items: list[dict[str, Any]]) -> None:
        puts = 0
        for action in items:
            kind, body = next(iter(action.items()))
            key = body.get("Item") or body.get("Key") or {}
            sk = key.get("sk", {}).get("S", "?")
            prefix = sk.split("#", 1)[0]
            if kind == "Put" and prefix == "EVENT":
                puts += 1
            self.actions[f"{kind} {prefix}"] += 1
        self.transactions.append((len(items), puts))

    def by_phase(self, phase: str) -> dict[str, int]:
        return {
            f"{service} {op}": n for (p, service, op), n in sorted(self.calls.items()) if p == phase
        }

    def total(self, phase: str) -> int:
        return sum(n for (p, _, _), n in self.calls.items() if p == phase)


@contextlib.contextmanager
def one_rollback_copy_per_transaction() -> Iterator[None]:
    """moto backs a table up for rollback with one deepcopy *per action* of a
    TransactWriteItems call (100 whole-table copies per call: minutes for this benchmark);
    the copies are identical, so make one per call, as tests/support/moto.py does. Only
    moto's speed changes: it still checks and applies every action."""
    import copy
    from types import SimpleNamespace

    import moto.dynamodb.models as moto_dynamodb

    original = moto_dynamodb.DynamoDBBackend.transact_write_items

    def transact_write_items(backend: Any, transact_items: Any) -> Any:
        copies: dict[int, Any] = {}

        def deepcopy(value: Any, memo: Any = None) -> Any:
            if id(value) not in copies:
                copies[id(value)] = copy.deepcopy(value, memo)
            return copies[id(value)]

        setattr(moto_dynamodb, "copy", SimpleNamespace(deepcopy=deepcopy))  # noqa: B010
        try:
            return original(backend, transact_items)
        finally:
            setattr(moto_dynamodb, "copy", copy)  # noqa: B010

    setattr(moto_dynamodb.DynamoDBBackend, "transact_write_items", transact_write_items)  # noqa: B010
    try:
        yield
    finally:
        setattr(moto_dynamodb.DynamoDBBackend, "transact_write_items", original)  # noqa: B010


@contextlib.contextmanager
def retention_check_without_queue_scan() -> Iterator[None]:
    """moto's ReceiveMessage checks each message it returns against the queue's retention
    period by computing *all* the queue's attributes, several of which scan every message:
    O(queue²) per drain, minutes for 1,000 messages. Read the one attribute instead: same
    answer, and moto still hides, counts and returns messages as it does."""
    from moto.core.utils import unix_time
    from moto.sqs.models import SQSBackend

    original = SQSBackend.is_message_valid_based_on_retention_period

    def is_message_valid_based_on_retention_period(
        backend: Any, queue_name: str, message: Any
    ) -> bool:
        retention = int(backend.get_queue(queue_name).message_retention_period)
        return bool(retention + message.sent_timestamp / 1000 > unix_time())

    name = "is_message_valid_based_on_retention_period"
    setattr(SQSBackend, name, is_message_valid_based_on_retention_period)
    try:
        yield
    finally:
        setattr(SQSBackend, name, original)


def _create_resources() -> Any:
    import boto3
    from mysoulmate.storage.dynamodb.store import table_schema

    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.create_queue(QueueName=QUEUE_URL.rsplit("/", 1)[-1])["QueueUrl"]
    if url != QUEUE_URL:
        raise RuntimeError(f"moto made queue {url}, the functions are configured for {QUEUE_URL}")
    boto3.client("dynamodb", region_name="us-east-1").create_table(
        TableName=EVENTS_TABLE, **table_schema()
    )
    return sqs


def _stored_events() -> int:
    import boto3

    client: Any = boto3.client("dynamodb", region_name="us-east-1")
    count, start = 0, None
    while True:
        page = client.scan(
            TableName=EVENTS_TABLE,
            Select="COUNT",
            FilterExpression="begins_with(sk, :event)",
            ExpressionAttributeValues={":event": {"S": "EVENT#"}},
            **({"ExclusiveStartKey": start} if start else {}),
        )
        count += int(page["Count"])
        start = page.get("LastEvaluatedKey")
        if not start:
            return count


def _api_requests(per_request: int, at: datetime) -> list[tuple[str, str]]:
    """The 1,000 events as requests: one per `/v1/track`, or `/v1/batch` of ``per_request``."""
    messages = [track_message(n, at) for n in range(EVENTS)]
    if per_request == 1:
        return [("/v1/track", compact(m)) for m in messages]
    return [
        ("/v1/batch", batch_body(messages[i : i + per_request], at))
        for i in range(0, EVENTS, per_request)
    ]


def run_path(label: str, per_request: int, esm_batch: int) -> dict[str, Any]:
    """One path end to end in a fresh moto account, with fresh function instances."""
    import mysoulmate.runtime.backends as backends
    from moto import mock_aws
    from mysoulmate.analytics.write_keys import create_source

    calls = AwsCalls()
    seconds: dict[str, float] = {}
    at = datetime.now(UTC)
    requests = _api_requests(per_request, at)
    with (
        mock_aws(),
        one_rollback_copy_per_transaction(),
        retention_check_without_queue_scan(),
        calls.installed(),
        contextlib.redirect_stdout(io.StringIO()),
    ):
        backends.reset_backends()  # also forgets cached write keys: a cold cache
        sqs = _create_resources()
        _, key = create_source(backends.source_store(), "bench", "server", at)
        instance = re.sub(r"\W+", "_", label)
        analytics = load_entry_point("analytics", instance).handler
        consumer = load_entry_point("consumer", instance).handler
        context = FakeLambdaContext()

        calls.phase = "api"
        started = time.perf_counter()
        for n, (path, body) in enumerate(requests):
            event = api_gateway_event("POST", path, body)
            event["headers"]["authorization"] = basic_auth(key)
            event["requestContext"]["requestId"] = f"bench-{n:06d}"
            response = analytics(event, context)
            answer = json.loads(response.get("body") or "{}")
            if response["statusCode"] != 200 or answer != {"success": True, "rejected": []}:
                raise RuntimeError(f"{label}: {path} answered {response['statusCode']}: {answer}")
        seconds["api"] = time.perf_counter() - started

        started = time.perf_counter()
        received: list[dict[str, Any]] = []
        calls.phase = "esm"
        while True:
            got = sqs.receive_message(
                QueueUrl=QUEUE_URL, MaxNumberOfMessages=10, WaitTimeSeconds=0
            ).get("Messages", [])
            if not got:
                break
            received.extend(got)
        failures = 0
        invocations = 0
        for offset in range(0, len(received), esm_batch):
            chunk = received[offset : offset + esm_batch]
            event = sqs_event([m["Body"] for m in chunk], offset)
            calls.phase = "consumer"
            response = consumer(event, context)
            invocations += 1
            calls.phase = "esm"
            failed = {f["itemIdentifier"] for f in response.get("batchItemFailures", [])}
            failures += len(failed)
            done = [
                m for n, m in enumerate(chunk) if event["Records"][n]["messageId"] not in failed
            ]
            for start in range(0, len(done), 10):
                sqs.delete_message_batch(
                    QueueUrl=QUEUE_URL,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                        for i, m in enumerate(done[start : start + 10])
                    ],
                )
        seconds["esm_and_consumer"] = time.perf_counter() - started

        calls.phase = "check"
        stored = _stored_events()
        left = int(
            sqs.get_queue_attributes(
                QueueUrl=QUEUE_URL,
                AttributeNames=[
                    "ApproximateNumberOfMessages",
                    "ApproximateNumberOfMessagesNotVisible",
                ],
            )["Attributes"]["ApproximateNumberOfMessagesNotVisible"]
        )
    backends.reset_backends()
    if stored != EVENTS or failures or left:
        raise RuntimeError(
            f"{label}: {stored} of {EVENTS} events stored, {failures} failures, {left} in flight"
        )
    retries = sum(calls.attempts.values()) - sum(calls.calls.values())
    product = calls.total("api") + calls.total("consumer")
    tx_actions = [a for a, _ in calls.transactions]
    tx_puts = [p for _, p in calls.transactions]
    return {
        "requests": len(requests),
        "queue_messages": len(received),
        "consumer_invocations": invocations,
        "consumer_batch_size": esm_batch,
        "events_stored": stored,
        "calls_per_1000_events": product / EVENTS * 1000,
        "calls_total": product,
        "calls": {phase: calls.by_phase(phase) for phase in ("api", "consumer", "esm")},
        "calls_total_by_phase": {p: calls.total(p) for p in ("api", "consumer", "esm")},
        "http_attempts_minus_calls": retries,
        "send_message_batch_entries": summary([float(n) for n in calls.send_entries]),
        "transactions": {
            "count": len(calls.transactions),
            "actions_median": median(tx_actions),
            "event_puts_median": median(tx_puts),
            "event_puts_total": sum(tx_puts),
            "actions_by_kind": dict(calls.actions.most_common()),
        },
        "seconds_against_moto": seconds,
        "target": CALLS_TARGET,
        "verdict": verdict(product / EVENTS * 1000, CALLS_TARGET),
    }


def run_aws_calls(quick: bool) -> dict[str, Any]:
    esm_batch = template_batch_size()
    paths: dict[str, tuple[int, int]] = {
        f"/v1/batch x {API_BATCH} msgs, SQS events of {esm_batch}": (API_BATCH, esm_batch),
        f"floor: /v1/track, 1 msg/request, SQS events of {esm_batch}": (1, esm_batch),
        f"info: /v1/batch x 500 msgs, SQS events of {esm_batch}": (500, esm_batch),
    }
    if not quick:
        # Each batch body delivered alone: what the consumer costs when requests arrive
        # further apart than the mapping's batching window (5 s in template.yaml).
        paths[f"info: /v1/batch x {API_BATCH} msgs, SQS events of 1"] = (API_BATCH, 1)
        paths[f"info: /v1/track, 1 msg/request, SQS events of {INFO_ESM_BATCH}"] = (
            1,
            INFO_ESM_BATCH,
        )
    results = {label: run_path(label, pr, batch) for label, (pr, batch) in paths.items()}
    floor = results[list(paths)[1]]["calls_per_1000_events"]
    rows = []
    for label, r in results.items():
        c = r["calls"]
        rows.append(
            [
                label,
                r["requests"],
                r["queue_messages"],
                r["consumer_invocations"],
                r["calls_per_1000_events"],
                ", ".join(f"{k} {v}" for k, v in c["api"].items()),
                ", ".join(f"{k.split()[1]} {v}" for k, v in c["consumer"].items()),
                ratio(r["calls_per_1000_events"], floor),
                r["verdict"] if "floor" not in label and "info" not in label else "",
            ]
        )
    print_table(
        [
            f"{EVENTS:,} events, moto",
            "requests",
            "SQS msgs",
            "invocations",
            "calls/1,000",
            "api (analytics handler)",
            "consumer (dynamodb)",
            "÷ floor",
            f"target ≤{CALLS_TARGET:.0f}",
        ],
        rows,
        title="AWS API calls per 1,000 events, API → SQS → consumer → DynamoDB",
    )
    print_table(
        ["not counted: the event source mapping's SQS calls (made by the bench)", "calls"],
        [
            [label, ", ".join(f"{k} {v}" for k, v in r["calls"]["esm"].items())]
            for label, r in results.items()
        ],
    )
    print_table(
        [
            "consumer TransactWriteItems",
            "calls",
            "actions (median)",
            "events (median)",
            "action kinds",
        ],
        [
            [
                label,
                r["transactions"]["count"],
                r["transactions"]["actions_median"],
                r["transactions"]["event_puts_median"],
                ", ".join(f"{k} {v}" for k, v in r["transactions"]["actions_by_kind"].items()),
            ]
            for label, r in results.items()
        ],
        title="Where the consumer's calls go (each transaction ≤ 100 actions)",
    )
    for label, r in results.items():
        if r["http_attempts_minus_calls"]:
            print(f"{label}: {r['http_attempts_minus_calls']} retried HTTP attempts")
    return {"paths": results, "consumer_batch_size": esm_batch, "events": EVENTS}


# -- 2. events/s through the local server ------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """`mysoulmate serve` in its own process group, on a free loopback port."""

    def __init__(self, env: dict[str, str], data_dir: Path) -> None:
        self.port = free_port()
        script = Path(sys.executable).parent / "mysoulmate"
        command = (
            [str(script)] if script.exists() else [sys.executable, "-m", "mysoulmate.runtime.cli"]
        )
        self.command = [*command, "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        self.env = env
        self.log = data_dir.parent / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, within: float = 60) -> None:
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                self.command,
                env=self.env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}: {self.tail()}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
                conn.request("GET", "/health")
                if conn.getresponse().status == 200:
                    conn.close()
                    return
                conn.close()
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server not ready within {within} s: {self.tail()}")

    def cpu_seconds(self) -> float:
        assert self.proc is not None
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)

    def tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-3000:]
        except OSError:
            return ""


def server_env(base: dict[str, str], data_dir: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in base.items()
        if not k.startswith(("AWS_", "POWERTOOLS_", "RATE_LIMIT_", "DATABASE_", "SENTRY_"))
        and k not in ("STORAGE_BACKEND", "QUEUE_BACKEND", "AUTH_MODE", "EVENTS_QUEUE_URL")
    }
    env.update(
        {
            "STAGE": "local",
            "DATA_DIR": str(data_dir),
            "STORAGE_BACKEND": "sqlite",
            "QUEUE_BACKEND": "local",
            "WORKER_ENABLED": "false",
            "RATE_LIMIT_INGEST_PER_SECOND": "0",
            "RATE_LIMIT_READ_PER_SECOND": "0",
            "LOG_LEVEL": "WARNING",
            "PYTHONPATH": os.pathsep.join(
                p for p in (str(LAYER), str(ROOT), base.get("PYTHONPATH", "")) if p
            ),
        }
    )
    return env


class Shape:
    def __init__(self, name: str, path: str, per_request: int, requests: int) -> None:
        self.name, self.path, self.per_request, self.requests = name, path, per_request, requests


class Bodies:
    """Pre-built request bodies with unique message ids, handed out in order."""

    def __init__(self, at: datetime) -> None:
        self.at = at
        self.next_id = 0

    def take(self, shape: Shape, requests: int) -> tuple[list[bytes], list[str]]:
        bodies: list[bytes] = []
        ids: list[str] = []
        for _ in range(requests):
            messages = [track_message(self.next_id + i, self.at) for i in range(shape.per_request)]
            self.next_id += shape.per_request
            ids.extend(m["messageId"] for m in messages)
            text = (
                compact(messages[0]) if shape.path == "/v1/track" else batch_body(messages, self.at)
            )
            bodies.append(text.encode())
        return bodies, ids


def load(port: int, path: str, bodies: list[bytes], key: str) -> dict[str, Any]:
    """Post ``bodies`` over CLIENT_THREADS keep-alive connections; time the whole and each."""
    headers = {
        "Content-Type": "application/json",
        "Authorization": basic_auth(key),
        "Connection": "keep-alive",
    }
    barrier = threading.Barrier(CLIENT_THREADS + 1)
    latencies: list[list[float]] = [[] for _ in range(CLIENT_THREADS)]
    statuses: list[Counter[int]] = [Counter() for _ in range(CLIENT_THREADS)]
    bad: list[str] = []

    def client(k: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.connect()
        mine, status, lat = bodies[k::CLIENT_THREADS], statuses[k], latencies[k]
        barrier.wait()
        for body in mine:
            start = time.perf_counter()
            conn.request("POST", path, body, headers)
            response = conn.getresponse()
            data = response.read()
            lat.append(time.perf_counter() - start)
            status[response.status] += 1
            if response.status != 200 and len(bad) < 3:
                bad.append(f"{response.status} {data[:300]!r}")
        conn.close()

    threads = [
        threading.Thread(target=client, args=(k,), daemon=True) for k in range(CLIENT_THREADS)
    ]
    for t in threads:
        t.start()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    merged: Counter[int] = Counter()
    for s in statuses:
        merged.update(s)
    return {
        "elapsed": elapsed,
        "latencies": [x for lat in latencies for x in lat],
        "statuses": dict(merged),
        "bad": bad,
        "client_cpu": (after.ru_utime - usage.ru_utime) + (after.ru_stime - usage.ru_stime),
    }


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def read_queue(data_dir: Path) -> dict[str, Any]:
    """Depth as `LocalQueue.depth()` reports it, and every queued message id (bodies parsed)."""
    from mysoulmate.queue.local import LocalQueue

    path = data_dir / "queue.db"
    queue = LocalQueue(path)
    waiting, dead = queue.depth()
    queue.close()
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    ids: Counter[str] = Counter()
    per_body: Counter[int] = Counter()
    for (body,) in conn.execute("SELECT body FROM messages"):
        document = json.loads(body)
        messages = document.get("batch", [document])
        per_body[len(messages)] += 1
        ids.update(m["messageId"] for m in messages)
    conn.close()
    return {"depth": waiting, "dead_letters": dead, "ids": ids, "messages_per_body": per_body}


CHILD_MARK = "BENCH_CHILD "
FSYNC_WALL = "LocalQueue.send_batch, wall time (fsync included)"
# What any ingest that validates into our queued message must do, with none of Segment's
# rules: json.loads of the body, one QueuedMessage per message (its storability
# validators), its JSON for the queue. Not one of the route's steps: a floor under them.
VALIDATION_FLOOR = "floor: json.loads + QueuedMessage + its JSON (no Segment rules)"


def route_steps_child(requests: int) -> dict[str, float]:
    """µs per request of the /v1/batch route's own steps, timed in a fresh interpreter
    configured as the server is (no Lambda environment): JSON parse, `parse_messages`,
    `queue_bodies`, `LocalQueue.send_batch` into a queue file in DATA_DIR."""
    from mysoulmate.analytics import packing, segment
    from mysoulmate.analytics.models import QueuedMessage
    from mysoulmate.analytics.pii import PiiPolicy
    from mysoulmate.analytics.write_keys import new_source
    from mysoulmate.api.segment import decoded_body, parsed_json
    from mysoulmate.core.settings import get_settings
    from mysoulmate.queue.local import LocalQueue

    settings = get_settings()
    at = datetime.now(UTC)
    bodies = [
        batch_body([track_message(r * API_BATCH + i, at) for i in range(API_BATCH)], at).encode()
        for r in range(requests)
    ]
    source, _ = new_source("bench", "server", at)
    queue = LocalQueue(settings.data_dir / "steps-queue.db")
    names = (
        "JSON: NestingScanner + json.loads",
        "segment.parse_messages (validate, normalize, PII)",
        "segment.queue_bodies (QueuedMessage JSON)",
        "LocalQueue.send_batch (INSERT, COMMIT; CPU only)",
    )
    spent: dict[str, list[float]] = {name: [] for name in names}
    spent[FSYNC_WALL] = []
    spent[VALIDATION_FLOOR] = []
    cpu = time.thread_time  # CPU time: other processes on the machine do not inflate it
    for n, raw in enumerate(bodies):
        t0 = cpu()
        # One nesting scan, as the middleware does for a plain body.
        document = parsed_json(decoded_body(raw, None), scan_nesting=True)
        t1 = cpu()
        intake = segment.Intake(
            source=source,
            received_at=datetime.now(UTC),
            request_id=f"steps-{n}",
            max_future_seconds=settings.max_future_seconds,
            client_max_age=timedelta(days=settings.client_event_max_age_days),
            pii=PiiPolicy(enabled=settings.pii_filter, contact_mode=settings.pii_contact_mode),
            batch_sent_at=segment.sent_at_of(document),
        )
        parsed = segment.parse_messages(document["batch"], intake, None)
        t2 = cpu()
        packed = packing.queue_bodies(parsed.messages)
        t3 = cpu()
        wall = time.perf_counter()
        queue.send_batch(packed)
        wall = time.perf_counter() - wall
        t4 = cpu()
        if len(parsed.messages) != API_BATCH:
            raise RuntimeError(f"steps: {len(parsed.rejected)} messages rejected")
        for name, seconds in zip(names, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            spent[name].append(seconds * 1e6)
        spent[FSYNC_WALL].append(wall * 1e6)
        t5 = cpu()
        for raw_message in json.loads(raw)["batch"]:
            QueuedMessage(
                type="track",
                messageId=raw_message["messageId"],
                userId=raw_message["userId"],
                event=raw_message["event"],
                properties=raw_message["properties"],
                context=raw_message["context"],
                timestamp=raw_message["timestamp"],
                receivedAt=at,
            ).model_dump_json(exclude_none=True)
        spent[VALIDATION_FLOOR].append((cpu() - t5) * 1e6)
    queue.close()
    warm = requests // 5  # the first requests pay for imports and caches
    return {name: median(values[warm:]) for name, values in spent.items()}


def route_steps(base_env: dict[str, str], data_dir: Path, quick: bool) -> dict[str, float]:
    env = server_env(base_env, data_dir)
    args = [sys.executable, "-m", "bench.ingest", "--steps-child", "30" if quick else "100"]
    proc = subprocess.run(args, env=env, cwd=ROOT, capture_output=True, text=True, check=False)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith(CHILD_MARK)), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"steps child failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return json.loads(line[len(CHILD_MARK) :])  # type: ignore[no-any-return]


def run_server(quick: bool, base_env: dict[str, str]) -> dict[str, Any]:
    from mysoulmate.analytics.write_keys import create_source
    from mysoulmate.storage.sqlite.sources import SqliteSourceStore

    rounds = 1 if quick else 5
    shapes = [
        Shape(f"/v1/batch, {API_BATCH} msgs", "/v1/batch", API_BATCH, 40 if quick else 120),
        Shape("/v1/batch, 500 msgs", "/v1/batch", 500, 8 if quick else 24),
        Shape("floor: /v1/track, 1 msg", "/v1/track", 1, 400 if quick else 900),
    ]
    warmup = {shape.name: 10 for shape in shapes}
    bodies = Bodies(datetime.now(UTC))
    sent: Counter[str] = Counter()
    samples: dict[str, dict[str, list[float]]] = {
        s.name: {"events_per_second": [], "server_cpu_us_per_event": [], "server_cores": []}
        for s in shapes
    }
    latencies: dict[str, list[float]] = {s.name: [] for s in shapes}
    client_cpu: dict[str, list[float]] = {s.name: [] for s in shapes}
    statuses: dict[str, Counter[int]] = {s.name: Counter() for s in shapes}
    with tempfile.TemporaryDirectory(prefix="mysoulmate-bench-ingest-") as tmp:
        data_dir = Path(tmp) / "data"
        data_dir.mkdir()
        store = SqliteSourceStore(data_dir / "analytics.db")
        _, key = create_source(store, "bench", "server", datetime.now(UTC))
        store.close()
        server = Server(server_env(base_env, data_dir), data_dir)
        server.start()
        try:
            for shape in shapes:  # warm-up: imports, caches, the write-key lookup
                warm, ids = bodies.take(shape, warmup[shape.name])
                out = load(server.port, shape.path, warm, key)
                if out["statuses"] != {200: len(warm)}:
                    raise RuntimeError(
                        f"{shape.name}: warm-up answered {out['statuses']} {out['bad']}"
                    )
                sent.update(ids)
            for r in range(rounds):
                order = shapes[r % len(shapes) :] + shapes[: r % len(shapes)]
                for shape in order:
                    batch, ids = bodies.take(shape, shape.requests)
                    gc.collect()
                    cpu_before = server.cpu_seconds()
                    out = load(server.port, shape.path, batch, key)
                    cpu = server.cpu_seconds() - cpu_before
                    statuses[shape.name].update(out["statuses"])
                    if out["statuses"] != {200: len(batch)}:
                        raise RuntimeError(f"{shape.name}: answered {out['statuses']} {out['bad']}")
                    sent.update(ids)
                    events = len(ids)
                    s = samples[shape.name]
                    s["events_per_second"].append(events / out["elapsed"])
                    s["server_cpu_us_per_event"].append(cpu / events * 1e6)
                    s["server_cores"].append(cpu / out["elapsed"])
                    latencies[shape.name].extend(out["latencies"])
                    client_cpu[shape.name].append(out["client_cpu"] / events * 1e6)
                print(f"  round {r + 1}/{rounds} done", flush=True)
        finally:
            server.stop()
        log_tail = server.tail()
        queued = read_queue(data_dir)
        steps_dir = Path(tmp) / "steps"
        steps_dir.mkdir()
        steps = route_steps(base_env, steps_dir, quick)

    lost = sum((Counter(sent) - queued["ids"]).values())
    extra = sum((queued["ids"] - Counter(sent)).values())
    verified = {
        "events_answered_200": sum(sent.values()),
        "messages_in_queue": sum(queued["ids"].values()),
        "queue_depth_rows": queued["depth"],
        "dead_letters": queued["dead_letters"],
        "messages_per_body": {str(k): v for k, v in sorted(queued["messages_per_body"].items())},
        "bodies_from_messages_per_body": sum(queued["messages_per_body"].values()),
        "lost": lost,
        "duplicated_or_unknown": extra,
        "ok": lost == 0
        and extra == 0
        and queued["depth"] == sum(queued["messages_per_body"].values()),
    }
    if not verified["ok"]:
        raise RuntimeError(f"queue check failed: {verified}\n{log_tail}")

    floor_name = shapes[-1].name
    floor = median(samples[floor_name]["events_per_second"])
    rows, results = [], {}
    for shape in shapes:
        s = samples[shape.name]
        eps = median(s["events_per_second"])
        lat = latencies[shape.name]
        is_goal = shape.path == "/v1/batch"
        results[shape.name] = {
            "path": shape.path,
            "messages_per_request": shape.per_request,
            "requests_per_round": shape.requests,
            "events_per_second": summary(s["events_per_second"]),
            "latency_ms": {
                "p50": percentile(lat, 0.50) * 1e3,
                "p99": percentile(lat, 0.99) * 1e3,
                "max": max(lat) * 1e3,
                "n": len(lat),
            },
            "server_cpu_us_per_event": summary(s["server_cpu_us_per_event"]),
            "server_cores_busy": summary(s["server_cores"]),
            "client_cpu_us_per_event": median(client_cpu[shape.name]),
            "ratio_vs_floor": ratio(eps, floor),
            "statuses": dict(statuses[shape.name]),
        }
        if is_goal:
            results[shape.name]["target"] = EPS_TARGET
            results[shape.name]["verdict"] = (
                "met" if eps >= EPS_TARGET else f"MISSED by {1 - eps / EPS_TARGET:.0%}"
            )
        rows.append(
            [
                shape.name,
                shape.requests * rounds,
                eps,
                summary(s["events_per_second"])["p25"],
                summary(s["events_per_second"])["p75"],
                percentile(lat, 0.50) * 1e3,
                percentile(lat, 0.99) * 1e3,
                median(s["server_cpu_us_per_event"]),
                median(s["server_cores"]),
                ratio(eps, floor),
                results[shape.name].get("verdict", ""),
            ]
        )
    print_table(
        [
            f"mysoulmate serve, {CLIENT_THREADS} clients",
            "requests",
            "events/s",
            "p25",
            "p75",
            "p50 ms",
            "p99 ms",
            "server CPU µs/event",
            "server cores",
            "x floor",
            f"target ≥{EPS_TARGET:,.0f}/s",
        ],
        rows,
        title=f"Durable enqueue through the local server, median of {rounds} round(s)",
    )
    # The server's CPU per event (from /proc, the rounds above) next to the route's steps
    # timed alone; a /v1/track request minus one message's steps is the fixed cost of a
    # request (HTTP, ASGI, FastAPI, write-key check, answer), which batches share.
    cpu_per_event = {s.name: median(samples[s.name]["server_cpu_us_per_event"]) for s in shapes}
    info_steps = (FSYNC_WALL, VALIDATION_FLOOR)
    cpu_steps = {name: us / API_BATCH for name, us in steps.items() if name not in info_steps}
    steps_total = sum(cpu_steps.values())
    floor_request = cpu_per_event[shapes[-1].name]
    fixed = floor_request - steps_total
    budget = 1e6 / EPS_TARGET

    def share(us: float, whole: float) -> str:
        return f"{us / whole:.0%}" if whole else "-"

    print_table(
        ["server CPU per event", "µs", f"share of the {API_BATCH}-batch figure"],
        [
            [
                f"in the server, {s.name} (from /proc)",
                cpu_per_event[s.name],
                share(cpu_per_event[s.name], cpu_per_event[shapes[0].name]),
            ]
            for s in shapes
        ]
        + [
            [f"  step alone: {name}", us, share(us, cpu_per_event[shapes[0].name])]
            for name, us in cpu_steps.items()
        ]
        + [
            [
                "  the steps together",
                steps_total,
                share(steps_total, cpu_per_event[shapes[0].name]),
            ],
            [
                f"  fixed per request (/v1/track minus steps), ÷ {API_BATCH}",
                fixed / API_BATCH,
                share(fixed / API_BATCH, cpu_per_event[shapes[0].name]),
            ],
            [f"info: {FSYNC_WALL}", steps[FSYNC_WALL] / API_BATCH, ""],
            [f"info: {VALIDATION_FLOOR}", steps[VALIDATION_FLOOR] / API_BATCH, ""],
            [f"budget for {EPS_TARGET:,.0f} events/s on one busy core", budget, ""],
        ],
        title="Where the server's CPU goes, per event: the route's steps timed alone (thread "
        f"CPU time, batches of {API_BATCH}, a fresh interpreter configured as the server)",
    )
    print(
        f"queue check: {verified['events_answered_200']:,} events answered 200, "
        f"{verified['messages_in_queue']:,} messages in {verified['queue_depth_rows']:,} queue "
        f"bodies (messages per body: {verified['messages_per_body']}), lost {lost}, "
        f"duplicated {extra}"
    )
    return {
        "client_threads": CLIENT_THREADS,
        "rounds": rounds,
        "shapes": results,
        "route_steps_us_per_request": steps,
        "server_cpu_breakdown": {
            "server_us_per_event": cpu_per_event,
            "steps_us_per_message": cpu_steps,
            "steps_us_per_message_total": steps_total,
            "fixed_us_per_request": fixed,
            "budget_us_per_event_one_core": budget,
            "validation_floor_us_per_event": steps[VALIDATION_FLOOR] / API_BATCH,
        },
        "queue_check": verified,
    }


def run(quick: bool) -> dict[str, Any]:
    base_env = dict(os.environ)
    apply_env(lambda_env("analytics"))
    aws = run_aws_calls(quick)
    server = run_server(quick, base_env)
    return {"aws_calls": aws, "local_server": server}


if __name__ == "__main__":
    if "--steps-child" in sys.argv:
        count = int(sys.argv[sys.argv.index("--steps-child") + 1])
        print(CHILD_MARK + json.dumps(route_steps_child(count)), flush=True)
    else:
        standalone_main("ingest", run)
