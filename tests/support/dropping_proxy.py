"""An HTTP proxy on 127.0.0.1 that loses responses on command, for retry tests.

Every request is forwarded to ``upstream`` (a server on this machine) and recorded. After
`drop_next` (n), the next n requests are still forwarded and the upstream's whole response is
read, so the server has done its work, but the client connection is then closed without a
byte of it: the client sees the connection drop and cannot tell whether its request landed.
That is the case an SDK's retry with the same messageIds has to survive.

    with DroppingProxy(server.url) as proxy:
        proxy.drop_next(1)
        sdk_pointed_at(proxy.url)
        first, retry = proxy.wait_for(2)

Bounded: one upstream connection per request with a timeout, at most ``max_requests``
forwarded (later ones answered 503), and the proxy stops by itself after ``lifetime`` seconds
if the test never does. It only listens on and connects to loopback addresses.
"""

from __future__ import annotations

import contextlib
import gzip
import http.client
import ipaddress
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

# Headers about one hop (RFC 9110 §7.6.1): never forwarded as they are.
_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
}
_MAX_BODY = 8 * 1024 * 1024


@dataclass(frozen=True)
class ProxiedRequest:
    """One request as the client sent it, and what became of its response."""

    number: int  # 1 for the first request the proxy received
    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    raw_body: bytes = field(repr=False)
    status: int | None  # the upstream's answer; None when the upstream could not be reached
    response_body: bytes = field(repr=False)
    dropped: bool  # the response was read from upstream but never sent to the client

    @property
    def body(self) -> bytes:
        """The body, gunzipped when the client compressed it."""
        if self.headers.get("content-encoding", "").strip().lower() == "gzip":
            return gzip.decompress(self.raw_body)
        return self.raw_body

    def json(self) -> Any:
        return json.loads(self.body)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class DroppingProxy:
    """Threaded HTTP/1.1 proxy; a context manager that starts and stops it."""

    def __init__(
        self,
        upstream: str,
        *,
        timeout: float = 15.0,
        lifetime: float = 240.0,
        max_requests: int = 500,
    ) -> None:
        parts = urlsplit(upstream)
        if parts.scheme != "http" or not parts.hostname or not _is_loopback(parts.hostname):
            raise ValueError(f"upstream must be http:// on a loopback address, not {upstream!r}")
        self._upstream_host = parts.hostname
        self._upstream_port = parts.port or 80
        self._timeout = timeout
        self._max_requests = max_requests
        self._to_drop = 0
        self._received = 0
        self.requests: list[ProxiedRequest] = []
        self._changed = threading.Condition()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._expiry = threading.Timer(lifetime, self.stop)
        self._expiry.daemon = True
        self._stop_lock = threading.Lock()
        self._stopped = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> DroppingProxy:
        self._thread.start()
        self._expiry.start()
        return self

    def stop(self) -> None:
        """Stop listening (idempotent; also called by the lifetime timer). A connection
        still open ends when its client closes it or after ``timeout`` idle seconds."""
        with self._stop_lock:
            if self._stopped:
                return
            self._stopped = True
        self._expiry.cancel()
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()

    def __enter__(self) -> DroppingProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def drop_next(self, count: int = 1) -> None:
        """Forward the next ``count`` requests but lose their responses."""
        with self._changed:
            self._to_drop = count

    def received(self) -> list[ProxiedRequest]:
        """Every request whose upstream answer is in (dropped or relayed), in arrival order."""
        with self._changed:
            return sorted(self.requests, key=lambda r: r.number)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[ProxiedRequest]:
        """The first ``count`` requests, once that many have been answered upstream."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self.requests) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"expected {count} request(s) through the proxy within {timeout} s, "
                        f"got {len(self.requests)}: {self._summary()}"
                    )
                self._changed.wait(remaining)
        return self.received()[:count]

    def _summary(self) -> list[str]:
        return [
            f"#{r.number} {r.method} {r.path} -> {r.status}{' (dropped)' if r.dropped else ''}"
            for r in sorted(self.requests, key=lambda r: r.number)
        ]

    def _admit(self) -> tuple[int, bool] | None:
        """This request's number and whether to drop its response; None past the bound."""
        with self._changed:
            if self._received >= self._max_requests:
                return None
            self._received += 1
            drop = self._to_drop > 0
            if drop:
                self._to_drop -= 1
            return self._received, drop

    def _record(self, request: ProxiedRequest) -> None:
        with self._changed:
            self.requests.append(request)
            self._changed.notify_all()

    def _forward(
        self, method: str, path: str, headers: list[tuple[str, str]], body: bytes
    ) -> tuple[int, str, list[tuple[str, str]], bytes]:
        connection = http.client.HTTPConnection(
            self._upstream_host, self._upstream_port, timeout=self._timeout
        )
        try:
            connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            for name, value in headers:
                connection.putheader(name, value)
            connection.putheader("Content-Length", str(len(body)))
            connection.putheader("Connection", "close")
            connection.endheaders(body)
            response = connection.getresponse()
            payload = response.read()  # the whole answer: the server has finished its work
            return response.status, response.reason, response.getheaders(), payload
        finally:
            connection.close()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = proxy._timeout  # an idle keep-alive connection is closed after this

            def _read_body(self) -> bytes:
                if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                    chunks: list[bytes] = []
                    size = 0
                    while True:
                        line = self.rfile.readline(1024)
                        length = int(line.split(b";")[0].strip() or b"0", 16)
                        if length == 0:
                            while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                                pass  # trailers
                            return b"".join(chunks)
                        size += length
                        if size > _MAX_BODY:
                            raise ValueError("request body too large for the test proxy")
                        chunks.append(self.rfile.read(length))
                        self.rfile.readline(1024)
                length = int(self.headers.get("Content-Length") or 0)
                if length > _MAX_BODY:
                    raise ValueError("request body too large for the test proxy")
                return self.rfile.read(length) if length else b""

            def _proxy(self) -> None:
                body = self._read_body()
                admitted = proxy._admit()
                if admitted is None:
                    self._answer(503, "Service Unavailable", [], b"test proxy request limit")
                    return
                number, drop = admitted
                forwarded = [
                    (name, value)
                    for name, value in self.headers.items()
                    if name.lower() not in _HOP_BY_HOP
                ]
                headers = {name.lower(): value for name, value in self.headers.items()}
                try:
                    status, reason, answer_headers, payload = proxy._forward(
                        self.command, self.path, forwarded, body
                    )
                except OSError:
                    proxy._record(
                        ProxiedRequest(
                            number, self.command, self.path, headers, body, None, b"", drop
                        )
                    )
                    self._answer(502, "Bad Gateway", [], b"upstream unreachable")
                    return
                proxy._record(
                    ProxiedRequest(
                        number, self.command, self.path, headers, body, status, payload, drop
                    )
                )
                if drop:
                    # The server has answered; the client hears nothing but the close.
                    self.close_connection = True
                    with contextlib.suppress(OSError):
                        self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self._answer(status, reason, answer_headers, payload)

            def _answer(
                self, status: int, reason: str, headers: list[tuple[str, str]], payload: bytes
            ) -> None:
                self.send_response_only(status, reason)
                for name, value in headers:
                    if name.lower() not in _HOP_BY_HOP:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _proxy

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: tests read `requests`, not stderr."""

        return Handler
