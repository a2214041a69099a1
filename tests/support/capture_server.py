"""A small HTTP server on 127.0.0.1 that records every request it receives.

Real clients (sentry-sdk, Slack webhooks, analytics SDKs) are pointed at it, so tests assert
what actually went over the wire. Every request is answered with ``status`` and ``body``
(settable per test) and recorded with its method, path, query, headers and body, the body
also decoded from gzip/deflate/brotli when the client compressed it.

    with CaptureServer() as server:
        client_pointed_at(server.url)
        request = server.wait_for(lambda r: r.path.endswith("/envelope/"))
"""

from __future__ import annotations

import contextlib
import gzip
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass(frozen=True)
class CapturedRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # names lower-cased
    raw_body: bytes
    body: bytes = field(repr=False)  # decompressed

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        import json

        return json.loads(self.body)


@dataclass(frozen=True)
class Reply:
    """One scripted answer (see `CaptureServer.replies`)."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    delay: float = 0.0  # seconds to wait before answering


def _decompress(data: bytes, encoding: str) -> bytes:
    encoding = encoding.strip().lower()
    if encoding == "gzip":
        return gzip.decompress(data)
    if encoding == "deflate":
        return zlib.decompress(data)
    if encoding == "br":
        import brotli  # type: ignore[import-not-found]  # only clients that send br need it

        return bytes(brotli.decompress(data))
    return data


class CaptureServer:
    """Threaded HTTP server recording requests; a context manager that starts and stops it."""

    def __init__(self, status: int = 200, body: bytes = b"{}", content_type: str = "") -> None:
        self.status = status
        self.body = body
        self.content_type = content_type or "application/json"
        self.requests: list[CapturedRequest] = []
        self.replies: deque[Reply] = deque()  # scripted answers, taken one per request
        # Fixed answers by path (a request whose path starts with the key), before `replies`.
        self.routes: dict[str, Reply] = {}
        self._changed = threading.Condition()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> CaptureServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> CaptureServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def clear(self) -> None:
        with self._changed:
            self.requests.clear()

    def received(
        self, predicate: Callable[[CapturedRequest], bool] = lambda _: True
    ) -> list[CapturedRequest]:
        with self._changed:
            return [request for request in self.requests if predicate(request)]

    def wait_for(
        self,
        predicate: Callable[[CapturedRequest], bool] = lambda _: True,
        *,
        count: int = 1,
        timeout: float = 10.0,
    ) -> list[CapturedRequest]:
        """The first ``count`` matching requests, waiting for them up to ``timeout`` seconds
        (a deadline for a delivery that should happen, not a performance assertion)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                matching = [request for request in self.requests if predicate(request)]
                remaining = deadline - time.monotonic()
                if len(matching) >= count or remaining <= 0:
                    break
                self._changed.wait(remaining)
        if len(matching) < count:
            raise AssertionError(
                f"expected {count} matching request(s) within {timeout} s, got {len(matching)}"
                f" (all received: {[f'{r.method} {r.path}' for r in self.received()]})"
            )
        return matching[:count]

    def _record(self, request: CapturedRequest) -> None:
        with self._changed:
            self.requests.append(request)
            self._changed.notify_all()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _capture(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                headers = {name.lower(): value for name, value in self.headers.items()}
                body = _decompress(raw, headers.get("content-encoding", ""))
                parts = urlsplit(self.path)
                server._record(
                    CapturedRequest(
                        method=self.command,
                        path=parts.path,
                        query=parse_qs(parts.query, keep_blank_values=True),
                        headers=headers,
                        raw_body=raw,
                        body=body,
                    )
                )
                with server._changed:
                    routed = [r for p, r in server.routes.items() if parts.path.startswith(p)]
                    reply = routed[0] if routed else None
                    if reply is None and server.replies:
                        reply = server.replies.popleft()
                if reply is not None and reply.delay:
                    time.sleep(reply.delay)
                status = reply.status if reply else server.status
                body = reply.body if reply and reply.body is not None else server.body
                self.send_response(status)
                self.send_header("Content-Type", server.content_type)
                self.send_header("Content-Length", str(len(body)))
                for name, value in (reply.headers if reply else {}).items():
                    self.send_header(name, value)
                self.end_headers()
                # The client may have given up waiting (a scripted delay).
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _capture

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: tests read `requests`, not stderr."""

        return Handler
