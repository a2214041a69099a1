"""The laptop shape through a real HTTP server: accept, crash, restart, nothing lost."""

from __future__ import annotations

import shutil
import sqlite3
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.helpers import auth_header
from tests.support.server import ROOT, ServerProcess, free_port, mysoulmate_serve, server_env

pytestmark = pytest.mark.slow

TRACK = "/api/v1/analytics/track"


def all_events(base_url: str, user: str) -> list[dict[str, Any]]:
    """Every stored event of ``user``, following cursors (as an admin)."""
    events: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 200}
        if cursor:
            params["cursor"] = cursor
        response = httpx.get(
            f"{base_url}/api/v1/analytics/user/{user}",
            params=params,
            headers=auth_header("ops", "admin"),
            timeout=10,
        )
        response.raise_for_status()
        page = response.json()
        events += page["events"]
        cursor = page["nextCursor"]
        if not cursor:
            return events


def wait_for_count(base_url: str, user: str, expected: int, within: float) -> list[dict[str, Any]]:
    """Poll until ``expected`` events are stored (or the time is up); return what is there."""
    deadline = time.monotonic() + within
    events = all_events(base_url, user)
    while len(events) < expected and time.monotonic() < deadline:
        time.sleep(0.1)
        events = all_events(base_url, user)
    return events


@pytest.fixture
def server(isolated_env: Path) -> Iterator[ServerProcess]:
    process = mysoulmate_serve(isolated_env, WORKER_ENABLED="true").start()
    yield process
    process.stop()


def test_make_run_serves_and_a_tracked_event_is_readable_within_two_seconds(
    isolated_env: Path,
) -> None:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    port = free_port()
    env = server_env(isolated_env, PORT=str(port), WORKER_ENABLED="true")
    env.pop("JWT_SECRET", None)  # as on a fresh clone: the server makes its own secret
    env["STAGE"] = "local"
    process = ServerProcess(["make", "--no-print-directory", "-C", str(ROOT), "run"], env, port)
    process.start(ready_within=120)
    try:
        token = _cli_token(env, "alice")
        headers = {"Authorization": f"Bearer {token}"}
        accepted = httpx.post(
            f"{process.url}{TRACK}", json={"event": "signup"}, headers=headers, timeout=10
        )
        assert accepted.status_code == 202
        message_id = accepted.json()["messageId"]
        deadline = time.monotonic() + 2.0
        seen: list[str] = []
        while time.monotonic() < deadline and message_id not in seen:
            page = httpx.get(
                f"{process.url}/api/v1/analytics/user/alice", headers=headers, timeout=10
            ).json()
            seen = [e["messageId"] for e in page["events"]]
            time.sleep(0.05)
        assert message_id in seen, "tracked event not readable within 2 s"
    finally:
        process.stop()


def _cli_token(env: dict[str, str], user: str) -> str:
    import subprocess
    import sys

    result = subprocess.run(
        [str(Path(sys.executable).parent / "mysoulmate"), "token", "--user", user],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


def test_sigkill_before_the_worker_drains_loses_nothing(isolated_env: Path) -> None:
    count = 300
    # The worker is off while accepting, so every event is only in the queue at the kill.
    first = mysoulmate_serve(isolated_env, WORKER_ENABLED="false").start()
    headers = auth_header("alice")
    try:
        with httpx.Client(base_url=first.url, headers=headers, timeout=10) as client:
            for i in range(count):
                response = client.post(TRACK, json={"event": "e", "messageId": f"m-{i}"})
                assert response.status_code == 202
    finally:
        first.kill()
    second = mysoulmate_serve(isolated_env, WORKER_ENABLED="true").start()
    try:
        events = wait_for_count(second.url, "alice", count, within=60)
        ids = [e["messageId"] for e in events]
        assert len(ids) == count
        assert set(ids) == {f"m-{i}" for i in range(count)}
    finally:
        second.stop()


def test_sigkill_while_the_worker_drains_stores_each_event_exactly_once(
    isolated_env: Path,
) -> None:
    count = 400
    settings = {
        # One message per receive, so draining 400 takes many transactions (no growth under
        # the backlog either).
        "WORKER_BATCH_SIZE": "1",
        "WORKER_MAX_BATCH_SIZE": "1",
        "QUEUE_VISIBILITY_TIMEOUT_SECONDS": "1",
    }
    # Accept everything first, with the worker off: the kill below must land mid-drain
    # however fast this machine drains (a race with the posting was flaky).
    accepting = mysoulmate_serve(isolated_env, WORKER_ENABLED="false", **settings).start()
    headers = auth_header("bob")

    def post(i: int) -> int:
        body = {"event": "e", "messageId": f"k-{i}"}
        url = f"{accepting.url}{TRACK}"
        return httpx.post(url, json=body, headers=headers, timeout=10).status_code

    try:
        with ThreadPoolExecutor(max_workers=4) as pool:
            assert set(pool.map(post, range(count))) == {202}
    finally:
        accepting.stop()
    first = mysoulmate_serve(isolated_env, WORKER_ENABLED="true", **settings).start()
    try:
        deadline = time.monotonic() + 60
        while waiting_in_queue(isolated_env) == count and time.monotonic() < deadline:
            time.sleep(0.005)  # until the worker has taken its first messages
    finally:
        first.kill()  # mid-drain: some stored, some in flight, some waiting
    assert 0 < waiting_in_queue(isolated_env) < count, "the kill did not land mid-drain"
    second = mysoulmate_serve(isolated_env, WORKER_ENABLED="true", **settings).start()
    try:
        events = wait_for_count(second.url, "bob", count, within=60)
        ids = [e["messageId"] for e in events]
        assert sorted(ids) == sorted(f"k-{i}" for i in range(count))
    finally:
        second.stop()


def waiting_in_queue(data_dir: Path) -> int:
    connection = sqlite3.connect(data_dir / "queue.db", timeout=5)
    try:
        return int(connection.execute("SELECT count(*) FROM messages").fetchone()[0])
    finally:
        connection.close()


def test_same_message_id_posted_twice_and_concurrently_is_stored_once(
    server: ServerProcess,
) -> None:
    headers = auth_header("carol")
    body = {"event": "purchase", "messageId": "dup-1", "properties": {"revenue": 9.99}}

    def post(_: int) -> int:
        return httpx.post(
            f"{server.url}{TRACK}", json=body, headers=headers, timeout=10
        ).status_code

    assert post(0) == 202
    assert post(1) == 202
    with ThreadPoolExecutor(max_workers=8) as pool:
        assert set(pool.map(post, range(16))) == {202}
    # One more, distinct event that we can wait for, since the queue is FIFO-ish.
    marker = {"event": "marker", "messageId": "marker-1"}
    httpx.post(f"{server.url}{TRACK}", json=marker, headers=headers, timeout=10)
    events = wait_for_count(server.url, "carol", 2, within=30)
    ids = [e["messageId"] for e in events]
    assert sorted(ids) == ["dup-1", "marker-1"]


def test_readiness_reports_storage_and_queue(server: ServerProcess) -> None:
    response = httpx.get(f"{server.url}/health/ready", timeout=10)
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "checks": {"storage": "ok", "queue": "ok"}}
