"""The container shape with several processes: 3 `mysoulmate serve` and 2 `mysoulmate worker`
sharing RabbitMQ and PostgreSQL. A bounded stream of events with unique ids goes to the
three APIs; one worker and one API are SIGKILLed mid-stream and restarted; every event
that was accepted (2xx) ends up stored exactly once. Also: the local queue is refused to a
second process."""

from __future__ import annotations

import itertools
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psycopg
import pytest
from mysoulmate.storage.postgres.migrate import migrate
from mysoulmate.storage.postgres.store import PostgresEventStore

from tests.support.helpers import make_token
from tests.support.postgres import scratch_database
from tests.support.rabbitmq import (
    WorkerProcess,
    depth,
    scratch_queue,
    wait_for_consumers,
)
from tests.support.server import BIN, ServerProcess, free_port, mysoulmate_serve, server_env

pytestmark = pytest.mark.slow

APIS, WORKERS = 3, 2
EVENTS, PER_REQUEST, USERS = 3000, 20, 10
BATCH = "/api/v1/analytics/batch"
Request = tuple[str, list[str]]  # (user, the messageIds it carries)


@pytest.fixture
def database() -> Iterator[str]:
    with scratch_database() as conninfo:
        migrate(conninfo)
        yield conninfo


@pytest.fixture
def queue_name() -> Iterator[str]:
    with scratch_queue() as name:
        yield name


class Sender:
    """Posts batches round-robin over the APIs; a request that fails (connection refused or
    reset, 5xx) is sent again, same messageIds, to the next API. Records what was accepted."""

    def __init__(self, apis: Sequence[ServerProcess]) -> None:
        self._apis = apis
        self._turn = itertools.count()
        self._tokens = {f"u{n}": make_token(f"u{n}") for n in range(USERS)}
        self._lock = threading.Lock()
        self.accepted: set[str] = set()
        self.retries = 0
        self.done = 0
        self.sending = 0.0  # seconds spent posting (restarts excluded)

    def post(self, request: Request) -> None:
        user, ids = request
        body = {"batch": [{"type": "track", "event": "tap", "messageId": i} for i in ids]}
        headers = {"Authorization": f"Bearer {self._tokens[user]}"}
        for _ in range(20):
            api = self._apis[next(self._turn) % len(self._apis)]
            try:
                response = httpx.post(f"{api.url}{BATCH}", json=body, headers=headers, timeout=10)
            except httpx.TransportError:
                response = None
            if response is not None and response.is_success:
                rejected = {r["index"] for r in response.json()["rejected"]}
                with self._lock:
                    self.accepted.update(i for n, i in enumerate(ids) if n not in rejected)
                    self.done += 1
                return
            with self._lock:
                self.retries += 1
            time.sleep(0.05)
        raise AssertionError(f"no API accepted the batch of {user}")

    def send(self, requests: Sequence[Request], threads: int = 6) -> None:
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=threads) as pool:
            list(pool.map(self.post, requests))
        self.sending += time.perf_counter() - started


def stored(conninfo: str, ids: set[str]) -> int:
    with psycopg.connect(conninfo) as conn:
        row = conn.execute(
            "SELECT count(*) FROM events WHERE message_id = ANY(%s)", (list(ids),)
        ).fetchone()
    return int(row[0]) if row else 0


