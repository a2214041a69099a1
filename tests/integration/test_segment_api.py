"""`/v1/*`: Segment's HTTP Tracking API on the laptop shape (SQLite + the local queue)."""

from __future__ import annotations

import base64
import gzip
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from mysoulmate.analytics import write_keys
from mysoulmate.runtime.backends import event_store, local_queue, source_store
from mysoulmate.runtime.worker import drain_once

from tests.support.helpers import auth_header


def _basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


@pytest.fixture
def client_key() -> str:
    _, key = write_keys.create_source(source_store(), "ios", "client", datetime.now(UTC))
    return key


@pytest.fixture
def server_key() -> str:
    _, key = write_keys.create_source(source_store(), "backend", "server", datetime.now(UTC))
    return key


def _stored(user_id: str) -> list[dict[str, Any]]:
    drain_once(local_queue(), event_store(), 100)
    page = event_store().list_events(user_id, 100, None)
    return [event.model_dump(mode="json") for event in page.events]


def _batch(*messages: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"batch": list(messages), **extra}


def test_every_message_type_is_queued_and_stored(client: TestClient, client_key: str) -> None:
    body = _batch(
        {"type": "page", "anonymousId": "a-1", "name": "Pricing", "properties": {"path": "/p"}},
        {"type": "screen", "userId": "u-1", "name": "Chat"},
        {"type": "track", "userId": "u-1", "event": "companion_created"},
        {"type": "identify", "userId": "u-1", "anonymousId": "a-1", "traits": {"plan": "pro"}},
        {"type": "group", "userId": "u-1", "groupId": "team-9", "traits": {"seats": 5}},
        {"type": "alias", "userId": "u-1", "previousId": "a-1"},
    )
    response = client.post("/v1/batch", json=body, headers=_basic(client_key))
    assert response.status_code == 200, response.text
    assert response.json() == {"success": True, "rejected": []}
    # The identify ties a-1 to u-1: the anonymous page view is now u-1's.
    user = _stored("u-1")
    assert sorted(e["type"] for e in user) == [
        "alias",
        "group",
        "identify",
        "page",
        "screen",
        "track",
    ]
    assert _stored("anon:a-1") == []
    screen = next(e for e in user if e["type"] == "screen")
    assert screen["event"] == "$screen:Chat"
    page = next(e for e in user if e["type"] == "page")
    assert (page["event"], page["properties"], page["anonymousId"]) == (
        "$page:Pricing",
        {"path": "/p"},
        "a-1",
    )
    profile = event_store().get_profile("u-1")
    assert profile is not None
    assert profile.traits == {"plan": "pro"}
    assert profile.groups == {"team-9": {"seats": 5}}


