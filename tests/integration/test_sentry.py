"""Error tracking end to end: the real sentry-sdk, pointed at a capture server on 127.0.0.1.

Each test plants credentials and personal data where they really travel (headers, cookies,
query strings, the request body, log breadcrumbs, extras and the exception message) and
asserts on the bytes the SDK actually sent: the request id is there, the planted values are
not. Noise (4xx, client disconnects, transient provider errors) must produce no event.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import boto3
import jwt
import pytest
import sentry_sdk
from fastapi.testclient import TestClient
from mysoulmate.core.errors import ApiError
from mysoulmate.observability import error_tracking
from mysoulmate.observability.error_tracking import (
    capture_exception,
    fingerprint,
    init_error_tracking,
    message_template,
    noise_reason,
    shutdown_error_tracking,
)

from tests.support.aws import (
    API_REQUEST_ID,
    REPO_ROOT,
    FakeLambdaContext,
    Queues,
    http_event,
)
from tests.support.capture_server import CapturedRequest, CaptureServer
from tests.support.helpers import TEST_SECRET, make_token

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]
PROJECT_ID = "42"

# Planted secrets and personal data: none of these may ever reach the capture server.
PASSWORD = "Hunter2-Planted-Pw"
API_KEY = "ak-planted-7f3c9e1b5d"
COOKIE = "ckplanted6b2d8f0a"
EMAIL = "alice.planted@example.org"
PHONE = "+1 415 555 0142"
BEARER = jwt.encode(
    {"sub": "alice", "scope": "planted"}, "another-planted-secret-0123456789abcdef", "HS256"
)


def forbidden_fragments(*tokens: str) -> list[str]:
    """Every planted value, also as it looks URL-encoded, JSON-escaped or without spacing."""
    values = [PASSWORD, API_KEY, COOKIE, EMAIL, PHONE, BEARER, *tokens]
    fragments = set(values)
    for value in values:
        fragments.update({quote(value), quote_plus(value), json.dumps(value)[1:-1]})
    fragments.update({"4155550142", "415 555 0142", "alice.planted", "Hunter2"})
    return sorted(fragments)


def assert_nothing_planted(server: CaptureServer, *tokens: str) -> None:
    sent = "\n".join(request.text for request in server.received())
    assert sent, "nothing was sent"
    leaked = [fragment for fragment in forbidden_fragments(*tokens) if fragment in sent]
    assert leaked == [], f"planted values reached Sentry: {leaked}"


# -- the capture server as Sentry ----------------------------------------------------------


def envelope_items(request: CapturedRequest) -> list[tuple[dict[str, Any], Any]]:
    """(item header, payload) pairs of a Sentry envelope."""
    data = request.body
    lines = data.split(b"\n", 1)
    rest = lines[1] if len(lines) > 1 else b""
    items: list[tuple[dict[str, Any], Any]] = []
    while rest.strip():
        header_line, _, rest = rest.partition(b"\n")
        header = json.loads(header_line)
        if "length" in header:
            payload, rest = rest[: header["length"]], rest[header["length"] :]
            rest = rest.removeprefix(b"\n")
        else:
            payload, _, rest = rest.partition(b"\n")
        items.append((header, json.loads(payload) if payload.strip() else None))
    return items


def is_envelope(request: CapturedRequest) -> bool:
    return request.path == f"/api/{PROJECT_ID}/envelope/"


def events(server: CaptureServer) -> list[dict[str, Any]]:
    return [
        payload
        for request in server.received(is_envelope)
        for header, payload in envelope_items(request)
        if header.get("type") == "event"
    ]


def wait_for_events(server: CaptureServer, count: int = 1) -> list[dict[str, Any]]:
    server.wait_for(
        lambda r: is_envelope(r) and any(h.get("type") == "event" for h, _ in envelope_items(r)),
        count=count,
    )
    return events(server)


@pytest.fixture
def sentry_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[CaptureServer]:
    """A capture server standing in for Sentry, and SENTRY_DSN pointing at it."""
    with CaptureServer() as server:
        monkeypatch.setenv("SENTRY_DSN", f"http://publickey@127.0.0.1:{server.port}/{PROJECT_ID}")
        monkeypatch.setenv("APP_VERSION", "9.8.7")
        try:
            yield server
        finally:
            shutdown_error_tracking()
            sentry_sdk.get_isolation_scope().remove_extra("signup_form")


def plant_and_fail(*_: Any, **__: Any) -> None:
    """Stands in for a domain call that breaks, after leaving personal data in a log
    breadcrumb and the scope's extras, with more of it in its message."""
    logging.getLogger("mysoulmate.signup").warning(
        "signup for %s (phone %s) with password=%s",
        EMAIL,
        PHONE,
        PASSWORD,
        extra={"api_key": API_KEY, "contact": f"mail {EMAIL}"},
    )
    sentry_sdk.set_extra("signup_form", {"password": PASSWORD, "notes": f"call {PHONE}"})
    raise RuntimeError(
        f"queue rejected signup of {EMAIL} ({PHONE}): password={PASSWORD} "
        f"Authorization: Bearer {BEARER} x-api-key={API_KEY} Cookie: session={COOKIE}"
    )


