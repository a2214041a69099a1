"""uvicorn's httptools protocol with the limits a public server needs against slow or
oversized clients (uvicorn has none of these for httptools):

* the request line and headers must fit in `MAX_HEADER_BYTES` (16 KiB, as nginx's and h11's
  defaults): beyond, 431 and the connection is closed;
* they must arrive within `HEADER_TIMEOUT_SECONDS` of the request's first byte (or of the
  connection opening), and the body within `BODY_TIMEOUT_SECONDS` of the headers: beyond,
  408 and the connection is closed. A client trickling a byte at a time cannot hold a
  connection (and a slot of the server) for long.

Used by `mysoulmate serve` (the laptop and container shapes); on AWS, API Gateway buffers
requests before Lambda ever sees them.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from mysoulmate.core.settings import get_settings

MAX_HEADER_BYTES = 16 * 1024
HEADER_TIMEOUT_SECONDS = 10.0  # defaults of HTTP_HEADER_TIMEOUT_SECONDS and
BODY_TIMEOUT_SECONDS = 30.0  # HTTP_BODY_TIMEOUT_SECONDS


class _HeadersTooLargeError(Exception):
    """Raised from a parser callback: httptools stops parsing this connection."""


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    header_timeout = HEADER_TIMEOUT_SECONDS
    body_timeout = BODY_TIMEOUT_SECONDS
    max_header_bytes = MAX_HEADER_BYTES

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        settings = get_settings()
        self.header_timeout = settings.http_header_timeout_seconds
        self.body_timeout = settings.http_body_timeout_seconds
        self._deadline: asyncio.TimerHandle | None = None
        self._header_bytes = 0
        self._refusal: int | None = None  # the status sent instead of serving the request

    # -- deadlines ------------------------------------------------------------------------

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._timed_out)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _timed_out(self) -> None:
        self._deadline = None
        cycle = self.cycle
        if cycle is not None and cycle.response_started:
            self.transport.close()  # the app is answering; only its client is slow
            return
        if cycle is not None:
            cycle.disconnected = True  # the app, if waiting for the body, sees a disconnect
            cycle.message_event.set()
        self._refuse(408, "Request Timeout")

    def _refuse(self, status: int, text: str) -> None:
        self._refusal = status
        if not self.transport.is_closing():
            body = text.encode("ascii")
            self.transport.write(
                b"".join(
                    (
                        STATUS_LINE[status],
                        b"content-type: text/plain; charset=utf-8\r\n",
                        b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
                        b"connection: close\r\n\r\n",
                        body,
                    )
                )
            )
            self.transport.close()

    # -- uvicorn's hooks --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.header_timeout)  # a connection that never sends a request

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refusal is None:
            super().data_received(data)

    def send_400_response(self, msg: str) -> None:
        if self._refusal is None:  # a parser error; ours already answered
            super().send_400_response(msg)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_bytes = 0
        self._arm(self.header_timeout)

    def on_url(self, url: bytes) -> None:
        self._count_header_bytes(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_header_bytes(len(name) + len(value) + 4)
        super().on_header(name, value)

    def _count_header_bytes(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > self.max_header_bytes:
            self._disarm()
            self._refuse(431, "Request Header Fields Too Large")
            raise _HeadersTooLargeError

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._arm(self.body_timeout)

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()
