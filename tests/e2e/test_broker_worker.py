"""`mysoulmate worker` as a process: SIGTERM in the middle of a batch finishes the batch,
acks it and exits 0, with every message either stored or still queued, never both."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from mysoulmate.queue.rabbitmq import RabbitQueue
from mysoulmate.storage.postgres.migrate import migrate

from tests.support.messages import jan, track
from tests.support.postgres import scratch_database
from tests.support.rabbitmq import (
    BROKER_URL,
    WorkerProcess,
    depth,
    drain,
    scratch_queue,
    wait_for_consumers,
)
from tests.support.server import server_env

pytestmark = pytest.mark.slow
MESSAGES = 200
BATCH = 50


@pytest.fixture
def database() -> Iterator[str]:
    with scratch_database() as conninfo:
        migrate(conninfo)
        yield conninfo


@pytest.fixture
def queue_name() -> Iterator[str]:
    with scratch_queue() as name:
        yield name


def stored_ids(conninfo: str) -> list[str]:
    with psycopg.connect(conninfo) as conn:
        return [row[0] for row in conn.execute("SELECT message_id FROM events")]


def waiting_on_a_lock(conninfo: str) -> bool:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        ).fetchone()
    return bool(row and row[0])


def test_sigterm_mid_batch_acks_the_batch_in_hand_and_exits_0(
    isolated_env: Path, tmp_path: Path, database: str, queue_name: str
) -> None:
    ids = [f"t-{i:03d}" for i in range(MESSAGES)]
    producer = RabbitQueue(BROKER_URL, queue=queue_name)
    producer.send_batch([track("tess", "tap", jan(5), message_id=i).model_dump_json() for i in ids])
    producer.close()
    env = server_env(
        isolated_env,
        QUEUE_BACKEND="rabbitmq",
        RABBITMQ_QUEUE=queue_name,
        STORAGE_BACKEND="postgres",
        DATABASE_URL=database,
        WORKER_BATCH_SIZE=str(BATCH),
    )
    worker = WorkerProcess(env, tmp_path / "worker.log")
    try:
        with psycopg.connect(database) as blocker:
            # Inserts into events wait behind this lock: the worker's first batch is held
            # mid-write, deliveries in hand and unacked, when SIGTERM arrives.
            blocker.execute("LOCK TABLE events IN SHARE MODE")
            worker.start()
            wait_for_consumers(queue_name, 1)
            deadline = time.monotonic() + 30
            while not waiting_on_a_lock(database):
                assert time.monotonic() < deadline, worker.log()
                time.sleep(0.05)
            worker.signal(signal.SIGTERM)
            time.sleep(1)
            assert worker.running, "it left without finishing its batch"
            blocker.rollback()  # storage answers again
        assert worker.wait(within=20) == 0, worker.log()
    finally:
        worker.kill()
    stored = stored_ids(database)
    left = [body for body, _ in drain(queue_name)]
    left_ids = [i for i in ids if any(f'"{i}"'.encode() in body for body in left)]
    assert len(stored) >= BATCH, "the batch in hand was not stored"
    assert len(set(stored)) == len(stored)
    assert not set(stored) & set(left_ids), "stored and still queued: it would be redone"
    assert sorted([*stored, *left_ids]) == ids, "a message was lost"
    assert len(left) == MESSAGES - len(stored)
    assert depth(f"{queue_name}-dlq") == 0
    assert '"message":"worker stopped"' in worker.log()


def test_the_worker_serves_its_metrics_for_prometheus(
    isolated_env: Path, tmp_path: Path, database: str, queue_name: str
) -> None:
    import socket
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    producer = RabbitQueue(BROKER_URL, queue=queue_name)
    producer.send_batch(
        [track("ula", "tap", jan(5), message_id=f"u-{i}").model_dump_json() for i in range(3)]
    )
    producer.close()
    env = server_env(
        isolated_env,
        QUEUE_BACKEND="rabbitmq",
        RABBITMQ_QUEUE=queue_name,
        STORAGE_BACKEND="postgres",
        DATABASE_URL=database,
        WORKER_METRICS_PORT=str(port),
    )
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    try:
        deadline = time.monotonic() + 30
        while len(stored_ids(database)) < 3:
            assert time.monotonic() < deadline, worker.log()
            time.sleep(0.1)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            text = answer.read().decode()
        assert "mysoulmate_events_stored_total" in text
        stored_line = [
            line for line in text.splitlines() if line.startswith("mysoulmate_events_stored_total")
        ]
        (line,) = stored_line
        assert float(line.split()[-1]) == 3
    finally:
        worker.stop()
