"""Storage operations made visible: each is a Sentry performance span (when Sentry traces
the request) and an X-Ray subsegment (on Lambda, when tracing), with its operation name,
backend and row count and nothing personal; its duration is the ``StorageQuery`` histogram;
one slower than ``SLOW_QUERY_MS`` is logged as a warning and counted
(``SlowStorageOperations``): the slow-query detection and query profiling of the platform.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

from mysoulmate.observability.powertools import get_logger, subsegment
from mysoulmate.observability.signals import count, observe


@dataclass
class StorageOperation:
    """What the caller may add while the operation runs (rows read or written)."""

    operation: str
    backend: str
    rows: int | None = None
    seconds: float = 0.0


def _sentry_span(operation: str, backend: str) -> Any:
    """A span of the current Sentry transaction, or None when Sentry is off or not tracing."""
    # Never imported means no client was started: the SDK's import (≈ 30 ms) stays out of
    # a function without a DSN (the consumer's first batch paid it here).
    if "sentry_sdk" not in sys.modules:
        return None
    import sentry_sdk

    if not sentry_sdk.get_client().is_active():
        return None
    return sentry_sdk.start_span(op=f"db.{backend}", name=operation)


@contextmanager
def storage_operation(operation: str, backend: str) -> Iterator[StorageOperation]:
    """``with storage_operation("dashboard", "postgres") as op: …; op.rows = n``."""
    from mysoulmate.core.settings import get_settings

    record = StorageOperation(operation, backend)
    started = time.perf_counter()
    with ExitStack() as stack:
        span = _sentry_span(operation, backend)
        if span is not None:
            stack.enter_context(span)
            span.set_data("db.system", backend)
        traced = stack.enter_context(subsegment(f"## storage {operation}"))
        try:
            yield record
        finally:
            record.seconds = time.perf_counter() - started
            if span is not None and record.rows is not None:
                span.set_data("db.rows", record.rows)
            if traced is not None:
                traced.put_annotation("operation", operation)
                traced.put_annotation("backend", backend)
                if record.rows is not None:
                    traced.put_metadata("rows", record.rows)
    observe("StorageQuery", record.seconds, operation=operation)
    limit_ms = get_settings().slow_query_ms
    milliseconds = record.seconds * 1000
    if milliseconds >= limit_ms:
        count("SlowStorageOperations", operation=operation, backend=backend)
        get_logger().warning(
            "slow storage operation",
            extra={
                "operation": operation,
                "backend": backend,
                "duration_ms": round(milliseconds, 1),
                "rows": record.rows,
                "slow_query_ms": limit_ms,
            },
        )