def test_single_message_routes_and_the_write_key_in_the_body(
    client: TestClient, client_key: str
) -> None:
    response = client.post(
        "/v1/track",
        json={"writeKey": client_key, "userId": "u-2", "event": "signup", "messageId": "m-1"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["success"] is True
    (event,) = _stored("u-2")
    assert (event["messageId"], event["event"]) == ("m-1", "signup")


@pytest.mark.parametrize(
    "headers",
    [{}, _basic("wk_unknown"), {"Authorization": "Basic !!notbase64"}],
    ids=["none", "unknown", "malformed"],
)
def test_a_missing_or_unknown_key_is_401(client: TestClient, headers: dict[str, str]) -> None:
    response = client.post(
        "/v1/track", json={"userId": "u", "event": "e"}, headers=headers | {"X-Locale": "de"}
    )
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["code"] == "invalid_write_key"
    assert "Schreibschlüssel" in error["message"] or "Write-Key" in error["message"]
    assert response.headers["WWW-Authenticate"].startswith("Basic")


def test_a_revoked_key_stops_working(client: TestClient) -> None:
    source, key = write_keys.create_source(source_store(), "web", "client", datetime.now(UTC))
    body = {"userId": "u", "event": "e"}
    assert client.post("/v1/track", json=body, headers=_basic(key)).status_code == 200
    admin = auth_header("root", "admin")
    assert client.delete(f"/api/v1/admin/sources/{source.id}", headers=admin).status_code == 200
    response = client.post("/v1/track", json=body, headers=_basic(key))
    assert response.status_code == 401


def test_a_batch_queues_the_valid_messages_and_lists_the_rejected(
    client: TestClient, client_key: str
) -> None:
    body = _batch(
        {"type": "track", "userId": "u-3", "event": "ok", "messageId": "good"},
        {"type": "track", "event": "nobody"},
        {"type": "track", "userId": "u-3"},
        {"type": "purchase", "userId": "u-3"},
        {"type": "track", "userId": "u-3", "event": "x", "properties": {"p": "x" * 40_000}},
        {"type": "track", "userId": "anon:sneaky", "event": "x"},
        {"type": "track", "userId": "u-3", "event": "$page:Home"},
    )
    response = client.post("/v1/batch", json=body, headers=_basic(client_key))
    assert response.status_code == 200, response.text
    rejected = response.json()["rejected"]
    assert [(r["index"], r["code"]) for r in rejected] == [
        (1, "no_user_anon_id"),
        (2, "validation_error"),
        (3, "unsupported_type"),
        (4, "message_too_large"),
        (5, "reserved_user_id"),
        (6, "reserved_event_name"),
    ]
    assert rejected[1]["details"][0]["field"] == "event"
    assert "userId" in rejected[0]["message"]
    assert [e["messageId"] for e in _stored("u-3")] == ["good"]


def test_a_single_invalid_message_is_a_400_in_the_error_envelope(
    client: TestClient, client_key: str
) -> None:
    response = client.post("/v1/identify", json={"traits": {}}, headers=_basic(client_key))
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "no_user_anon_id"


def test_gzip_bodies_are_accepted_and_their_expansion_capped(
    client: TestClient, client_key: str
) -> None:
    body = _batch({"type": "track", "userId": "u-4", "event": "zipped"})
    packed = gzip.compress(json.dumps(body).encode())
    headers = _basic(client_key) | {
        "Content-Encoding": "gzip",
        "Content-Type": "application/json",
    }
    response = client.post("/v1/batch", content=packed, headers=headers)
    assert response.status_code == 200, response.text
    assert [e["event"] for e in _stored("u-4")] == ["zipped"]
    # 600 KB of JSON compresses to under 1 KB: refused once decompressed past 500 KB.
    bomb = gzip.compress(json.dumps({"batch": [], "pad": " " * 600_000}).encode())
    assert len(bomb) < 5_000
    response = client.post("/v1/batch", content=bomb, headers=headers)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "payload_too_large"
    response = client.post("/v1/batch", content=b"\x1f\x8b broken", headers=headers)
    assert response.json()["error"]["code"] == "invalid_gzip"


@pytest.mark.parametrize(
    ("content", "code"),
    [
        (b"{not json", "invalid_json"),
        (b"[1, 2]", "invalid_batch"),
        (b'{"batch": 3}', "invalid_batch"),
        (b" " * 520_000 + b"{}", "payload_too_large"),
        (b" " * 1_100_000 + b"{}", "payload_too_large"),  # past the server-wide 1 MiB
    ],
    ids=["json", "array", "batch", "over-500kb", "over-1mib"],
)
def test_malformed_requests_are_400(
    client: TestClient, client_key: str, content: bytes, code: str
) -> None:
    response = client.post("/v1/batch", content=content, headers=_basic(client_key))
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code


def test_more_than_2500_messages_is_refused_whole(client: TestClient, client_key: str) -> None:
    messages = [{"type": "track", "userId": "u", "event": "e"}] * 2501
    response = client.post("/v1/batch", json=_batch(*messages), headers=_basic(client_key))
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "batch_too_large"
    assert local_queue().depth() == (0, 0)


def test_batch_sent_at_corrects_clock_skew_and_batch_context_is_merged(
    client: TestClient, client_key: str
) -> None:
    # The device's clock is a day ahead: its timestamps and sentAt both are.
    ahead = datetime.now(UTC) + timedelta(days=1)
    body = _batch(
        {
            "type": "track",
            "userId": "u-5",
            "event": "e",
            "timestamp": (ahead - timedelta(minutes=5)).isoformat(),
            "context": {"app": {"version": "2.0"}},
        },
        sentAt=ahead.isoformat(),
        context={"os": {"name": "iOS"}, "app": {"version": "1.0"}},
        integrations={"All": False},
    )
    assert client.post("/v1/batch", json=body, headers=_basic(client_key)).status_code == 200
    (event,) = _stored("u-5")
    happened = datetime.fromisoformat(event["timestamp"])
    assert abs(happened - (datetime.now(UTC) - timedelta(minutes=5))) < timedelta(seconds=30)
    assert event["context"] == {"os": {"name": "iOS"}, "app": {"version": "2.0"}}
    assert event["platform"] == "ios"


def test_only_server_keys_may_backfill(
    client: TestClient, client_key: str, server_key: str
) -> None:
    old = (datetime.now(UTC) - timedelta(days=90)).isoformat()
    message = {"userId": "u-6", "event": "late", "timestamp": old}
    response = client.post("/v1/track", json=message, headers=_basic(client_key))
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "timestamp_too_old"
    response = client.post("/v1/track", json=message, headers=_basic(server_key))
    assert response.status_code == 200
    assert [e["event"] for e in _stored("u-6")] == ["late"]


def test_a_batch_is_queued_in_few_bodies(client: TestClient, server_key: str) -> None:
    messages = [
        {"type": "track", "userId": f"u-{i % 10}", "event": "e", "properties": {"i": i}}
        for i in range(500)
    ]
    response = client.post("/v1/batch", json=_batch(*messages), headers=_basic(server_key))
    assert response.status_code == 200
    assert local_queue().depth() == (1, 0)  # 500 small messages: one queue body
    drain_once(local_queue(), event_store(), 10)
    assert len(event_store().list_events("u-3", 100, None).events) == 50


def test_admin_endpoints_create_list_and_revoke(client: TestClient) -> None:
    admin = auth_header("root", "admin")
    created = client.post(
        "/api/v1/admin/sources", json={"name": "android", "kind": "client"}, headers=admin
    )
    assert created.status_code == 201, created.text
    key = created.json()["writeKey"]
    assert key.startswith("wk_")
    listed = client.get("/api/v1/admin/sources", headers=admin).json()["sources"]
    assert [(s["name"], s["kind"]) for s in listed] == [("android", "client")]
    assert key not in json.dumps(listed)
    user = auth_header("alice")
    assert client.get("/api/v1/admin/sources", headers=user).status_code == 403
    missing = client.delete("/api/v1/admin/sources/nope", headers=admin)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "source_not_found"


def test_signed_in_clients_batch_as_themselves(client: TestClient) -> None:
    body = _batch(
        {"type": "track", "event": "mine"},
        {"type": "track", "event": "theirs", "userId": "bob"},
    )
    response = client.post("/api/v1/analytics/batch", json=body, headers=auth_header("alice"))
    assert response.status_code == 200, response.text
    assert [(r["index"], r["code"]) for r in response.json()["rejected"]] == [
        (1, "user_id_mismatch")
    ]
    assert [e["event"] for e in _stored("alice")] == ["mine"]


def test_analytics_js_short_paths_and_plain_text_bodies(
    client: TestClient, client_key: str
) -> None:
    # analytics.js posts to /v1/t, /v1/p, … with text/plain (no CORS preflight), key in body.
    message = {"writeKey": client_key, "anonymousId": "b-1", "name": "Home", "messageId": "p1"}
    response = client.post(
        "/v1/p", content=json.dumps(message), headers={"Content-Type": "text/plain"}
    )
    assert response.status_code == 200, response.text
    track = {"writeKey": client_key, "anonymousId": "b-1", "event": "cta", "messageId": "t1"}
    assert client.post("/v1/t", content=json.dumps(track)).status_code == 200
    assert [(e["type"], e["event"]) for e in _stored("anon:b-1")] == [
        ("track", "cta"),
        ("page", "$page:Home"),
    ]


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"sentAt": "yesterday"}, "sentAt"),
        ({"sentAt": None}, "sentAt"),
        ({"context": [1]}, "context"),
        ({"integrations": None}, "integrations"),
    ],
)
def test_broken_batch_level_fields_refuse_the_whole_batch(
    client: TestClient, client_key: str, extra: dict[str, Any], field: str
) -> None:
    body = _batch({"type": "track", "userId": "u", "event": "e"}, **extra)
    response = client.post("/v1/batch", json=body, headers=_basic(client_key))
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert error["details"][0]["field"] == field
    assert error["details"][0]["message"]
    assert local_queue().depth() == (0, 0)


