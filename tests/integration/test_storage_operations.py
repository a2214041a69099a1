"""Storage operations are visible: a Sentry span with the operation, backend and row count,
the duration histogram, and a warning plus a counter for each one slower than SLOW_QUERY_MS."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import sentry_sdk
from fastapi.testclient import TestClient
from mysoulmate.observability.error_tracking import shutdown_error_tracking
from mysoulmate.observability.storage_ops import storage_operation
from prometheus_client.parser import text_string_to_metric_families
from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import Transport

from tests.support.helpers import auth_header


@pytest.fixture
def logged() -> Iterator[list[logging.LogRecord]]:
    """What the package logger emits, whatever handlers and streams earlier tests left."""
    from mysoulmate.observability import get_logger

    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    target = logging.getLogger(get_logger().name)
    keep = Keep()
    target.addHandler(keep)
    try:
        yield records
    finally:
        target.removeHandler(keep)


def slow_lines(records: list[logging.LogRecord]) -> list[dict[str, Any]]:
    return [r.__dict__ for r in records if r.getMessage() == "slow storage operation"]


def slow_count(client: TestClient, operation: str) -> float:
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            if sample.name == "mysoulmate_slow_storage_operations_total" and (
                sample.labels.get("operation") == operation
            ):
                return float(sample.value)
    return 0.0


def test_every_operation_over_the_threshold_is_logged_and_counted(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, logged: list[logging.LogRecord]
) -> None:
    monkeypatch.setenv("SLOW_QUERY_MS", "0")  # every operation is "slow"
    from mysoulmate.core.settings import get_settings

    get_settings.cache_clear()
    before = slow_count(client, "dashboard")
    response = client.get("/api/v1/analytics/dashboard", headers=auth_header("root", "admin"))
    assert response.status_code == 200
    (record,) = [r for r in slow_lines(logged) if r["operation"] == "dashboard"]
    assert record["levelname"] == "WARNING"
    assert record["backend"] == "sqlite"
    assert record["slow_query_ms"] == 0
    assert record["duration_ms"] >= 0
    shown = {k: record[k] for k in ("operation", "backend", "duration_ms", "rows", "slow_query_ms")}
    assert "root" not in json.dumps(shown)  # nothing about who asked
    assert slow_count(client, "dashboard") == before + 1


def test_fast_operations_are_not_reported(
    client: TestClient, logged: list[logging.LogRecord]
) -> None:
    response = client.get("/api/v1/analytics/dashboard", headers=auth_header("root", "admin"))
    assert response.status_code == 200
    assert slow_lines(logged) == []


class Captured(Transport):
    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        self.envelopes: list[Envelope] = []

    def capture_envelope(self, envelope: Envelope) -> None:
        self.envelopes.append(envelope)


@pytest.fixture
def sentry() -> Iterator[Captured]:
    transport = Captured()
    sentry_sdk.init(dsn="http://key@127.0.0.1:9/1", transport=transport, traces_sample_rate=1.0)
    try:
        yield transport
    finally:
        shutdown_error_tracking()


def test_an_operation_is_a_span_of_the_request_transaction(sentry: Captured) -> None:
    with (
        sentry_sdk.start_transaction(name="GET /api/v1/analytics/dashboard"),
        storage_operation("dashboard", "postgres") as operation,
    ):
        operation.rows = 42
    sentry_sdk.flush()
    transactions = [
        item.payload.json
        for envelope in sentry.envelopes
        for item in envelope.items
        if item.type == "transaction"
    ]
    (transaction,) = transactions
    (span,) = [s for s in transaction["spans"] if s["op"] == "db.postgres"]
    assert span["description"] == "dashboard"
    assert span["data"]["db.rows"] == 42
    assert span["data"]["db.system"] == "postgres"


def test_without_sentry_an_operation_still_measures() -> None:
    with storage_operation("user_events", "sqlite") as operation:
        operation.rows = 1
    assert operation.seconds > 0
