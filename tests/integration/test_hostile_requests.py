"""Hostile input over HTTP: every request the reliability review found answering 500 now gets
a 4xx in the error envelope, and nothing the API accepts is unstorable."""

from __future__ import annotations

import json

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from mysoulmate.runtime.backends import event_store, local_queue
from mysoulmate.runtime.server import create_server_app
from mysoulmate.runtime.worker import drain_once

from tests.support.helpers import auth_header


@pytest.fixture
def app() -> FastAPI:
    """The server app with a route that fails (the shared `client` fixture serves it)."""
    application = create_server_app()

    @application.get("/test-only/boom")
    async def boom() -> None:
        raise LookupError("boom")

    return application


def post_raw(client: TestClient, body: str) -> tuple[int, dict[str, object]]:
    response = client.post(
        "/api/v1/analytics/track",
        content=body.encode("utf-8", "surrogatepass"),
        headers={**auth_header("ann"), "Content-Type": "application/json"},
    )
    return response.status_code, response.json()


@pytest.mark.parametrize("depth", [33, 64, 256, 1000, 100_000])
def test_deep_nesting_is_a_4xx_whatever_the_depth(client: TestClient, depth: int) -> None:
    status, body = post_raw(
        client, '{"event":"x","properties":{"a":' + "[" * depth + "]" * depth + "}}"
    )
    assert status in (400, 422)
    error = body["error"]
    assert isinstance(error, dict)
    assert error["code"] in ("nesting_too_deep", "validation_error")


@pytest.mark.parametrize(
    "body",
    [
        '{"event":"a\\u0000b"}',
        '{"event":"x","properties":{"k":"\\u0000"}}',
        '{"event":"x","anonymousId":"\\u0000"}',
        '{"event":"x","properties":{"k":"\\ud800"}}',
        '{"event":"x","properties":{"n":NaN}}',
        '{"event":"x","properties":{"n":Infinity}}',
        '{"event":"x","properties":{"n":1e400}}',
        '{"event":"x","timestamp":"0001-01-01T00:00:00+14:00"}',
        '{"event":"x","timestamp":"0999-06-01T00:00:00Z"}',
        '{"event":"x","timestamp":"0001-01-01T00:00:00Z","sentAt":"9999-12-31T00:00:00Z"}',
    ],
)
def test_what_no_backend_can_store_is_refused_with_a_4xx(client: TestClient, body: str) -> None:
    status, answer = post_raw(client, body)
    assert 400 <= status < 500
    assert isinstance(answer["error"], dict)
    assert local_queue().depth() == (0, 0)  # nothing queued


def test_what_is_accepted_is_stored(client: TestClient) -> None:
    body = {
        "event": "曲を再生",
        "properties": {"emoji": "💜", "deep": json.loads("[" * 30 + "]" * 30), "n": 10**37},
        "context": {"locale": "ja-JP"},
    }
    response = client.post("/api/v1/analytics/track", json=body, headers=auth_header("ann"))
    assert response.status_code == 202
    assert drain_once(local_queue(), event_store(), 10) == 1
    (stored,) = event_store().list_events("ann", 10, None).events
    assert stored.event == "曲を再生"
    assert stored.properties["emoji"] == "💜"
    assert local_queue().depth() == (0, 0)


@pytest.mark.parametrize(
    "query",
    [
        {"key": "errors.not_found", "param.count": "1"},
        {"key": "errors.not_found", "params": "[" * 2000 + "]" * 2000},
        {"key": "errors.not_found", "params": '{"a":' * 100 + "1" + "}" * 100},
    ],
)
def test_i18n_params_that_used_to_crash_are_4xx(client: TestClient, query: dict[str, str]) -> None:
    response = client.get("/api/v1/i18n/translate", params=query)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_params"


def test_a_500_closes_the_connection_cleanly(client: TestClient) -> None:
    response = client.get("/test-only/boom")
    assert response.status_code == 500
    assert response.headers["Connection"] == "close"
    assert response.json()["error"]["code"] == "internal_error"


def test_401_messages_name_the_problem_not_the_library(client: TestClient) -> None:
    response = client.get(
        "/api/v1/analytics/user/ann",
        headers={"Authorization": "Bearer not.a.jwt", "Accept-Language": "de"},
    )
    assert response.status_code == 401
    message = response.json()["error"]["message"]
    assert "kein wohlgeformtes JWT" in message
    assert "Invalid header padding" not in message
    assert "Not enough segments" not in message


def test_pii_is_filtered_before_the_event_is_queued(client: TestClient) -> None:
    body = {
        "event": "signup",
        "properties": {"password": "hunter2", "email": "ann@example.com", "plan": "pro"},
    }
    response = client.post("/api/v1/analytics/track", json=body, headers=auth_header("ann"))
    assert response.status_code == 202
    drain_once(local_queue(), event_store(), 10)
    (stored,) = event_store().list_events("ann", 10, None).events
    assert "password" not in stored.properties
    assert stored.properties["plan"] == "pro"
    assert str(stored.properties["email"]).startswith("sha256:")
