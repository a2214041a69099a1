"""The read endpoints over HTTP: who may see what, what bad input gets, what GDPR does."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from mysoulmate.analytics.models import QueuedMessage
from mysoulmate.runtime.backends import event_store

from tests.support.helpers import auth_header

BASE = "/api/v1/analytics"
TODAY = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)


def admin() -> dict[str, str]:
    return auth_header("root", "admin")


def message(user: str, event: str, at: datetime, **properties: Any) -> QueuedMessage:
    return QueuedMessage(
        type="track",
        messageId=f"{user}-{event}-{at.timestamp()}",
        userId=user,
        event=event,
        timestamp=at,
        receivedAt=at,
        platform="web",
        properties=properties,
    )


@pytest.fixture
def client(client: TestClient) -> TestClient:
    """The shared client, over a store holding a few days of events."""
    event_store().insert_events(
        [
            message("alice", "signup", TODAY - timedelta(days=2)),
            message("alice", "companion_created", TODAY - timedelta(days=2, hours=-1)),
            message("alice", "purchase", TODAY - timedelta(days=1), revenue=4.5),
            message("bob", "signup", TODAY - timedelta(days=1)),
        ]
    )
    return client


def error_code(response: Any) -> str:
    body = response.json()
    assert set(body["error"]) == {"code", "message", "details", "requestId"}
    assert body["error"]["message"]
    return str(body["error"]["code"])


@pytest.mark.parametrize(
    "path",
    [
        "/dashboard",
        "/funnel?steps=signup,purchase",
        "/cohorts",
        "/audit",
    ],
)
def test_admin_reports_are_403_for_users_and_servers(client: TestClient, path: str) -> None:
    for headers in (auth_header("alice"), auth_header("svc", "server")):
        response = client.get(BASE + path, headers=headers)
        assert response.status_code == 403
        assert error_code(response) == "admin_required"
    assert client.get(BASE + path).status_code == 401
    assert client.get(BASE + path, headers=admin()).status_code == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/user/bob"),
        ("GET", "/user/bob/export"),
        ("DELETE", "/user/bob"),
    ],
)
def test_a_user_gets_403_on_another_users_data(client: TestClient, method: str, path: str) -> None:
    response = client.request(method, BASE + path, headers=auth_header("alice"))
    assert response.status_code == 403
    assert error_code(response) == "forbidden_other_user"


def test_server_tokens_may_read_but_not_export_or_erase(client: TestClient) -> None:
    server = auth_header("svc", "server")
    assert client.get(f"{BASE}/user/bob", headers=server).status_code == 200
    assert client.get(f"{BASE}/user/bob/export", headers=server).status_code == 403
    assert client.delete(f"{BASE}/user/bob", headers=server).status_code == 403


def test_dashboard_over_http(client: TestClient) -> None:
    response = client.get(f"{BASE}/dashboard", headers=admin())
    body = response.json()
    assert response.status_code == 200
    # The default range ends today: the day of the request, which a run crossing midnight
    # (UTC) after TODAY was taken makes the next day; the events stay inside either range.
    to = date.fromisoformat(body["to"])
    assert to in {TODAY.date(), datetime.now(UTC).date()}
    assert body["from"] == (to - timedelta(days=29)).isoformat()
    assert len(body["eventsByDay"]) == 30
    assert (body["totalEvents"], body["activeUsers"]) == (4, 2)
    assert body["revenue"]["totals"] == [{"currency": "USD", "amount": 4.5}]
    assert [s["users"] for s in body["funnel"]["funnel"]] == [2, 1, 0, 0]


def test_funnel_over_http(client: TestClient) -> None:
    response = client.get(
        f"{BASE}/funnel",
        params={"steps": "signup,companion_created,purchase", "window": "2d", "order": "any"},
        headers=admin(),
    )
    body = response.json()
    assert response.status_code == 200
    assert body["order"] == "any"
    assert body["windowSeconds"] == 2 * 86400
    assert [s["users"] for s in body["funnel"]] == [2, 1, 1]
    assert body["funnel"][1]["conversionFromStart"] == 0.5


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("/dashboard?from=2026-02-01&to=2026-01-01", "invalid_range"),
        ("/dashboard?from=2020-01-01&to=2025-01-01", "range_too_long"),
        ("/dashboard?from=yesterday", "validation_error"),
        ("/dashboard?limit=101", "validation_error"),
        ("/funnel?steps=signup", "invalid_steps"),
        ("/funnel?steps=" + ",".join(f"s{i}" for i in range(11)), "invalid_steps"),
        ("/funnel?steps=a,,b", "invalid_steps"),
        ("/funnel", "validation_error"),
        ("/funnel?steps=a,b&order=sideways", "validation_error"),
        ("/funnel?steps=a,b&window=7x", "invalid_window"),
        ("/funnel?steps=a,b&window=91d", "invalid_window"),
        ("/funnel?steps=a,b&window=0d", "invalid_window"),
        ("/funnel?steps=a,b&from=2026-03-01&to=2026-02-01", "invalid_range"),
        ("/cohorts?period=month", "validation_error"),
        ("/cohorts?periods=0", "validation_error"),
        ("/cohorts?from=2019-01-01&to=2026-01-01", "range_too_long"),
        ("/user/alice/export?format=xml", "validation_error"),
        ("/user/alice?cursor=eyJ0cyI6IjEifQ", "invalid_cursor"),
        ("/user/alice?cursor=%%%garbage", "invalid_cursor"),
        ("/user/alice?from=2026-02-01&to=2026-01-01", "invalid_range"),
        ("/audit?cursor=bm9wZQ", "invalid_cursor"),
    ],
)
def test_bad_input_is_a_4xx_with_the_envelope(client: TestClient, path: str, code: str) -> None:
    response = client.get(BASE + path, headers=admin())
    assert 400 <= response.status_code < 500, response.text
    assert error_code(response) == code


def test_a_tampered_cursor_is_refused(client: TestClient) -> None:
    event_store().insert_events(
        [message("carol", "tap", TODAY - timedelta(minutes=i)) for i in range(5)]
    )
    first = client.get(f"{BASE}/user/carol?limit=2", headers=admin()).json()
    cursor = first["nextCursor"]
    assert cursor
    assert (
        client.get(f"{BASE}/user/carol?limit=2&cursor={cursor}", headers=admin()).status_code == 200
    )
    tampered = cursor[:-3] + ("A" if cursor[-3] != "A" else "B") + cursor[-2:]
    response = client.get(f"{BASE}/user/carol?limit=2&cursor={tampered}", headers=admin())
    assert response.status_code == 422
    assert error_code(response) == "invalid_cursor"


def test_user_reads_their_own_summary(client: TestClient) -> None:
    body = client.get(f"{BASE}/user/alice", headers=auth_header("alice")).json()
    assert body["eventCounts"] == {"companion_created": 1, "purchase": 1, "signup": 1}
    assert body["sessions"] == 3  # 12:00 and 13:00 are over 30 min apart; then a day later
    assert body["profile"]["firstSeen"].startswith((TODAY - timedelta(days=2)).date().isoformat())


def test_export_json_and_csv_are_downloads_recorded_in_the_audit_log(client: TestClient) -> None:
    response = client.get(f"{BASE}/user/alice/export", headers=auth_header("alice"))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert "attachment" in response.headers["content-disposition"]
    assert len(json.loads(response.text)["events"]) == 3
    as_csv = client.get(f"{BASE}/user/alice/export?format=csv", headers=admin())
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert sorted(r["event"] for r in rows) == ["companion_created", "purchase", "signup"]
    audit = client.get(f"{BASE}/audit?subject=alice", headers=admin()).json()["entries"]
    assert [(e["actor"], e["action"], e["details"]) for e in audit] == [
        ("root", "export", {"format": "csv"}),
        ("alice", "export", {"format": "json"}),
    ]


def test_after_deletion_the_user_is_gone_from_every_query_and_export(client: TestClient) -> None:
    response = client.delete(f"{BASE}/user/alice", headers=auth_header("alice"))
    assert response.status_code == 200
    body = response.json()
    assert (body["eventsDeleted"], body["profileDeleted"], body["erased"]) == (3, False, True)

    summary = client.get(f"{BASE}/user/alice", headers=admin()).json()
    assert (summary["events"], summary["eventCounts"], summary["sessions"]) == ([], {}, 0)
    exported = json.loads(client.get(f"{BASE}/user/alice/export", headers=admin()).text)
    assert exported["events"] == []
    dashboard = client.get(f"{BASE}/dashboard", headers=admin()).json()
    assert (dashboard["totalEvents"], dashboard["activeUsers"]) == (4, 1)
    assert dashboard["funnel"]["usersEntered"] == 1
    funnel = client.get(f"{BASE}/funnel?steps=signup,purchase", headers=admin()).json()
    assert funnel["usersEntered"] == 1
    audit = client.get(f"{BASE}/audit", headers=admin()).json()["entries"]
    assert [(e["actor"], e["action"], e["subject"]) for e in audit] == [
        ("root", "export", "alice"),
        ("alice", "delete", "alice"),
    ]
    assert audit[1]["details"] == {"events": 3, "profile": False}
    assert date.fromisoformat(audit[1]["at"][:10]) == datetime.now(UTC).date()
