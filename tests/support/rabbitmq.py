"""RabbitMQ helpers for tests: the test broker's URL, a throwaway topology per test, plain
looks into queues, a TCP relay whose connections a test can cut, and `mysoulmate worker`
as a child process.

The broker is the machine's RabbitMQ 3.10 at 127.0.0.1:5672 (guest/guest); tests skip
without it, and fail under CI=true. Each test uses queues of its own (`scratch_queue`),
deleted afterwards, so tests never see each other's messages.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import selectors
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pika
from pika.exceptions import AMQPError

from tests.support.helpers import require_service
from tests.support.server import BIN, ROOT

HOST, PORT = "127.0.0.1", 5672
BROKER_URL = f"amqp://guest:guest@{HOST}:{PORT}/%2F"


def require_rabbitmq() -> None:
    """Skip (locally) or fail (CI=true) unless the test broker answers."""
    try:
        connection = pika.BlockingConnection(_parameters(BROKER_URL))
    except (AMQPError, OSError) as exc:
        require_service(f"RabbitMQ at {HOST}:{PORT} is not reachable: {exc!r}")
    else:
        connection.close()


def _parameters(url: str) -> pika.URLParameters:
    params = pika.URLParameters(url)
    params.socket_timeout = 3
    params.connection_attempts = 1
    return params


@contextmanager
def broker_channel() -> Iterator[Any]:
    """A plain channel of the test's own, for looking into queues."""
    connection = pika.BlockingConnection(_parameters(BROKER_URL))
    try:
        yield connection.channel()
    finally:
        with contextlib.suppress(AMQPError, OSError):
            connection.close()


@contextmanager
def scratch_queue() -> Iterator[str]:
    """A fresh events-queue name (its -dlx and -dlq follow it); all three are deleted
    afterwards."""
    require_rabbitmq()
    name = f"mysoulmate-test-{secrets.token_hex(5)}"
    try:
        yield name
    finally:
        delete_topology(name)


def delete_topology(name: str) -> None:
    with broker_channel() as channel:
        channel.queue_delete(name)
        channel.queue_delete(f"{name}-dlq")
        channel.exchange_delete(f"{name}-dlx")


def depth(name: str) -> int:
    """Messages ready in the queue (not those delivered and unacknowledged)."""
    with broker_channel() as channel:
        return int(channel.queue_declare(name, passive=True).method.message_count)


def consumers(name: str) -> int:
    with broker_channel() as channel:
        return int(channel.queue_declare(name, passive=True).method.consumer_count)


def drain(name: str) -> list[tuple[bytes, dict[str, Any]]]:
    """Take (and ack) every message ready in the queue: (body, headers) each."""
    taken: list[tuple[bytes, dict[str, Any]]] = []
    with broker_channel() as channel:
        while True:
            method, properties, body = channel.basic_get(name, auto_ack=True)
            if method is None:
                return taken
            taken.append((body, dict(properties.headers or {})))


class TcpRelay:
    """Forwards 127.0.0.1:<port> to the broker; `cut` drops every connection through it at
    once, as a broker restart or a network failure would (new connections still work)."""

    def __init__(self, target: tuple[str, int] = (HOST, PORT)) -> None:
        self._target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ)
        self._peers: dict[socket.socket, socket.socket] = {}
        self._lock = threading.Lock()
        self._cut = False
        self._running = True
        self._thread = threading.Thread(target=self._loop, daemon=True)

    @property
    def port(self) -> int:
        return int(self._listener.getsockname()[1])

    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"

    def __enter__(self) -> TcpRelay:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._running = False
        self._thread.join(5)
        self._close_all()
        self._listener.close()

    def cut(self) -> None:
        with self._lock:
            self._cut = True
        while True:
            with self._lock:
                if not self._cut:
                    return
            threading.Event().wait(0.01)

    def _loop(self) -> None:
        while self._running:
            with self._lock:
                if self._cut:
                    self._close_all()
                    self._cut = False
            for key, _ in self._selector.select(timeout=0.05):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if sock is self._listener:
                    self._accept()
                else:
                    self._pump(sock)

    def _accept(self) -> None:
        client, _ = self._listener.accept()
        upstream = socket.create_connection(self._target, timeout=5)
        for one, other in ((client, upstream), (upstream, client)):
            one.setblocking(False)
            self._peers[one] = other
            self._selector.register(one, selectors.EVENT_READ)

    def _pump(self, sock: socket.socket) -> None:
        other = self._peers.get(sock)
        try:
            data = sock.recv(65536)
        except OSError:
            data = b""
        if not data or other is None:
            self._close_pair(sock)
            return
        try:
            other.setblocking(True)
            other.sendall(data)
            other.setblocking(False)
        except OSError:
            self._close_pair(sock)

    def _close_pair(self, sock: socket.socket) -> None:
        other = self._peers.pop(sock, None)
        for one in (sock, other):
            if one is None:
                continue
            self._peers.pop(one, None)
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(one)
            with contextlib.suppress(OSError):
                one.shutdown(socket.SHUT_RDWR)
            one.close()

    def _close_all(self) -> None:
        for sock in list(self._peers):
            self._close_pair(sock)


class WorkerProcess:
    """`mysoulmate worker` as a child process, its output in ``log_path``."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self._env = env
        self.log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                [str(BIN / "mysoulmate"), "worker"],
                env=self._env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def signal(self, signum: int) -> None:
        assert self._proc is not None
        os.kill(self._proc.pid, signum)

    def wait(self, within: float) -> int:
        assert self._proc is not None
        return self._proc.wait(timeout=within)

    def kill(self) -> None:
        """SIGKILL: what a crash or an OOM kill looks like (nothing acked, nothing closed)."""
        if self._proc is not None and self._proc.poll() is None:
            os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait(timeout=30)

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            os.killpg(self._proc.pid, signal.SIGTERM)
            try:
                self._proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def wait_for_consumers(queue: str, expected: int, within: float = 60) -> None:
    """Until ``expected`` consumers are subscribed to ``queue`` (workers are up)."""
    deadline = time.monotonic() + within
    while consumers(queue) != expected:
        if time.monotonic() > deadline:
            raise AssertionError(f"{consumers(queue)} consumer(s) on {queue}, not {expected}")
        time.sleep(0.1)