def planted_headers(token: str) -> dict[str, str]:
    return {
        "authorization": f"Bearer {token}",
        "cookie": f"session={COOKIE}; theme=dark",
        "x-api-key": API_KEY,
        "x-auth-token": token,  # not in the SDK's own list of sensitive headers
        "x-user-email": EMAIL,
        "x-contact": f"phone {PHONE}",
    }


PLANTED_QUERY = f"api_key={API_KEY}&email={quote(EMAIL)}&phone={quote(PHONE)}&password={PASSWORD}"
PLANTED_BODY = {
    "event": "signup",
    "properties": {"password": PASSWORD, "email": EMAIL, "phone": PHONE, "apiKey": API_KEY},
}


# -- Lambda ---------------------------------------------------------------------------------


@pytest.fixture
def analytics(
    sentry_server: CaptureServer,
    lambda_env: Callable[..., None],
    events_table: str,
    queues: Queues,
    load_function: Callable[[str], Handler],
) -> Handler:
    lambda_env(queues.url)
    return load_function("analytics")


def test_unhandled_error_in_a_lambda_handler_reaches_sentry_scrubbed(
    analytics: Handler, sentry_server: CaptureServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("mysoulmate.queue.sqs.SqsQueue.send", plant_and_fail)
    event = http_event(
        "POST", "/api/v1/analytics/track", body=PLANTED_BODY, claims={"sub": "alice"}
    )
    event["rawQueryString"] = PLANTED_QUERY
    event["headers"].update(planted_headers(BEARER))
    event["headers"]["accept-language"] = "fr"
    event["cookies"] = [f"session={COOKIE}", "theme=dark"]

    response = analytics(event, FakeLambdaContext())

    assert response["statusCode"] == 500
    error = json.loads(response["body"])["error"]
    assert error["code"] == "internal_error"
    assert error["requestId"] == API_REQUEST_ID
    [sent] = wait_for_events(sentry_server)
    assert sent["tags"]["request_id"] == API_REQUEST_ID
    assert sent["tags"]["function"] == "mysoulmate-test"
    assert sent["tags"]["endpoint_group"] == "analytics"
    assert sent["tags"]["route"] == "POST /api/v1/analytics/track"
    assert sent["tags"]["locale"] == "fr"
    assert sent["user"] == {"id": "alice"}
    assert sent["release"] == "9.8.7"
    assert sent["environment"] == "test"
    [exception] = sent["exception"]["values"]
    assert exception["type"] == "RuntimeError"
    assert exception["mechanism"]["handled"] is False
    assert "[Filtered]" in exception["value"]
    assert any("signup for" in crumb.get("message", "") for crumb in sent["breadcrumbs"]["values"])
    assert sent["extra"]["signup_form"]["password"] == "[Filtered]"
    assert sent["fingerprint"][0] == "builtins.RuntimeError"
    assert_nothing_planted(sentry_server)


def test_client_errors_on_lambda_produce_no_event(
    analytics: Handler, sentry_server: CaptureServer
) -> None:
    invalid = http_event("POST", "/api/v1/analytics/track", raw_body="{not json")
    invalid["requestContext"]["authorizer"] = {"jwt": {"claims": {"sub": "alice"}}}
    unauthenticated = http_event("POST", "/api/v1/analytics/track", body=PLANTED_BODY)
    forbidden = http_event("GET", "/api/v1/analytics/user/bob", claims={"sub": "alice"})

    statuses = [
        analytics(e, FakeLambdaContext())["statusCode"]
        for e in (invalid, unauthenticated, forbidden)
    ]
    error_tracking.flush()

    assert statuses == [400, 401, 403]
    assert events(sentry_server) == []


# -- the container app ------------------------------------------------------------------------


@pytest.fixture
def app(sentry_server: CaptureServer) -> Any:
    """The server app, built once Sentry reports to the capture server."""
    from mysoulmate.runtime.server import create_server_app

    return create_server_app()


def test_unhandled_error_in_the_container_app_reaches_sentry_scrubbed(
    app: Any,
    make_client: Callable[..., TestClient],
    sentry_server: CaptureServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("mysoulmate.queue.local.LocalQueue.send", plant_and_fail)
    token = make_token("alice")
    client = make_client(app, raise_server_exceptions=False)

    response = client.post(
        f"/api/v1/analytics/track?{PLANTED_QUERY}",
        json=PLANTED_BODY,
        headers={**planted_headers(token), "X-Request-Id": "req-container-1"},
    )

    assert response.status_code == 500
    assert response.json()["error"]["requestId"] == "req-container-1"
    assert response.headers["x-request-id"] == "req-container-1"
    [sent] = wait_for_events(sentry_server)
    error_tracking.flush()
    assert len(events(sentry_server)) == 1, "the same error was reported twice"
    assert sent["tags"]["request_id"] == "req-container-1"
    assert sent["tags"]["endpoint_group"] == "analytics"
    assert sent["tags"]["shape"] == "container"
    assert sent["user"] == {"id": "alice"}
    assert sent["request"]["url"].endswith("/api/v1/analytics/track")
    assert sent["request"]["headers"]["x-auth-token"] == "[Filtered]"
    assert_nothing_planted(sentry_server, token)


def test_client_errors_and_disconnects_in_the_container_produce_no_event(
    app: Any,
    make_client: Callable[..., TestClient],
    sentry_server: CaptureServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from starlette.requests import ClientDisconnect

    client = make_client(app, raise_server_exceptions=False)
    alice = {"Authorization": f"Bearer {make_token('alice')}"}
    statuses = [
        client.post("/api/v1/analytics/track", json={}, headers=alice).status_code,
        client.post("/api/v1/analytics/track", json=PLANTED_BODY).status_code,
        client.get("/api/v1/analytics/user/bob", headers=alice).status_code,
        client.get("/no/such/route").status_code,
    ]

    def disconnected(*_: Any) -> None:
        raise ClientDisconnect()

    monkeypatch.setattr("mysoulmate.queue.local.LocalQueue.send", disconnected)
    statuses.append(
        client.post("/api/v1/analytics/track", json={"event": "x"}, headers=alice).status_code
    )
    error_tracking.flush()

    assert statuses == [422, 401, 403, 404, 500]
    assert events(sentry_server) == []


def test_unhandled_asyncio_error_in_the_container_is_reported(
    app: Any, make_client: Callable[..., TestClient], sentry_server: CaptureServer
) -> None:
    async def fails() -> None:
        raise LookupError(f"background job for {EMAIL} failed")

    async def fire_and_forget() -> None:
        task = asyncio.get_running_loop().create_task(fails())
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert task.done()
        del task  # never awaited: the loop's exception handler hears of it when collected
        gc.collect()

    with make_client(app) as client:  # runs the lifespan that installs the handler
        client.portal.call(fire_and_forget)

    [sent] = wait_for_events(sentry_server)
    assert sent["exception"]["values"][0]["type"] == "LookupError"
    assert sent["tags"]["source"] == "asyncio"
    assert_nothing_planted(sentry_server)


# -- noise, grouping and configuration ----------------------------------------------------------


class ThrottlingError(Exception):
    """Shaped like botocore's ClientError: the AWS error code is in ``response``."""

    def __init__(self, code: str) -> None:
        super().__init__(f"An error occurred ({code})")
        self.response = {"Error": {"Code": code, "Message": "Rate exceeded"}}


def test_configured_transient_provider_errors_are_not_reported_others_are(
    sentry_server: CaptureServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from starlette.requests import ClientDisconnect

    monkeypatch.setenv("SENTRY_IGNORED_ERRORS", "ThrottlingException, TimeoutError")
    init_error_tracking("container")

    try:
        raise RuntimeError("storage failed") from ThrottlingError("ThrottlingException")
    except RuntimeError as exc:
        wrapped_throttling = exc
    for noise in (
        ThrottlingError("ThrottlingException"),
        wrapped_throttling,
        TimeoutError("provider timed out"),
        ClientDisconnect(),
        ApiError(),
    ):
        capture_exception(noise)
    capture_exception(ThrottlingError("AccessDeniedException"))
    error_tracking.flush()

    [sent] = events(sentry_server)
    assert "AccessDeniedException" in sent["exception"]["values"][-1]["value"]


def test_noise_rules() -> None:
    class Forbidden(ApiError):
        status_code = 403

    class Unavailable(ApiError):
        status_code = 503

    ignored = frozenset({"ThrottlingException"})
    assert noise_reason(Forbidden(), ignored) == "client_error"
    assert noise_reason(Unavailable(), ignored) is None
    assert noise_reason(ThrottlingError("ThrottlingException"), ignored) == "transient"
    assert noise_reason(ThrottlingError("ThrottlingException")) is None  # not configured
    assert noise_reason(RuntimeError("boom"), ignored) is None


def _fail_with(user_id: int) -> RuntimeError:
    try:
        raise RuntimeError(f"profile {user_id} for 'user-{user_id}' not found at 0x7f{user_id:04x}")
    except RuntimeError as exc:
        return exc


def test_the_same_failure_with_different_values_has_one_fingerprint() -> None:
    first, second = _fail_with(41), _fail_with(4242)
    assert fingerprint(first) == fingerprint(second)
    assert fingerprint(first)[1] == f"{__name__}._fail_with"
    assert fingerprint(first) != fingerprint(ValueError(str(first)))
    assert message_template(f"user {EMAIL} failed 3 times") == "user <x> failed <n> times"


def test_without_a_dsn_nothing_is_initialised_or_sent() -> None:
    init_error_tracking("lambda")
    assert error_tracking.enabled() is False
    assert capture_exception(RuntimeError("boom")) is None


def test_a_bad_dsn_stops_start_up_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    from mysoulmate.core.settings import SettingsError, load_settings

    monkeypatch.setenv("SENTRY_DSN", "not-a-dsn")
    with pytest.raises(SettingsError, match="SENTRY_DSN"):
        load_settings()


# -- cold start ---------------------------------------------------------------------------------


def _imported_modules(function: str, **env: str) -> set[str]:
    """Modules a fresh Lambda process imports while loading ``function`` (python -X importtime)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("SENTRY_")}
    result = subprocess.run(
        [
            sys.executable,
            "-X",
            "importtime",
            "-c",
            "import runpy, sys; runpy.run_path(sys.argv[1])",
            str(REPO_ROOT / "functions" / function / "app.py"),
        ],
        env={
            **base,
            "AWS_LAMBDA_FUNCTION_NAME": f"mysoulmate-{function}",
            "AUTH_MODE": "apigateway",
            "JWT_SECRET": TEST_SECRET,
            **env,
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return {
        line.rsplit("|", 1)[-1].strip()
        for line in result.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }


def test_a_function_without_sentry_dsn_never_imports_sentry(tmp_path: Path) -> None:
    modules = _imported_modules("i18n", DATA_DIR=str(tmp_path))
    assert "fastapi" in modules  # the measurement works
    assert not [m for m in modules if m.startswith("sentry_sdk")]


def test_a_function_with_sentry_dsn_imports_only_the_integrations_it_uses(tmp_path: Path) -> None:
    modules = _imported_modules(
        "i18n", DATA_DIR=str(tmp_path), SENTRY_DSN="http://publickey@127.0.0.1:9/1"
    )
    integrations = {
        m.removeprefix("sentry_sdk.integrations.")
        for m in modules
        if m.startswith("sentry_sdk.integrations.") and m.count(".") == 2
    }
    assert "sentry_sdk" in modules
    assert {"aws_lambda", "dedupe", "logging"} <= integrations
    # No web-framework, HTTP-client, AWS-SDK or auto-enabled integrations on Lambda.
    assert not integrations & {"starlette", "fastapi", "stdlib", "boto3", "httpx", "openai"}


def test_on_aws_the_dsn_is_read_from_its_ssm_parameter(
    sentry_server: CaptureServer,
    lambda_env: Callable[..., None],
    events_table: str,
    queues: Queues,
    load_function: Callable[[str], Handler],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """template.yaml passes SENTRY_DSN_PARAMETER (a name), never the DSN itself."""
    dsn = os.environ["SENTRY_DSN"]
    monkeypatch.delenv("SENTRY_DSN")
    boto3.client("ssm", region_name="us-east-1").put_parameter(
        Name="/mysoulmate/test/sentry-dsn", Value=dsn, Type="SecureString"
    )
    monkeypatch.setenv("SENTRY_DSN_PARAMETER", "/mysoulmate/test/sentry-dsn")
    lambda_env(queues.url)
    handler = load_function("analytics")
    monkeypatch.setattr("mysoulmate.queue.sqs.SqsQueue.send", plant_and_fail)
    event = http_event("POST", "/api/v1/analytics/track", body={"event": "x"}, claims={"sub": "a"})

    assert handler(event, FakeLambdaContext())["statusCode"] == 500
    [sent] = wait_for_events(sentry_server)
    assert sent["tags"]["request_id"] == API_REQUEST_ID


def test_an_unreadable_dsn_parameter_leaves_error_tracking_off_not_the_function(
    lambda_env: Callable[..., None],
    events_table: str,
    queues: Queues,
    load_function: Callable[[str], Handler],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SENTRY_DSN_PARAMETER", "/mysoulmate/test/missing")
    lambda_env(queues.url)
    handler = load_function("analytics")
    event = http_event("GET", "/api/v1/analytics/user/a", claims={"sub": "a"})
    assert handler(event, FakeLambdaContext())["statusCode"] == 200
    assert sentry_sdk.get_client().is_active() is False


def test_every_transaction_of_a_request_carries_its_request_id_and_user_id(
    sentry_server: CaptureServer,
    make_client: Callable[..., TestClient],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Not only the errors the handler captures: performance transactions (and anything
    else sent during the request) are tagged on the request's isolation scope."""
    from mysoulmate.runtime.server import create_server_app

    monkeypatch.setenv("SENTRY_TRACES_SAMPLE_RATE", "1")
    client = make_client(create_server_app(), raise_server_exceptions=False)
    answer = client.get(
        "/api/v1/analytics/user/alice",
        headers={"Authorization": f"Bearer {make_token('alice')}", "X-Request-Id": "req-tx-1"},
    )
    assert answer.status_code == 200
    error_tracking.flush()
    sentry_server.wait_for(is_envelope)
    transactions = [
        payload
        for request in sentry_server.received(is_envelope)
        for header, payload in envelope_items(request)
        if header.get("type") == "transaction"
    ]
    (transaction,) = [t for t in transactions if t["tags"].get("request_id") == "req-tx-1"]
    assert transaction["user"] == {"id": "alice"}  # the id only: no e-mail, name or IP
