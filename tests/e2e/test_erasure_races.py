"""Erasure sticks through the real server, as the reliability review reproduced it: 500 events
and an identify with an e-mail sent just before `DELETE /user/{id}`, with the worker stopped
(everything still queued) or running (racing the erasure). Afterwards nothing of the user is
left, on SQLite and on PostgreSQL; what the user sends after the erasure is stored."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.support.helpers import auth_header
from tests.support.server import ServerProcess, mysoulmate_serve

pytestmark = pytest.mark.slow
EVENTS = 500


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> dict[str, str]:
    if request.param == "sqlite":
        return {"STORAGE_BACKEND": "sqlite"}
    conninfo: str = request.getfixturevalue("postgres_database")
    request.getfixturevalue("postgres_store")  # empties the tables
    return {"STORAGE_BACKEND": "postgres", "DATABASE_URL": conninfo}


def send_burst(base_url: str, user: str) -> None:
    def post(index: int) -> int:
        return httpx.post(
            f"{base_url}/api/v1/analytics/track",
            json={"event": "tap", "messageId": f"{user}-{index}"},
            headers=auth_header(user),
            timeout=30,
        ).status_code

    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(post, range(EVENTS))) == {202}
    identify = httpx.post(
        f"{base_url}/api/v1/analytics/identify",
        json={"traits": {"email": f"{user}@example.com"}},
        headers=auth_header(user),
        timeout=30,
    )
    assert identify.status_code == 202


def erase(base_url: str, user: str) -> None:
    response = httpx.delete(
        f"{base_url}/api/v1/analytics/user/{user}", headers=auth_header(user), timeout=30
    )
    assert response.status_code == 200, response.text


def user_data(base_url: str, user: str) -> dict[str, object]:
    response = httpx.get(
        f"{base_url}/api/v1/analytics/user/{user}",
        params={"limit": 200},
        headers=auth_header(user),
        timeout=30,
    )
    assert response.status_code == 200, response.text
    data: dict[str, object] = response.json()
    return data


def wait_until_drained(isolated_env: Path) -> None:
    import sqlite3

    for _ in range(600):
        with sqlite3.connect(isolated_env / "queue.db") as conn:
            if conn.execute("SELECT count(*) FROM messages").fetchone()[0] == 0:
                return
        time.sleep(0.1)
    raise AssertionError("the worker did not drain the queue")


def start(isolated_env: Path, backend: dict[str, str], worker: bool) -> ServerProcess:
    return mysoulmate_serve(
        isolated_env, WORKER_ENABLED="true" if worker else "false", **backend
    ).start()


def test_events_queued_before_an_erasure_never_come_back(
    isolated_env: Path, backend: dict[str, str]
) -> None:
    server = start(isolated_env, backend, worker=False)
    try:
        send_burst(server.url, "dora")
        erase(server.url, "dora")
    finally:
        server.stop()
    server = start(isolated_env, backend, worker=True)  # now the queue drains
    try:
        wait_until_drained(isolated_env)
        data = user_data(server.url, "dora")
        assert data["events"] == []
        assert data["profile"] is None or data["profile"]["traits"] == {}  # type: ignore[index]
    finally:
        server.stop()


def test_an_erasure_racing_the_live_worker_leaves_nothing_behind(
    isolated_env: Path, backend: dict[str, str]
) -> None:
    server = start(isolated_env, backend, worker=True)
    try:
        send_burst(server.url, "eli")
        erase(server.url, "eli")  # the worker is storing the burst right now
        wait_until_drained(isolated_env)
        data = user_data(server.url, "eli")
        assert data["events"] == []
        assert data["profile"] is None or data["profile"]["traits"] == {}  # type: ignore[index]
        # What the user sends after the erasure is new data.
        again = httpx.post(
            f"{server.url}/api/v1/analytics/track",
            json={"event": "came_back", "messageId": "eli-new"},
            headers=auth_header("eli"),
            timeout=30,
        )
        assert again.status_code == 202
        wait_until_drained(isolated_env)
        events = user_data(server.url, "eli")["events"]
        assert [e["messageId"] for e in events] == ["eli-new"]  # type: ignore[union-attr, index]
    finally:
        server.stop()