def test_three_apis_and_two_workers_lose_nothing_when_killed_mid_stream(
    isolated_env: Path, tmp_path: Path, database: str, queue_name: str
) -> None:
    env = {
        "QUEUE_BACKEND": "rabbitmq",
        "RABBITMQ_QUEUE": queue_name,
        "STORAGE_BACKEND": "postgres",
        "DATABASE_URL": database,
        "DATABASE_POOL_SIZE": "2",
        "WORKER_BATCH_SIZE": "100",
        "WORKER_POLL_INTERVAL_SECONDS": "0.05",
    }
    apis = [mysoulmate_serve(isolated_env / f"api{n}", **env) for n in range(APIS)]
    workers = [
        WorkerProcess(server_env(isolated_env, **env), tmp_path / f"worker{n}.log")
        for n in range(WORKERS)
    ]
    ids = [f"sp-{n:05d}" for n in range(EVENTS)]
    requests: list[Request] = [
        (f"u{(n // PER_REQUEST) % USERS}", ids[n : n + PER_REQUEST])
        for n in range(0, EVENTS, PER_REQUEST)
    ]
    third = len(requests) // 3
    try:
        for worker in workers:
            worker.start()
        with ThreadPoolExecutor(max_workers=APIS) as pool:
            list(pool.map(ServerProcess.start, apis))
        wait_for_consumers(queue_name, WORKERS)
        sender = Sender(apis)
        started = time.perf_counter()

        sender.send(requests[:third])
        # Mid-stream: one worker and one API die (SIGKILL) while the next third is posted.
        killer = threading.Thread(target=kill_when, args=(sender, third + 10, workers[0], apis[0]))
        killer.start()
        sender.send(requests[third : 2 * third])
        killer.join()
        # Both come back (same port, same queue) and take their share of the last third.
        workers[0].start()
        apis[0].start()
        wait_for_consumers(queue_name, WORKERS)
        sender.send(requests[2 * third :])

        deadline = time.monotonic() + 60
        while stored(database, sender.accepted) < len(sender.accepted):
            assert time.monotonic() < deadline, "accepted events are missing from storage"
            time.sleep(0.1)
        elapsed = time.perf_counter() - started
    finally:
        for process in [*apis, *workers]:
            process.stop()

    assert len(sender.accepted) == EVENTS  # a failed post was retried until accepted
    assert stored(database, sender.accepted) == EVENTS
    store = PostgresEventStore(database, pool_size=1)
    try:
        today = datetime.now(UTC).date()
        counted = sum(row.events for row in store.rollup_counts(today, today) if row.event == "tap")
    finally:
        store.close()
    assert counted == EVENTS, "a redelivered or re-sent event was counted twice"
    assert depth(queue_name) == 0
    assert depth(f"{queue_name}-dlq") == 0
    # The APIs ran no in-process worker and opened no local queue: the workers did the work.
    assert not any((isolated_env / f"api{n}" / "queue.db").exists() for n in range(APIS))
    print(
        f"\n{APIS} APIs + {WORKERS} workers: {EVENTS} events accepted in {sender.sending:.1f} s "
        f"of posting ({EVENTS / sender.sending:.0f} events/s); all stored {elapsed:.1f} s "
        f"after the first post, restarts included ({EVENTS / elapsed:.0f} events/s end to "
        f"end); {sender.retries} request(s) retried"
    )


def kill_when(sender: Sender, done: int, worker: WorkerProcess, api: ServerProcess) -> None:
    deadline = time.monotonic() + 60
    while sender.done < done and time.monotonic() < deadline:
        time.sleep(0.01)
    worker.kill()
    api.kill()


def test_a_second_server_on_the_same_local_queue_is_refused(isolated_env: Path) -> None:
    first = mysoulmate_serve(isolated_env, QUEUE_BACKEND="local").start()
    try:
        second = mysoulmate_serve(isolated_env, QUEUE_BACKEND="local")
        result = subprocess.run(
            [str(BIN / "mysoulmate"), "serve", "--port", str(second.port)],
            env=server_env(isolated_env, QUEUE_BACKEND="local"),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        first.stop()
    assert result.returncode == 2
    assert "QUEUE_BACKEND=local is for one process" in result.stderr
    # Once the first has stopped, the queue is free again.
    again = mysoulmate_serve(isolated_env, QUEUE_BACKEND="local").start()
    again.stop()


def test_serve_finishes_in_flight_requests_on_sigterm(isolated_env: Path, database: str) -> None:
    port = free_port()
    env = server_env(isolated_env, STORAGE_BACKEND="postgres", DATABASE_URL=database)
    server = subprocess.Popen(
        [str(BIN / "mysoulmate"), "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {make_token('ops', 'admin')}"}
    answers: list[int] = []

    def read() -> None:
        answers.append(
            httpx.get(f"{base}/api/v1/analytics/user/ann", headers=headers, timeout=30).status_code
        )

    try:
        wait_for_health(base, server)
        with psycopg.connect(database) as blocker:
            # The read waits behind this lock: it is in flight when SIGTERM arrives.
            blocker.execute("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
            reader = threading.Thread(target=read)
            reader.start()
            deadline = time.monotonic() + 20
            while not waiting_on_a_lock(database):
                assert time.monotonic() < deadline, "the read never reached the database"
                time.sleep(0.05)
            server.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            assert server.poll() is None, "it left with a request in flight"
            blocker.rollback()
        reader.join(30)
        # uvicorn shuts down gracefully, then re-raises the signal it caught: the exit
        # status says SIGTERM, as for any process that SIGTERM ended.
        assert server.wait(timeout=30) == -signal.SIGTERM
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(10)
    assert answers == [200]


def wait_for_health(base: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert server.poll() is None, "the server exited"
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError("the server did not start")


def waiting_on_a_lock(conninfo: str) -> bool:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        ).fetchone()
    return bool(row and row[0])
