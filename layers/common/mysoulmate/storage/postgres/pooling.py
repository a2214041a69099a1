"""How PostgresEventStore holds its connections: one reused per Lambda process (checked
after an idle spell, since a frozen sandbox's connection may have been cut) or a psycopg_pool
pool in containers; `Conn` is the connection type every module of the adapter uses.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import psycopg
from psycopg.pq import TransactionStatus

from mysoulmate.storage.postgres.connection import (
    CONNECT_TIMEOUT_SECONDS,
    POOL_WAIT_SECONDS,
    STARTUP_WAIT_SECONDS,
)

Conn = psycopg.Connection[tuple[Any, ...]]

IDLE_CHECK_SECONDS = 30.0  # a Lambda connection idle this long may have been cut while frozen


def _connect(info: str) -> Conn:
    return psycopg.connect(info, autocommit=True, connect_timeout=CONNECT_TIMEOUT_SECONDS)


class _Connections(Protocol):
    def connection(self) -> Any: ...  # a context manager yielding a Conn
    def close(self) -> None: ...


class _ProcessConnection:
    """Lambda: one connection per process, reused across invocations.

    A container serves one request at a time, so a pool would only add threads that are
    frozen between invocations anyway. After an idle spell the connection is checked once
    (the proxy or server may have cut it while the sandbox was frozen) and replaced if dead.
    A call made while the connection is busy (a funnel stream being consumed) gets a
    short-lived one of its own instead of corrupting the stream.
    """

    def __init__(self, info: str) -> None:
        self._info = info
        self._conn: Conn | None = None
        self._busy = False
        self._last_used = 0.0
        self._lock = threading.Lock()
        try:  # Lambda SnapStart: a connection restored from a snapshot is a dead socket
            from snapshot_restore_py import register_after_restore  # type: ignore[import-not-found]
        except ImportError:
            pass
        else:
            register_after_restore(self.close)

    @contextmanager
    def connection(self) -> Iterator[Conn]:
        with self._lock:
            borrowed = not self._busy
            self._busy = True
        if not borrowed:
            with _connect(self._info) as extra:
                yield extra
            return
        try:
            conn = self._ready()
            yield conn
            if conn.info.transaction_status != TransactionStatus.IDLE:
                conn.close()  # abandoned mid-stream or mid-transaction: start clean next time
        except BaseException:
            if self._conn is not None and (
                self._conn.broken or self._conn.info.transaction_status != TransactionStatus.IDLE
            ):
                self._conn.close()
            raise
        finally:
            self._last_used = time.monotonic()
            with self._lock:
                self._busy = False

    def _ready(self) -> Conn:
        conn = self._conn
        if conn is not None and not conn.closed and not conn.broken:
            if time.monotonic() - self._last_used < IDLE_CHECK_SECONDS:
                return conn
            try:
                conn.execute("SELECT 1")
                return conn
            except psycopg.Error:
                conn.close()
        self._conn = _connect(self._info)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class _Pool:
    """Containers: request threads and the worker thread share a small pool."""

    def __init__(self, info: str, size: int) -> None:
        from psycopg_pool import ConnectionPool

        self._pool: Any = ConnectionPool(
            info,
            min_size=1,
            max_size=size,
            kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT_SECONDS},
            check=ConnectionPool.check_connection,  # drop connections the server closed
            open=False,
            timeout=POOL_WAIT_SECONDS,  # a request waits this long for a connection
            name="mysoulmate",
        )
        self._pool.open(wait=True, timeout=STARTUP_WAIT_SECONDS)

    def connection(self) -> Any:
        return self._pool.connection()

    def close(self) -> None:
        self._pool.close()
