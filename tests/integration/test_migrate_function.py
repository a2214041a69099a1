"""functions/migrate/app.py as CloudFormation drives it: a custom-resource event whose
ResponseURL is a local capture server standing in for the pre-signed S3 URL.

CloudFormation waits (up to the resource's ServiceTimeout) for exactly one JSON document PUT
to that URL; these tests assert that document field by field, and that every way of failing
still produces it. The migration itself is stubbed where the test is about the protocol
(the real migrations have their own tests); the last tests run it for real against PostgreSQL.
"""

from __future__ import annotations

import importlib.util
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from mysoulmate.runtime.backends import reset_backends
from mysoulmate.storage.postgres import migrate as postgres_migrate

REPO_ROOT = Path(__file__).resolve().parents[2]
STACK_ID = (
    "arn:aws:cloudformation:us-east-1:123456789012:stack/mysoulmate-dev/"
    "5b3a6f00-1c2d-11ef-9c2e-0a1b2c3d4e5f"
)
PASSWORD = "pw-0f9e8d7c6b5a"
DATABASE_URL = f"postgresql://mysoulmate_admin:{PASSWORD}@127.0.0.1:1/mysoulmate?connect_timeout=1"


@dataclass
class Capture:
    """What the stand-in for S3 received: one entry per PUT."""

    requests: list[dict[str, Any]] = field(default_factory=list)
    fail_first: int = 0  # answer this many PUTs with HTTP 500 first
    arrived: threading.Event = field(default_factory=threading.Event)

    @property
    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(r["body"]) for r in self.requests if r["status"] == 200]