def test_a_batch_of_only_invalid_messages_is_a_400_naming_each(
    client: TestClient, client_key: str
) -> None:
    body = _batch({"type": "track", "event": "nobody"}, {"type": "track", "userId": "u"})
    response = client.post(
        "/v1/batch", json=body, headers=_basic(client_key) | {"Accept-Language": "fr"}
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert [(d["field"], d["type"]) for d in error["details"]] == [
        ("batch[0]", "no_user_anon_id"),
        ("batch[1]", "validation_error"),
    ]
    assert error["details"][1]["details"][0]["field"] == "event"
    assert "batch[0]" in error["message"]
    assert response.headers["Content-Language"] == "fr"


@pytest.mark.parametrize("compressed", [True, False], ids=["gzip", "plain"])
def test_a_deeply_nested_body_is_refused_before_it_is_parsed(
    client: TestClient, client_key: str, compressed: bool
) -> None:
    deep = '{"batch": [' + '{"a":' * 5_000 + "1" + "}" * 5_000 + "]}"
    content = gzip.compress(deep.encode()) if compressed else deep.encode()
    headers = _basic(client_key) | ({"Content-Encoding": "gzip"} if compressed else {})
    response = client.post("/v1/batch", content=content, headers=headers)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "nesting_too_deep"


def test_sessions_reach_the_dashboard_and_the_users_analytics(
    client: TestClient, server_key: str
) -> None:
    yesterday = datetime.now(UTC) - timedelta(days=1)
    start = yesterday.replace(hour=9, minute=0, second=0, microsecond=0)

    def at(minutes: int) -> str:
        return (start + timedelta(minutes=minutes)).isoformat()

    body = _batch(
        {"type": "screen", "userId": "u-s", "name": "Home", "timestamp": at(0)},
        {"type": "track", "userId": "u-s", "event": "chat", "timestamp": at(12)},
        {"type": "track", "userId": "u-s", "event": "chat", "timestamp": at(90)},
        {
            "type": "track",
            "userId": "u-t",
            "event": "chat",
            "timestamp": at(5),
            "context": {"sessionId": 1767258000000},
        },
    )
    response = client.post("/v1/batch", json=body, headers=_basic(server_key))
    assert response.status_code == 200, response.text
    stored = _stored("u-s")
    assert len({e["sessionId"] for e in stored}) == 2
    assert [e["sessionId"] for e in _stored("u-t")] == ["1767258000000"]
    day = start.date().isoformat()
    dashboard = client.get(
        f"/api/v1/analytics/dashboard?from={day}&to={day}", headers=auth_header("root", "admin")
    ).json()
    # u-s: 9:00 to 9:12 and 10:30 alone; u-t: one event. 3 sessions, 12 min in all, 2 users.
    assert (dashboard["sessions"], dashboard["averageSessionSeconds"]) == (3, 240.0)
    assert dashboard["sessionsPerUser"] == 1.5
    mine = client.get("/api/v1/analytics/user/u-s", headers=auth_header("u-s")).json()
    assert [(s["events"], s["durationSeconds"]) for s in mine["sessionList"]] == [
        (1, 0.0),
        (2, 720.0),
    ]
