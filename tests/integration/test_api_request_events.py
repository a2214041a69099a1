"""Automatic server-side events (TRACK_API_REQUESTS): a signed-in caller's API requests become
`api_request` events, error responses `api_error` events, through the durable queue; never
for the ingest routes, never when off (the default), sampled by the rate."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from mysoulmate.runtime.backends import local_queue, reset_backends

from tests.support.helpers import auth_header

MakeClient = Callable[..., TestClient]


def queued_events() -> list[dict[str, object]]:
    bodies = [json.loads(m.body) for m in local_queue().receive(100, visibility_timeout=0)]
    return [b for b in bodies if b["event"] in ("api_request", "api_error")]


def turn_on(monkeypatch: pytest.MonkeyPatch, rate: str = "1") -> None:
    monkeypatch.setenv("TRACK_API_REQUESTS", "true")
    monkeypatch.setenv("TRACK_API_REQUESTS_SAMPLE_RATE", rate)
    reset_backends()


def test_requests_and_errors_become_events_of_their_caller(
    monkeypatch: pytest.MonkeyPatch, make_client: MakeClient
) -> None:
    turn_on(monkeypatch)
    with make_client() as client:
        ok = client.get("/api/v1/analytics/user/ann", headers=auth_header("ann"))
        refused = client.get(
            "/api/v1/analytics/dashboard", headers={**auth_header("ann"), "Accept-Language": "fr"}
        )
    assert (ok.status_code, refused.status_code) == (200, 403)
    request, error = queued_events()
    assert request["event"] == "api_request"
    assert request["userId"] == "ann"
    assert request["platform"] == "server"
    assert request["properties"]["route"] == "/api/v1/analytics/user/{userId}"  # type: ignore[index]
    assert request["properties"]["status"] == 200  # type: ignore[index]
    assert request["requestId"] == ok.headers["x-request-id"]
    assert error["event"] == "api_error"
    assert error["properties"]["code"] == "admin_required"  # type: ignore[index]
    assert error["properties"]["locale"] == "fr"  # type: ignore[index]


def test_ingest_routes_anonymous_callers_and_the_default_are_not_tracked(
    monkeypatch: pytest.MonkeyPatch, make_client: MakeClient
) -> None:
    with make_client() as client:  # off by default
        client.get("/api/v1/analytics/user/ann", headers=auth_header("ann"))
    assert queued_events() == []
    turn_on(monkeypatch)
    with make_client() as client:
        client.post("/api/v1/analytics/track", json={"event": "x"}, headers=auth_header("ann"))
        client.get("/api/v1/i18n/locales")  # nobody signed in
        client.get("/health")
    events = [json.loads(m.body) for m in local_queue().receive(100, visibility_timeout=0)]
    assert [e["event"] for e in events] == ["x"]  # only the tracked event itself


def test_the_sample_rate_applies(monkeypatch: pytest.MonkeyPatch, make_client: MakeClient) -> None:
    turn_on(monkeypatch, rate="0")
    with make_client() as client:
        for _ in range(20):
            client.get("/api/v1/analytics/user/ann", headers=auth_header("ann"))
    assert queued_events() == []
