"""`mysoulmate serve`'s own log: one line per request, readable on a terminal and JSON
elsewhere, carrying the route template and never the path's ids, the query or the body."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from mysoulmate.observability.process_logs import (
    configure_process_logs,
    log_batch,
    reset_process_logs,
)

from tests.support.helpers import auth_header


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def configured() -> Iterator[None]:
    yield
    reset_process_logs()


def lines(stream: io.StringIO) -> list[str]:
    return [line for line in stream.getvalue().splitlines() if line.strip()]


def test_on_a_terminal_each_request_is_one_readable_line(
    client: TestClient, configured: None
) -> None:
    stream = Terminal()
    assert configure_process_logs("INFO", stream=stream) == "text"
    response = client.get(
        "/api/v1/analytics/user/alice@example.com?limit=1&secret=s3cret",
        headers={**auth_header("alice@example.com"), "X-Request-Id": "req-123"},
    )
    assert response.status_code == 422  # the unknown query parameter
    (line,) = [line for line in lines(stream) if "GET" in line]
    assert "GET /api/v1/analytics/user/{userId} 422" in line
    assert line.endswith("req=req-123")
    assert " ms " in line
    for private in ("alice", "example.com", "s3cret", "limit"):
        assert private not in line


def test_elsewhere_each_request_is_one_json_object(client: TestClient, configured: None) -> None:
    stream = io.StringIO()  # not a terminal: a container's or a pipe's
    assert configure_process_logs("INFO", stream=stream) == "json"
    client.post("/api/v1/analytics/track", json={"event": "x"}, headers={"X-Request-Id": "r-9"})
    records = [json.loads(line) for line in lines(stream)]
    (access,) = [r for r in records if r.get("message") == "request"]
    assert access["method"] == "POST"
    assert access["route"] == "/api/v1/analytics/track"
    assert access["status"] == 401
    assert access["request_id"] == "r-9"
    assert isinstance(access["duration_ms"], float)


def test_server_errors_are_warnings_and_the_level_filters(configured: None) -> None:
    from mysoulmate.observability.process_logs import log_request

    stream = io.StringIO()
    configure_process_logs("WARNING", "json", stream=stream)
    log_request("GET", "/health", 200, 0.001, "a")
    log_request("GET", "/health/ready", 503, 0.002, "b")
    (record,) = [json.loads(line) for line in lines(stream)]
    assert (record["level"], record["route"], record["status"]) == ("WARNING", "/health/ready", 503)


def test_a_batch_line_counts_what_the_worker_did(configured: None) -> None:
    stream = Terminal()
    configure_process_logs("INFO", stream=stream)
    log_batch(messages=100, stored=97, duplicates=2, erased=0, failures=1, seconds=0.0421)
    (line,) = lines(stream)
    assert "WARNING" in line  # a failure in the batch
    assert "messages=100 stored=97 duplicates=2 erased=0 failures=1 42.1 ms" in line


def test_nothing_is_written_unless_configured(client: TestClient) -> None:
    """Lambda and tests never configure these lines: a request then logs none."""
    import logging

    from mysoulmate.observability import get_logger

    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    target = logging.getLogger(get_logger().name)
    keep = Keep()
    target.addHandler(keep)
    try:
        assert client.get("/health").status_code == 200
        log_batch(messages=1, stored=1, duplicates=0, erased=0, failures=0, seconds=0.001)
        stream = io.StringIO()
        configure_process_logs("INFO", "json", stream=stream)
        assert client.get("/health").status_code == 200
    finally:
        target.removeHandler(keep)
        reset_process_logs()
    # Only the request made once configured was logged (the handler sees both forms).
    assert [r.getMessage() for r in records] == ["request"]
