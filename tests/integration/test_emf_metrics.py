"""CloudWatch metrics on Lambda: the EMF documents the real handlers print to stdout carry
the named metrics with the right dimensions (API Gateway and SQS events in, moto behind)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from aws_lambda_powertools.metrics.provider import cold_start

from tests.support.aws import (
    FakeLambdaContext,
    Queues,
    http_event,
    queued_message,
    sqs_event,
)

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]
ALICE = {"sub": "alice", "roles": "[user]"}
SERVICE = "mysoulmate-test"  # POWERTOOLS_SERVICE_NAME of the lambda_env fixture


@pytest.fixture
def deployed(lambda_env: Callable[..., None], events_table: str, queues: Queues) -> Queues:
    lambda_env(queues.url)
    return queues


@pytest.fixture
def fresh_cold_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """Powertools remembers the cold start per process; each test is a new Lambda here."""
    monkeypatch.setattr(cold_start, "is_cold_start", True)


def emf_documents(stdout: str) -> list[dict[str, Any]]:
    """The EMF documents among the lines the handler printed (logs are JSON too)."""
    documents = []
    for line in stdout.splitlines():
        try:
            parsed = json.loads(line)
        except ValueError:
            continue
        if isinstance(parsed, dict) and "_aws" in parsed:
            documents.append(parsed)
    return documents


def metric(documents: list[dict[str, Any]], name: str) -> list[tuple[dict[str, str], Any]]:
    """(dimensions, value) of every datapoint of ``name``, checked against the EMF schema
    CloudWatch applies: the namespace, and each dimension named in the document."""
    found = []
    for document in documents:
        for directive in document["_aws"]["CloudWatchMetrics"]:
            if name not in {m["Name"] for m in directive["Metrics"]}:
                continue
            assert directive["Namespace"] == "MySoulmate"
            assert isinstance(document["_aws"]["Timestamp"], int)
            [dimension_names] = directive["Dimensions"]
            dimensions = {d: document[d] for d in dimension_names}
            found.append((dimensions, document[name]))
    return found


def total(points: list[tuple[dict[str, str], Any]]) -> float:
    return sum(sum(v) if isinstance(v, list) else v for _, v in points)


def test_api_function_reports_requests_latency_accepted_events_and_cold_start(
    deployed: Queues,
    load_function: Callable[[str], Handler],
    lambda_context: FakeLambdaContext,
    capsys: pytest.CaptureFixture[str],
    fresh_cold_start: None,
) -> None:
    analytics = load_function("analytics")
    capsys.readouterr()

    event = http_event("POST", "/api/v1/analytics/track", body={"event": "x"}, claims=ALICE)
    assert analytics(event, lambda_context)["statusCode"] == 202
    user = http_event("GET", "/api/v1/analytics/user/alice", claims=ALICE)
    assert analytics(user, lambda_context)["statusCode"] == 200
    denied = http_event("GET", "/api/v1/analytics/user/bob", claims=ALICE)
    assert analytics(denied, lambda_context)["statusCode"] == 403

    documents = emf_documents(capsys.readouterr().out)

    [(cold_dimensions, _)] = metric(documents, "ColdStart")
    assert cold_dimensions == {"function_name": "mysoulmate-test", "service": SERVICE}
    [(accepted_dimensions, accepted)] = metric(documents, "EventsAccepted")
    assert accepted_dimensions == {"service": SERVICE}
    assert accepted == [1.0]

    requests = metric(documents, "Requests")
    assert [d for d, _ in requests] == [
        {"route": route, "method": method, "status_class": status, "service": SERVICE}
        for route, method, status in (
            ("/api/v1/analytics/track", "POST", "2xx"),
            ("/api/v1/analytics/user/{userId}", "GET", "2xx"),
            ("/api/v1/analytics/user/{userId}", "GET", "4xx"),
        )
    ]
    assert total(requests) == 3
    latency = metric(documents, "Latency")
    assert [d for d, _ in latency] == [d for d, _ in requests]
    assert all(value[0] > 0 for _, value in latency)
    for document in documents:
        for directive in document["_aws"]["CloudWatchMetrics"]:
            units = {m["Name"]: m["Unit"] for m in directive["Metrics"]}
            assert units.get("Latency", "Milliseconds") == "Milliseconds"
            assert units.get("Requests", "Count") == "Count"
    [(errors_dimensions, errors)] = metric(documents, "Errors")
    assert errors_dimensions == {"code": "forbidden_other_user", "service": SERVICE}
    assert errors == [1.0]


def test_consumer_reports_stored_deduplicated_failures_and_revenue_once(
    deployed: Queues,
    load_function: Callable[[str], Handler],
    lambda_context: FakeLambdaContext,
    capsys: pytest.CaptureFixture[str],
    fresh_cold_start: None,
) -> None:
    consumer = load_function("consumer")
    purchase = queued_message(
        "alice",
        message_id="p-1",
        event="purchase",
        properties={"revenue": 12.5, "currency": "EUR"},
    )
    dollars = queued_message("bob", message_id="p-2", event="purchase", properties={"revenue": 3})
    plain = queued_message("bob", message_id="s-1")
    bodies = [purchase.model_dump_json(), dollars.model_dump_json(), plain.model_dump_json()]
    capsys.readouterr()

    first = consumer(sqs_event([*bodies, "not a message"]), lambda_context)
    assert len(first["batchItemFailures"]) == 1
    documents = emf_documents(capsys.readouterr().out)

    assert metric(documents, "ColdStart")
    assert metric(documents, "EventsStored") == [({"service": SERVICE}, [3.0])]
    assert metric(documents, "EventsDeduplicated") == [({"service": SERVICE}, [0.0])]
    assert metric(documents, "ConsumerRecordFailures") == [({"service": SERVICE}, [1.0])]
    revenue = sorted(metric(documents, "Revenue"), key=lambda point: point[0]["currency"])
    assert revenue == [
        ({"currency": "EUR", "service": SERVICE}, [12.5]),
        ({"currency": "USD", "service": SERVICE}, [3.0]),
    ]
    units = {
        m["Name"]: m["Unit"]
        for d in documents
        for directive in d["_aws"]["CloudWatchMetrics"]
        for m in directive["Metrics"]
    }
    assert units["Revenue"] == "None"
    assert units["EventsStored"] == "Count"

    # SQS redelivers the whole batch: everything is a duplicate, no revenue twice.
    second = consumer(sqs_event(bodies), lambda_context)
    assert second["batchItemFailures"] == []
    documents = emf_documents(capsys.readouterr().out)
    assert metric(documents, "ColdStart") == []
    assert metric(documents, "EventsStored") == [({"service": SERVICE}, [0.0])]
    assert metric(documents, "EventsDeduplicated") == [({"service": SERVICE}, [3.0])]
    assert metric(documents, "Revenue") == []


def test_lambda_never_imports_prometheus_client() -> None:
    """Cold start: the functions' imports must not pull prometheus_client in."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {
        "PATH": "/usr/bin:/bin",
        "AWS_LAMBDA_FUNCTION_NAME": "mysoulmate-test",
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "STAGE": "dev",
        "STORAGE_BACKEND": "dynamodb",
        "QUEUE_BACKEND": "sqs",
        "EVENTS_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/q",
        "AUTH_MODE": "apigateway",
        "POWERTOOLS_TRACE_DISABLED": "true",
    }
    for function in ("analytics", "consumer", "health", "i18n"):
        code = (
            "import sys, runpy; runpy.run_path(sys.argv[1]);"
            "print(sorted(m for m in sys.modules if m.startswith('prometheus_client')))"
        )
        result = subprocess.run(
            [sys.executable, "-c", code, str(root / "functions" / function / "app.py")],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip().splitlines()[-1] == "[]", function
