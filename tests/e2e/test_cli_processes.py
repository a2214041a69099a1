"""`mysoulmate serve` and `mysoulmate worker` as processes: one log line per request or
batch, JSON off a terminal (or text when asked), uvicorn's own lines through the same
handler and its access log off; the worker's usage error is one line and exit 2."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from mysoulmate.queue.rabbitmq import RabbitQueue

from tests.support.helpers import auth_header
from tests.support.rabbitmq import BROKER_URL, WorkerProcess, scratch_queue, wait_for_consumers
from tests.support.server import BIN, ROOT, free_port, server_env

pytestmark = pytest.mark.slow
TRACK = "/api/v1/analytics/track"


def serve(data_dir: Path, log: Path, **env: str) -> tuple[subprocess.Popen[bytes], str]:
    """`mysoulmate serve` with its stderr in ``log``, once it answers; (process, base URL)."""
    port = free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(BIN / "mysoulmate"), "serve", "--port", str(port)],
            env=server_env(data_dir, **env),
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=out,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return proc, base
        except httpx.TransportError:
            time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    raise AssertionError(f"serve did not answer: {log.read_text()}")


def stop(proc: subprocess.Popen[bytes]) -> int:
    os.killpg(proc.pid, signal.SIGTERM)
    return proc.wait(timeout=30)


def exercise(base: str) -> str:
    """A track and a read of user alice; the message id of the tracked event."""
    headers = auth_header("alice")
    accepted = httpx.post(f"{base}{TRACK}", json={"event": "signup"}, headers=headers, timeout=10)
    assert accepted.status_code == 202
    read = httpx.get(f"{base}/api/v1/analytics/user/alice", headers=headers, timeout=10)
    assert read.status_code == 200
    return str(accepted.json()["messageId"])


def test_serve_logs_one_json_line_per_request(isolated_env: Path, tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    proc, base = serve(isolated_env, log)
    try:
        exercise(base)
    finally:
        code = stop(proc)
    assert code in (0, -signal.SIGTERM)
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    records: list[dict[str, Any]] = [json.loads(line) for line in lines]  # every line JSON
    requests = [r for r in records if r.get("message") == "request"]
    seen = {(r["method"], r["route"], r["status"]) for r in requests}
    assert ("POST", TRACK, 202) in seen
    assert ("GET", "/api/v1/analytics/user/{userId}", 200) in seen
    assert all(r["request_id"] and isinstance(r["duration_ms"], float) for r in requests)
    assert "alice" not in "\n".join(json.dumps(r) for r in requests)  # route templates only
    messages = [str(r.get("message")) for r in records]
    assert "Application startup complete." in messages  # uvicorn's lines, same handler
    assert "Application shutdown complete." in messages
    assert not any('HTTP/1.1" 200' in m for m in messages)  # uvicorn's access log is off


def test_serve_logs_text_when_asked(isolated_env: Path, tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    proc, base = serve(isolated_env, log, LOG_FORMAT="text")
    try:
        exercise(base)
    finally:
        stop(proc)
    text = log.read_text()
    assert re.search(r"^\d\d:\d\d:\d\d INFO  POST /api/v1/analytics/track 202 [\d.]+ ms req=\S+$",
                     text, re.M), text  # fmt: skip
    assert re.search(r"^\d\d:\d\d:\d\d INFO  Application startup complete\.", text, re.M), text


def test_serve_at_log_level_warning_writes_no_request_lines(
    isolated_env: Path, tmp_path: Path
) -> None:
    log = tmp_path / "serve.log"
    proc, base = serve(isolated_env, log, LOG_LEVEL="WARNING")
    try:
        exercise(base)
    finally:
        stop(proc)
    assert '"request"' not in log.read_text()


def test_worker_without_rabbitmq_is_a_usage_error(isolated_env: Path) -> None:
    result = subprocess.run(
        [str(BIN / "mysoulmate"), "worker"],
        env=server_env(isolated_env, QUEUE_BACKEND="local"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("mysoulmate: worker needs QUEUE_BACKEND=rabbitmq")


def test_worker_logs_one_line_per_batch(isolated_env: Path, tmp_path: Path) -> None:
    with scratch_queue() as name:
        env = server_env(
            isolated_env,
            QUEUE_BACKEND="rabbitmq",
            RABBITMQ_URL=BROKER_URL,
            RABBITMQ_QUEUE=name,
            LOG_FORMAT="text",
        )
        producer = RabbitQueue(BROKER_URL, queue=name)
        producer.declare()
        worker = WorkerProcess(env, tmp_path / "worker.log").start()
        try:
            wait_for_consumers(name, 1)
            body = {
                "type": "track",
                "messageId": "m-cli-1",
                "userId": "ann",
                "event": "signup",
                "timestamp": "2026-01-31T12:00:00Z",
                "receivedAt": "2026-01-31T12:00:00Z",
            }
            producer.send(json.dumps(body))
            producer.close()
            deadline = time.monotonic() + 30
            while "stored=1" not in worker.log() and time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            worker.stop()
        log = worker.log()
        assert worker.wait(5) == 0, log
    assert re.search(r"^\d\d:\d\d:\d\d INFO  batch messages=1 stored=1 duplicates=0 ", log, re.M)
    assert "ann" not in log
