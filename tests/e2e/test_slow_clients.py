"""The real server against hostile connections: oversized headers, a client that trickles its
headers or its body, and the clean close after a 500."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.server import BIN, ServerProcess, free_port, server_env

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    port = free_port()
    data_dir: Path = tmp_path_factory.mktemp("slow-clients")
    env = server_env(
        data_dir,
        PORT=str(port),
        HTTP_HEADER_TIMEOUT_SECONDS="1",
        HTTP_BODY_TIMEOUT_SECONDS="1",
        WORKER_ENABLED="false",
    )
    proc = ServerProcess([str(BIN / "mysoulmate"), "serve"], env, port).start()
    yield proc
    proc.stop()


def exchange(server: ServerProcess, *chunks: bytes, pause: float = 0.0) -> bytes:
    """Send ``chunks`` (pausing between them), then read until the server closes."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        for chunk in chunks:
            sock.sendall(chunk)
            time.sleep(pause)
        received = b""
        while data := sock.recv(65536):
            received += data
    return received


def test_headers_over_16_kib_get_431_and_the_connection_closes(server: ServerProcess) -> None:
    request = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n"
    answer = exchange(server, request)
    assert answer.startswith(b"HTTP/1.1 431 ")
    assert b"connection: close" in answer.lower()


def test_headers_just_under_the_limit_are_served(server: ServerProcess) -> None:
    request = b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Big: " + b"a" * 15_000
    answer = exchange(server, request + b"\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 ")


def test_a_client_trickling_its_headers_gets_408(server: ServerProcess) -> None:
    answer = exchange(server, b"GET /health HTTP/1.1\r\n", b"Host: x\r\n", b"X-A: 1\r\n", pause=0.6)
    assert answer.startswith(b"HTTP/1.1 408 ")


def test_a_client_that_never_sends_its_body_gets_408(server: ServerProcess) -> None:
    head = (
        b"POST /api/v1/analytics/track HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
    )
    answer = exchange(server, head, b'"a', pause=1.5)
    assert answer.startswith(b"HTTP/1.1 408 ")


def test_an_idle_connection_is_closed(server: ServerProcess) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        assert sock.recv(65536).startswith(b"HTTP/1.1 408 ")
