"""Bulkheads under a real database crash: a private PostgreSQL is stopped with `pg_ctl stop -m
immediate` while 80 readers hammer the server. Ingest does not notice (it never waits on
storage), reads and readiness fail fast with 503, and once the database is back every
accepted event is stored exactly once."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from mysoulmate.storage.postgres.migrate import migrate

from tests.support.helpers import auth_header
from tests.support.private_postgres import PrivatePostgres
from tests.support.server import ServerProcess, mysoulmate_serve

pytestmark = pytest.mark.slow
EVENTS_EACH_PHASE = 40
READERS = 80


@pytest.fixture
def database() -> Iterator[PrivatePostgres]:
    try:
        server = PrivatePostgres().init()
    except (FileNotFoundError, OSError) as exc:
        pytest.fail(f"cannot run a private PostgreSQL ({exc}); DESIGN.md §5 says how")
    migrate(server.conninfo)
    yield server
    server.destroy()


@pytest.fixture
def server(isolated_env: Path, database: PrivatePostgres) -> Iterator[ServerProcess]:
    process = mysoulmate_serve(
        isolated_env,
        STORAGE_BACKEND="postgres",
        DATABASE_URL=database.conninfo,
        WORKER_ENABLED="true",
        QUEUE_VISIBILITY_TIMEOUT_SECONDS="2",
    ).start()
    yield process
    process.stop()


async def timed_tracks(client: httpx.AsyncClient, first: int) -> tuple[list[float], list[int]]:
    latencies, statuses = [], []
    for index in range(first, first + EVENTS_EACH_PHASE):
        started = time.perf_counter()
        response = await client.post(
            "/api/v1/analytics/track",
            json={"event": "tap", "messageId": f"m-{index}"},
            headers=auth_header("ann"),
        )
        latencies.append(time.perf_counter() - started)
        statuses.append(response.status_code)
    return latencies, statuses


async def outage(base_url: str, database: PrivatePostgres) -> dict[str, object]:
    limits = httpx.Limits(max_connections=READERS + 10)
    async with httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits) as client:
        before, before_statuses = await timed_tracks(client, 0)
        database.crash()
        stop = asyncio.Event()
        read_statuses: list[tuple[int, str | None]] = []

        async def reader(index: int) -> None:
            while not stop.is_set():
                response = await client.get(
                    f"/api/v1/analytics/user/reader{index}", headers=auth_header(f"reader{index}")
                )
                read_statuses.append((response.status_code, response.headers.get("Retry-After")))

        readers = [asyncio.create_task(reader(i)) for i in range(READERS)]
        await asyncio.sleep(0.5)  # the readers are in full swing
        during, during_statuses = await timed_tracks(client, EVENTS_EACH_PHASE)
        ready = await client.get("/health/ready")
        stop.set()
        await asyncio.gather(*readers)
    return {
        "before": before,
        "during": during,
        "statuses": before_statuses + during_statuses,
        "reads": read_statuses,
        "ready": ready.status_code,
    }


def test_a_database_crash_does_not_slow_ingest_and_loses_nothing(
    server: ServerProcess, database: PrivatePostgres
) -> None:
    result = asyncio.run(outage(server.url, database))
    assert set(result["statuses"]) == {202}  # type: ignore[arg-type]
    reads = result["reads"]
    assert isinstance(reads, list)
    assert reads
    assert {status for status, _ in reads} == {503}  # never a 500, never a hang
    assert all(retry_after is not None for _, retry_after in reads)
    assert result["ready"] == 503

    before = statistics.median(result["before"])  # type: ignore[arg-type]
    during = statistics.median(result["during"])  # type: ignore[arg-type]
    print(f"/track median: {before * 1000:.1f} ms before, {during * 1000:.1f} ms during")
    assert during <= 5 * before  # a ratio in the same run, not a time bound

    database.start()
    expected = {f"m-{i}" for i in range(2 * EVENTS_EACH_PHASE)}
    stored: list[str] = []
    for _ in range(600):
        response = httpx.get(
            f"{server.url}/api/v1/analytics/user/ann",
            params={"limit": 200},
            headers=auth_header("ann"),
            timeout=10,
        )
        if response.status_code == 200:
            stored = [event["messageId"] for event in response.json()["events"]]
            if set(stored) == expected:
                break
        time.sleep(0.1)
    assert sorted(stored) == sorted(expected)  # every accepted event, each exactly once
