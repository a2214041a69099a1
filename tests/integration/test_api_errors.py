"""Bad input never yields a 500: each mistake gets its 4xx and an envelope naming it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from fastapi.testclient import TestClient

from tests.support.helpers import TEST_SECRET, auth_header

TRACK = "/api/v1/analytics/track"


def envelope(response: Any) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"code", "message", "details", "requestId"}
    assert error["message"]
    assert error["requestId"] == response.headers["x-request-id"]
    return dict(error)


def forged(claims: dict[str, Any], secret: str = TEST_SECRET) -> str:
    base = {
        "sub": "alice",
        "iss": "mysoulmate-local",
        "aud": "mysoulmate",
        "exp": datetime.now(UTC) + timedelta(hours=1),
    }
    return jwt.encode({**base, **claims}, secret, algorithm="HS256")


@pytest.mark.parametrize(
    ("body", "field", "error_type"),
    [
        ({}, "event", "missing"),
        ({"event": 42}, "event", "string_type"),
        ({"event": "x", "properties": "nope"}, "properties", "dict_type"),
        ({"event": "x", "properties": {"blob": "a" * 40 * 1024}}, "properties", "too_large"),
        (
            {"event": "x", "properties": {f"k{i}": i for i in range(300)}},
            "properties",
            "too_many_keys",
        ),
        ({"event": "x", "timestamp": "not a time"}, "timestamp", "iso8601_required"),
        ({"event": "x", "messageId": "m" * 101}, "messageId", "string_too_long"),
    ],
)
def test_invalid_fields_get_422_naming_the_field(
    client: TestClient, body: dict[str, Any], field: str, error_type: str | None
) -> None:
    response = client.post(TRACK, json=body, headers=auth_header("alice"))
    assert response.status_code == 422
    error = envelope(response)
    assert error["code"] == "validation_error"
    assert field in error["message"]
    fields = {d["field"]: d for d in error["details"]}
    assert field in fields
    if error_type:
        assert fields[field]["type"] == error_type


def test_oversized_properties_say_how_big(client: TestClient) -> None:
    body = {"event": "x", "properties": {f"k{i}": i for i in range(300)}}
    error = envelope(client.post(TRACK, json=body, headers=auth_header("alice")))
    detail = error["details"][0]
    assert detail["constraint"] == {"max_keys": 255, "actual": 300}
    assert "255" in detail["message"]
    assert "300" in detail["message"]


def test_invalid_json_is_400(client: TestClient) -> None:
    headers = {**auth_header("alice"), "content-type": "application/json"}
    response = client.post(TRACK, content=b'{"event": ', headers=headers)
    assert response.status_code == 400
    assert envelope(response)["code"] == "invalid_json"


def test_non_object_body_is_422(client: TestClient) -> None:
    response = client.post(TRACK, json=["event"], headers=auth_header("alice"))
    assert response.status_code == 422
    assert envelope(response)["code"] == "validation_error"


def test_timestamp_two_hours_ahead_is_422(client: TestClient) -> None:
    ts = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    response = client.post(TRACK, json={"event": "x", "timestamp": ts}, headers=auth_header("a"))
    assert response.status_code == 422
    error = envelope(response)
    assert error["code"] == "timestamp_in_future"
    assert error["details"][0]["field"] == "timestamp"


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "unauthorized"),
        ({"Authorization": "Basic YWxpY2U6cHc="}, "unauthorized"),
        ({"Authorization": "Bearer not.a.jwt"}, "invalid_token"),
        ({"Authorization": "Bearer " + forged({}, secret="x" * 40)}, "invalid_token"),
        ({"Authorization": "Bearer " + forged({"aud": "someone-else"})}, "invalid_token"),
        ({"Authorization": "Bearer " + forged({"iss": "evil"})}, "invalid_token"),
        ({"Authorization": "Bearer " + forged({"sub": ""})}, "invalid_token"),
        (
            {"Authorization": "Bearer " + forged({"exp": datetime.now(UTC) - timedelta(hours=1)})},
            "token_expired",
        ),
    ],
)
def test_bad_tokens_get_401_with_a_challenge(
    client: TestClient, headers: dict[str, str], code: str
) -> None:
    response = client.post(TRACK, json={"event": "x"}, headers=headers)
    assert response.status_code == 401
    assert envelope(response)["code"] == code
    assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize("subject", ["a\u0001b", "x" * 256, "tab\there"])
@pytest.mark.parametrize(
    ("path", "body"),
    [
        (TRACK, {"event": "x"}),
        ("/api/v1/analytics/identify", {"traits": {"plan": "pro"}}),
        (
            "/api/v1/perf",
            {
                "appVersion": "2.4.0",
                "platform": "ios",
                "measurements": [{"metric": "render", "name": "ChatScreen", "value": 120.0}],
            },
        ),
    ],
)
def test_a_token_whose_subject_cannot_be_a_user_id_gets_401_not_500(
    client: TestClient, subject: str, path: str, body: dict[str, Any]
) -> None:
    # The issuer's rules for `sub` are not ours: such a caller can store nothing, and is
    # told why in its language (a validation error of the queued message used to be a 500).
    headers = {"Authorization": "Bearer " + forged({"sub": subject}), "Accept-Language": "de"}
    response = client.post(path, json=body, headers=headers)
    assert response.status_code == 401
    error = envelope(response)
    assert error["code"] == "invalid_token"
    assert "Benutzer-ID" in error["message"]
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_alg_none_tokens_are_refused(client: TestClient) -> None:
    token = jwt.encode(
        {"sub": "alice", "aud": "mysoulmate", "iss": "mysoulmate-local", "exp": 9999999999},
        key=None,
        algorithm="none",
    )
    response = client.post(TRACK, json={"event": "x"}, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401


def test_tracking_for_another_user_needs_admin(client: TestClient) -> None:
    body = {"event": "x", "userId": "bob"}
    refused = client.post(TRACK, json=body, headers=auth_header("alice"))
    assert refused.status_code == 403
    assert envelope(refused)["code"] == "user_id_mismatch"
    assert client.post(TRACK, json=body, headers=auth_header("ops", "admin")).status_code == 202
    assert client.post(TRACK, json=body, headers=auth_header("svc", "server")).status_code == 202


def test_reading_another_users_data_needs_admin(client: TestClient) -> None:
    refused = client.get("/api/v1/analytics/user/bob", headers=auth_header("alice"))
    assert refused.status_code == 403
    assert envelope(refused)["code"] == "forbidden_other_user"
    allowed = client.get("/api/v1/analytics/user/bob", headers=auth_header("ops", "admin"))
    assert allowed.status_code == 200
    assert allowed.json()["events"] == []


@pytest.mark.parametrize("query", ["limit=0", "limit=201", "limit=abc", "cursor=%%%", "cursor=e30"])
def test_bad_paging_parameters_are_4xx(client: TestClient, query: str) -> None:
    response = client.get(f"/api/v1/analytics/user/alice?{query}", headers=auth_header("alice"))
    assert response.status_code == 422
    assert envelope(response)["code"] in {"validation_error", "invalid_cursor"}


def test_unknown_route_and_method_use_the_envelope(client: TestClient) -> None:
    assert envelope(client.get("/nope"))["code"] == "not_found"
    response = client.get(TRACK, headers=auth_header("alice"))
    assert response.status_code == 405
    assert envelope(response)["code"] == "method_not_allowed"


def test_request_id_from_client_is_echoed_when_well_formed(client: TestClient) -> None:
    ok = client.get("/health", headers={"X-Request-Id": "abc-123"})
    assert ok.headers["x-request-id"] == "abc-123"
    bad = client.get("/health", headers={"X-Request-Id": "<script>"})
    assert bad.headers["x-request-id"] != "<script>"


def test_secure_headers_are_on_every_response(client: TestClient) -> None:
    for response in (client.get("/health"), client.get("/nope")):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert "default-src 'none'" in response.headers["content-security-policy"]
        assert response.headers["cache-control"] == "no-store"


def test_accepted_event_answers_202_with_its_message_id(client: TestClient) -> None:
    response = client.post(
        TRACK, json={"event": "signup", "messageId": "m-1"}, headers=auth_header("alice")
    )
    assert response.status_code == 202
    assert response.json() == {"messageId": "m-1", "status": "queued"}


def test_cors_preflight_allows_configured_origins(
    monkeypatch: pytest.MonkeyPatch, make_client: Callable[..., TestClient]
) -> None:
    from mysoulmate.runtime.backends import reset_backends

    monkeypatch.setenv("CORS_ALLOW_ORIGINS", "https://app.mysoulmate.example")
    reset_backends()
    with make_client() as cors_client:
        headers = {
            "Origin": "https://app.mysoulmate.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        }
        allowed = cors_client.options(TRACK, headers=headers)
        assert allowed.headers["access-control-allow-origin"] == "https://app.mysoulmate.example"
        denied = cors_client.options(TRACK, headers={**headers, "Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in denied.headers


def test_token_from_cli_is_accepted(client: TestClient, capsys: pytest.CaptureFixture[str]) -> None:
    from mysoulmate.runtime.cli import main

    assert main(["token", "--user", "carol", "--admin", "--ttl", "5m"]) == 0
    token = capsys.readouterr().out.strip()
    claims = jwt.decode(token, TEST_SECRET, algorithms=["HS256"], audience="mysoulmate")
    assert claims["sub"] == "carol"
    assert "admin" in claims["roles"]
    assert claims["exp"] - claims["iat"] == 300
    response = client.get(
        "/api/v1/analytics/user/dave", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 200


def test_oversized_body_is_413_even_without_content_length(client: TestClient) -> None:
    big = b'{"event": "x", "properties": {"a": "' + b"a" * (2 * 1024 * 1024) + b'"}}'
    headers = {**auth_header("alice"), "content-type": "application/json"}
    response = client.post(TRACK, content=big, headers=headers)
    assert response.status_code == 413
    assert envelope(response)["code"] == "payload_too_large"

    def chunks() -> Iterator[bytes]:
        for _ in range(40):
            yield b" " * 64 * 1024

    streamed = client.post(TRACK, content=chunks(), headers=headers)
    assert streamed.status_code == 413
    assert envelope(streamed)["code"] == "payload_too_large"


def test_readiness_names_the_failing_dependency(client: TestClient) -> None:
    from mysoulmate.analytics.ports import StorageUnavailableError
    from mysoulmate.api.dependencies import get_store

    class DownStore:
        def ping(self) -> None:
            raise StorageUnavailableError("connection refused")

    client.app.dependency_overrides[get_store] = DownStore  # type: ignore[attr-defined]
    response = client.get("/health/ready")
    assert response.status_code == 503
    error = envelope(response)
    assert error["code"] == "service_unavailable"
    assert "storage" in error["message"]
    assert error["details"] == {"failing": ["storage"]}


def test_unexpected_failure_is_500_with_envelope_and_request_id(client: TestClient) -> None:
    from mysoulmate.api.dependencies import get_queue

    class BrokenQueue:
        def send(self, body: str) -> None:
            raise ZeroDivisionError("bug")

    client.app.dependency_overrides[get_queue] = BrokenQueue  # type: ignore[attr-defined]
    response = client.post(
        TRACK, json={"event": "x"}, headers={**auth_header("alice"), "X-Request-Id": "req-500"}
    )
    assert response.status_code == 500
    error = envelope(response)
    assert error["code"] == "internal_error"
    assert error["requestId"] == "req-500"
    assert "bug" not in response.text


def test_queue_outage_is_503_and_the_event_is_not_accepted(client: TestClient) -> None:
    from mysoulmate.analytics.ports import QueueError
    from mysoulmate.api.dependencies import get_queue

    class DownQueue:
        def send(self, body: str) -> None:
            raise QueueError("disk full")

    client.app.dependency_overrides[get_queue] = DownQueue  # type: ignore[attr-defined]
    response = client.post(TRACK, json={"event": "x"}, headers=auth_header("alice"))
    assert response.status_code == 503
    assert envelope(response)["code"] == "queue_unavailable"
