"""X-Ray traces from the real handlers, end to end without a daemon: the function runs in a
fresh interpreter configured as Lambda runs it with tracing on (LAMBDA_TASK_ROOT, a sampled
`_X_AMZN_TRACE_ID`), the real X-Ray SDK's UDP emitter sends to a socket this test reads
(AWS_XRAY_DAEMON_ADDRESS), and moto answers the AWS calls.

A subprocess, because patching botocore is process-wide and cannot be undone."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
TRACE_ID = "1-5759e988-bd862e3fe1be46a994272793"
PARENT_ID = "53995c3f42cd8ad8"

CHILD = textwrap.dedent(
    """
    import importlib.util, json, os, sys
    from moto import mock_aws

    with mock_aws():
        import boto3
        from tests.support.aws import (
            FakeLambdaContext, create_events_table, http_event, queued_message, sqs_event,
        )
        create_events_table(os.environ["EVENTS_TABLE"])
        sqs = boto3.client("sqs", region_name="us-east-1")
        os.environ["EVENTS_QUEUE_URL"] = sqs.create_queue(QueueName="q")["QueueUrl"]
        function = sys.argv[1]
        spec = importlib.util.spec_from_file_location("app", f"functions/{function}/app.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        handler = module.handler
        if function == "analytics":
            event = http_event("POST", "/api/v1/analytics/track",
                               body={"event": "Song Played"}, claims={"sub": "alice"})
        else:
            event = sqs_event([queued_message("alice").model_dump_json() for _ in range(3)])
        response = handler(event, FakeLambdaContext())
        import mysoulmate.observability.powertools as p
        print("RESULT " + json.dumps({"response": response,
                                      "tracer": p.get_tracer() is not None,
                                      "xray_imported": "aws_xray_sdk" in sys.modules}))
    """
)


@pytest.fixture
def daemon() -> Iterator[socket.socket]:
    """A UDP socket standing in for the X-Ray daemon."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    yield sock
    sock.close()


def child_env(port: int, *, tracing: bool, tmp_path: Path) -> dict[str, str]:
    drop = ("AWS_", "POWERTOOLS_", "LAMBDA_", "_X_AMZN", "SENTRY_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(
        {
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "layers" / "common")]),
            "AWS_LAMBDA_FUNCTION_NAME": "mysoulmate-trace-test",
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "STAGE": "test",
            "DATA_DIR": str(tmp_path / "data"),
            "STORAGE_BACKEND": "dynamodb",
            "QUEUE_BACKEND": "sqs",
            "EVENTS_TABLE": "mysoulmate-trace-events",
            "EVENTS_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/q",
            "AUTH_MODE": "apigateway",
            "POWERTOOLS_SERVICE_NAME": "trace-test",
            "POWERTOOLS_METRICS_NAMESPACE": "MySoulmate",
            # What the Lambda runtime sets for a function with active tracing.
            "LAMBDA_TASK_ROOT": str(tmp_path),
            "_X_AMZN_TRACE_ID": f"Root={TRACE_ID};Parent={PARENT_ID};Sampled=1",
            "AWS_XRAY_DAEMON_ADDRESS": f"127.0.0.1:{port}",
            "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
        }
    )
    if not tracing:
        env["POWERTOOLS_TRACE_DISABLED"] = "true"
    return env


def run_function(function: str, env: dict[str, str]) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, function],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))
    return dict(json.loads(line.removeprefix("RESULT ")))


def received(sock: socket.socket) -> list[dict[str, Any]]:
    """Every document the emitter sent: `{"format": "json", "version": 1}` + newline + JSON."""
    sock.setblocking(False)
    documents = []
    while True:
        try:
            packet = sock.recv(65536)
        except BlockingIOError:
            return documents
        header, _, body = packet.decode().partition("\n")
        assert json.loads(header) == {"format": "json", "version": 1}
        documents.append(json.loads(body))


def flatten(documents: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Subsegments by id, nested ones included, each with its parent's id."""
    found: dict[str, dict[str, Any]] = {}

    def visit(doc: dict[str, Any], parent: str | None) -> None:
        doc = dict(doc)
        doc.setdefault("parent_id", parent)
        found[doc["id"]] = doc
        for child in doc.get("subsegments", []):
            visit(child, doc["id"])

    for document in documents:
        visit(document, document.get("parent_id"))
    return found


def named(segments: dict[str, dict[str, Any]], name: str) -> dict[str, Any]:
    matches = [s for s in segments.values() if s["name"] == name]
    assert len(matches) == 1, (name, [s["name"] for s in segments.values()])
    return matches[0]


@pytest.mark.slow
def test_api_function_sends_its_handler_and_sqs_subsegments(
    daemon: socket.socket, tmp_path: Path
) -> None:
    result = run_function(
        "analytics", child_env(daemon.getsockname()[1], tracing=True, tmp_path=tmp_path)
    )

    assert result["tracer"] is True
    assert result["response"]["statusCode"] == 202
    segments = flatten(received(daemon))
    handler = named(segments, "## handler")
    sqs = named(segments, "sqs")
    assert handler["parent_id"] == PARENT_ID
    assert handler["trace_id"] == TRACE_ID
    assert handler["annotations"] == {"ColdStart": True, "Service": "trace-test"}
    assert "metadata" not in handler or not any(
        "response" in key for ns in handler["metadata"].values() for key in ns
    )
    assert sqs["parent_id"] == handler["id"]
    assert sqs["namespace"] == "aws"
    assert sqs["aws"]["operation"] == "SendMessage"
    assert sqs["http"]["response"]["status"] == 200
    # Only botocore is patched: no other library's subsegments (httplib, sqlite3, …).
    assert {s["name"] for s in segments.values()} == {"## handler", "sqs"}


@pytest.mark.slow
def test_consumer_sends_its_flush_and_dynamodb_subsegments(
    daemon: socket.socket, tmp_path: Path
) -> None:
    result = run_function(
        "consumer", child_env(daemon.getsockname()[1], tracing=True, tmp_path=tmp_path)
    )

    assert result["response"] == {"batchItemFailures": []}
    segments = flatten(received(daemon))
    handler = named(segments, "## handler")
    flush = named(segments, "## storage ingest_flush")
    assert flush["annotations"] == {"operation": "ingest_flush", "backend": "dynamodb"}
    writes = [s for s in segments.values() if s["name"] == "dynamodb"]
    assert flush["parent_id"] == handler["id"]
    assert writes
    operations = {w["aws"]["operation"] for w in writes}
    assert operations & {"BatchWriteItem", "TransactWriteItems", "PutItem"}, operations
    assert all(w["namespace"] == "aws" for w in writes)
    assert all(w["parent_id"] == flush["id"] for w in writes)
    assert all(s["trace_id"] == TRACE_ID for s in segments.values())


@pytest.mark.slow
def test_with_tracing_disabled_nothing_is_sent_and_no_tracer_is_built(
    daemon: socket.socket, tmp_path: Path
) -> None:
    result = run_function(
        "analytics", child_env(daemon.getsockname()[1], tracing=False, tmp_path=tmp_path)
    )

    assert result["response"]["statusCode"] == 202
    assert result["tracer"] is False
    assert result["xray_imported"] is False
    assert received(daemon) == []