@pytest.fixture
def capture() -> Iterator[tuple[Capture, str]]:
    state = Capture()

    class Handler(BaseHTTPRequestHandler):
        def do_PUT(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length).decode()
            status = 500 if state.fail_first > 0 else 200
            state.fail_first -= 1
            state.requests.append(
                {
                    "path": self.path,
                    "headers": dict(self.headers.items()),
                    "body": body,
                    "status": status,
                }
            )
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()
            if status == 200:
                state.arrived.set()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/response-bucket/signed-key?X-Amz-Signature=abc"
    try:
        yield state, url
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def migrate_app(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """The handler module loaded the way Lambda loads it, with the aurora environment."""
    monkeypatch.setenv("STORAGE_BACKEND", "postgres")
    monkeypatch.setenv("DATABASE_URL", DATABASE_URL)
    monkeypatch.setenv("AUTH_MODE", "apigateway")
    reset_backends()
    spec = importlib.util.spec_from_file_location(
        "migrate_function_app", REPO_ROOT / "functions" / "migrate" / "app.py"
    )
    assert spec is not None
    assert spec.loader is not None
    entry_point = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(entry_point)
    # The entry point only re-exports the handler; its knobs live in the package module.
    from mysoulmate.runtime import migrate_resource

    assert entry_point.handler is migrate_resource.handler
    # Fast retries; the behaviour is the same.
    monkeypatch.setattr(migrate_resource, "RETRY_DELAY_SECONDS", 0.05)
    yield migrate_resource
    reset_backends()


@dataclass
class FakeContext:
    remaining_ms: int = 300_000
    log_stream_name: str = "2026/01/31/[$LATEST]0123456789abcdef"

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def cfn_event(url: str, request_type: str, physical_id: str | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {
        "RequestType": request_type,
        "ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:mysoulmate-dev-Migrate",
        "ResponseURL": url,
        "StackId": STACK_ID,
        "RequestId": "e2f7a1c4-0d3b-4c8e-9b6a-5f4e3d2c1b0a",
        "LogicalResourceId": "DatabaseMigration",
        "ResourceType": "AWS::CloudFormation::CustomResource",
        "ResourceProperties": {
            "ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:mysoulmate-dev-Migrate",
            "CommonLayer": "arn:aws:lambda:us-east-1:123456789012:layer:mysoulmate-dev-common:7",
            "AppVersion": "1.2.3",
            "MigrationsVersion": "1",
        },
    }
    if physical_id is not None:
        event["PhysicalResourceId"] = physical_id
    if request_type == "Update":
        event["OldResourceProperties"] = {**event["ResourceProperties"], "AppVersion": "1.2.2"}
    return event


def stub_database(
    monkeypatch: pytest.MonkeyPatch,
    migrate: Callable[[str], str],
    current: str | None = None,
) -> list[str]:
    """Replace the migration (and the revision probe) with stubs; returns the conninfos
    migrate was called with."""
    calls: list[str] = []

    def recording_migrate(conninfo: str) -> str:
        calls.append(conninfo)
        return migrate(conninfo)

    monkeypatch.setattr(postgres_migrate, "migrate", recording_migrate)
    monkeypatch.setattr(postgres_migrate, "current_revision", lambda conninfo: current)
    return calls


def expected_document(status: str, physical_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "Status": status,
        "PhysicalResourceId": physical_id,
        "StackId": STACK_ID,
        "RequestId": "e2f7a1c4-0d3b-4c8e-9b6a-5f4e3d2c1b0a",
        "LogicalResourceId": "DatabaseMigration",
        "NoEcho": False,
        **extra,
    }


CREATED_ID = "mysoulmate-dev-DatabaseMigration"


# ----------------------------------------------------------------------------- the protocol


def test_create_runs_the_migration_and_reports_success_with_the_revision(
    migrate_app: ModuleType, capture: tuple[Capture, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    state, url = capture
    calls = stub_database(monkeypatch, lambda conninfo: "0001")

    assert migrate_app.handler(cfn_event(url, "Create"), FakeContext()) is None

    # conninfo(get_settings()) with DATABASE_URL set is that URL, unchanged.
    assert calls == [DATABASE_URL]
    (request,) = state.requests
    assert request["path"] == "/response-bucket/signed-key?X-Amz-Signature=abc"
    # The URL is pre-signed without a content type: sending one would break the signature.
    assert request["headers"].get("Content-Type", "") == ""
    assert state.bodies == [
        expected_document(
            "SUCCESS",
            CREATED_ID,
            Reason="Database at schema revision 0001",
            Data={"Revision": "0001"},
        )
    ]


def test_update_migrates_and_keeps_the_physical_resource_id(
    migrate_app: ModuleType, capture: tuple[Capture, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A different id on Update would make CloudFormation replace (delete) the resource."""
    state, url = capture
    calls = stub_database(monkeypatch, lambda conninfo: "0002", current="0001")

    migrate_app.handler(cfn_event(url, "Update", physical_id="existing-id"), FakeContext())

    assert calls == [DATABASE_URL]
    assert state.bodies == [
        expected_document(
            "SUCCESS",
            "existing-id",
            Reason="Database at schema revision 0002",
            Data={"Revision": "0002"},
        )
    ]


def test_delete_reports_success_without_touching_the_database(
    migrate_app: ModuleType, capture: tuple[Capture, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    state, url = capture

    def must_not_run(conninfo: str) -> str:
        raise AssertionError("Delete must not migrate")

    calls = stub_database(monkeypatch, must_not_run)
    # Not even the settings are needed: a broken environment must not block stack deletion.
    monkeypatch.delenv("DATABASE_URL")
    reset_backends()

    migrate_app.handler(cfn_event(url, "Delete", physical_id="existing-id"), FakeContext())

    assert calls == []
    assert state.bodies == [
        expected_document("SUCCESS", "existing-id", Reason="Nothing to do on delete", Data={})
    ]


def test_a_failing_migration_reports_failed_with_the_reason_and_returns(
    migrate_app: ModuleType, capture: tuple[Capture, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    state, url = capture

    def broken(conninfo: str) -> str:
        raise RuntimeError('relation "events" already exists\nLINE 1: CREATE TABLE events')

    stub_database(monkeypatch, broken)

    # The handler never raises: Lambda's error would reach nobody, and the stack would wait.
    assert migrate_app.handler(cfn_event(url, "Create"), FakeContext()) is None

    assert state.bodies == [
        expected_document(
            "FAILED",
            CREATED_ID,
            Reason='Migration failed: RuntimeError: relation "events" already exists',
            Data={},
        )
    ]


def test_invalid_settings_report_failed_naming_the_missing_variable(
    migrate_app: ModuleType, capture: tuple[Capture, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    state, url = capture
    calls = stub_database(monkeypatch, lambda conninfo: "0001")
    monkeypatch.delenv("DATABASE_URL")
    reset_backends()

    migrate_app.handler(cfn_event(url, "Create"), FakeContext())

    assert calls == []
    (body,) = state.bodies
    assert body["Status"] == "FAILED"
    assert body["PhysicalResourceId"] == CREATED_ID
    assert body["Reason"].startswith("Migration failed: SettingsError:")
    assert "DATABASE_SECRET_ARN" in body["Reason"]


def test_an_unknown_request_type_reports_failed(
    migrate_app: ModuleType, capture: tuple[Capture, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    state, url = capture
    calls = stub_database(monkeypatch, lambda conninfo: "0001")

    migrate_app.handler(cfn_event(url, "Rollback"), FakeContext())

    assert calls == []
    assert state.bodies == [
        expected_document("FAILED", CREATED_ID, Reason="Unknown RequestType 'Rollback'", Data={})
    ]


def test_a_database_newer_than_this_release_is_left_as_is_and_reported_success(
    migrate_app: ModuleType, capture: tuple[Capture, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An update rollback after a successful migration: the old code cannot downgrade, and
    failing would leave the stack in UPDATE_ROLLBACK_FAILED."""
    state, url = capture

    def must_not_run(conninfo: str) -> str:
        raise AssertionError("must not migrate a newer database")

    calls = stub_database(monkeypatch, must_not_run, current="ffff-from-the-future")

    migrate_app.handler(cfn_event(url, "Update", physical_id="existing-id"), FakeContext())

    assert calls == []
    (body,) = state.bodies
    assert body["Status"] == "SUCCESS"
    assert body["Data"] == {"Revision": "ffff-from-the-future"}


def test_an_unreachable_database_is_retried_until_it_answers(
    migrate_app: ModuleType, capture: tuple[Capture, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Right after creation the proxy's target takes a while to become available."""
    import psycopg

    state, url = capture
    outcomes: list[BaseException | str] = [
        psycopg.OperationalError("connection refused"),
        psycopg.OperationalError("connection timeout expired"),
        "0001",
    ]

    def flaky(conninfo: str) -> str:
        outcome = outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    calls = stub_database(monkeypatch, flaky)

    migrate_app.handler(cfn_event(url, "Create"), FakeContext())

    assert len(calls) == 3
    assert [b["Status"] for b in state.bodies] == ["SUCCESS"]


def test_a_database_that_never_answers_fails_without_the_password_in_the_reason(
    migrate_app: ModuleType, capture: tuple[Capture, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing stubbed: the real conninfo and migration against a port nobody listens on."""
    state, url = capture
    monkeypatch.setattr(migrate_app, "CONNECT_RETRY_SECONDS", 0.5)

    started = time.monotonic()
    migrate_app.handler(cfn_event(url, "Create"), FakeContext())

    assert time.monotonic() - started < 20
    (body,) = state.bodies
    assert body["Status"] == "FAILED"
    assert body["Reason"].startswith("Migration failed: OperationalError:")
    assert PASSWORD not in json.dumps(state.requests)


def test_a_hanging_migration_is_answered_failed_before_the_function_times_out(
    migrate_app: ModuleType, capture: tuple[Capture, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    state, url = capture
    release = threading.Event()

    def hangs(conninfo: str) -> str:
        release.wait(30)
        return "0001"

    stub_database(monkeypatch, hangs)
    monkeypatch.setattr(migrate_app, "TIMEOUT_MARGIN_SECONDS", 0.2)
    # 0.7 s left when invoked: the watchdog must answer at about 0.5 s.
    worker = threading.Thread(
        target=migrate_app.handler,
        args=(cfn_event(url, "Create"), FakeContext(remaining_ms=700)),
    )
    started = time.monotonic()
    worker.start()
    try:
        assert state.arrived.wait(5), "no answer before the function's timeout"
        assert time.monotonic() - started < 2
        assert worker.is_alive(), "the migration was still running when FAILED was sent"
    finally:
        release.set()
        worker.join(10)
    assert not worker.is_alive()
    # The migration finishing later must not send a second, contradicting answer.
    (body,) = state.bodies
    assert len(state.requests) == 1
    assert body["Status"] == "FAILED"
    assert body["Reason"].startswith("Migration did not finish within")
    assert body["PhysicalResourceId"] == CREATED_ID


def test_delivering_the_response_is_retried(
    migrate_app: ModuleType, capture: tuple[Capture, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    state, url = capture
    state.fail_first = 1
    stub_database(monkeypatch, lambda conninfo: "0001")

    migrate_app.handler(cfn_event(url, "Create"), FakeContext())

    assert [r["status"] for r in state.requests] == [500, 200]
    assert [b["Status"] for b in state.bodies] == ["SUCCESS"]
    assert state.requests[0]["body"] == state.requests[1]["body"]


# ----------------------------------------------------------------------------- real PostgreSQL


def test_create_then_update_migrate_a_real_database_to_head(
    migrate_app: ModuleType, capture: tuple[Capture, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from mysoulmate.storage.postgres.connection import HEAD_REVISION

    from tests.support.postgres import scratch_database

    state, url = capture
    with scratch_database() as conninfo:
        monkeypatch.setenv("DATABASE_URL", conninfo)
        reset_backends()

        migrate_app.handler(cfn_event(url, "Create"), FakeContext())
        migrate_app.handler(cfn_event(url, "Update", physical_id=CREATED_ID), FakeContext())

        assert postgres_migrate.current_revision(conninfo) == HEAD_REVISION
    first, second = state.bodies
    for body in (first, second):
        assert body["Status"] == "SUCCESS", body["Reason"]
        assert body["PhysicalResourceId"] == CREATED_ID
        assert body["Data"] == {"Revision": HEAD_REVISION}
