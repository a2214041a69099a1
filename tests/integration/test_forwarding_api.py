"""Forwarding end to end on the laptop shape: events sent to `/v1/batch` are stored, then
reach Mixpanel (through the official library) and GA4 (local capture servers) once each; an
outage of one provider delays nothing in storage or in the other provider, and loses
nothing; an erasure stops forwarding and asks Mixpanel to delete the person, audited."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

import pytest
from fastapi.testclient import TestClient
from mysoulmate.analytics import write_keys
from mysoulmate.runtime.backends import source_store

from tests.support.capture_server import CapturedRequest, CaptureServer, Reply
from tests.support.helpers import auth_header

OK = b'{"status": 1, "error": null}'
# A deadline for deliveries that must happen, not a performance bound.
WITHIN = 30.0


@pytest.fixture
def mixpanel() -> Iterator[CaptureServer]:
    with CaptureServer(body=OK) as server:
        yield server


@pytest.fixture
def ga4() -> Iterator[CaptureServer]:
    with CaptureServer(body=b"") as server:
        yield server


@pytest.fixture
def client(
    make_client: Callable[..., TestClient],
    mixpanel: CaptureServer,
    ga4: CaptureServer,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[TestClient]:
    monkeypatch.setenv("GA_MEASUREMENT_ID", "G-TEST123")
    monkeypatch.setenv("GA_API_SECRET", "ga-secret")
    monkeypatch.setenv("GA_ENDPOINT", f"{ga4.url}/mp/collect")
    monkeypatch.setenv("MIXPANEL_TOKEN", "project-token")
    monkeypatch.setenv("MIXPANEL_API_HOST", mixpanel.url)
    monkeypatch.setenv("MIXPANEL_GDPR_TOKEN", "gdpr-token")
    monkeypatch.setenv("WORKER_ENABLED", "true")
    monkeypatch.setenv("WORKER_POLL_INTERVAL_SECONDS", "0.05")
    with make_client(raise_server_exceptions=False) as test_client:
        yield test_client


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


@pytest.fixture
def key(client: TestClient) -> str:
    _, created = write_keys.create_source(source_store(), "app", "server", datetime.now(UTC))
    return created


def tracked(server: CaptureServer) -> list[dict[str, Any]]:
    """Every event record posted to /track so far."""
    records: list[dict[str, Any]] = []
    for request in server.received(lambda r: r.path == "/track"):
        records += json.loads(parse_qs(request.text)["data"][0])
    return records


def wait_for_events(server: CaptureServer, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + WITHIN
    while len(tracked(server)) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return tracked(server)


def batch(user: str, *names: str, start: datetime, **extra: Any) -> dict[str, Any]:
    return {
        "batch": [
            {
                "type": "track",
                "userId": user,
                "event": name,
                "messageId": f"{user}-{i}",
                "timestamp": (start + timedelta(minutes=i)).isoformat(),
                **extra,
            }
            for i, name in enumerate(names)
        ]
    }


def stored(client: TestClient, user: str) -> int:
    answer = client.get(f"/api/v1/analytics/user/{user}", headers=auth_header("root", "admin"))
    return len(answer.json()["events"])


def test_stored_events_reach_mixpanel_once_each(
    client: TestClient, key: str, mixpanel: CaptureServer
) -> None:
    start = datetime.now(UTC) - timedelta(hours=1)
    body = batch("ann", "signup", "purchase", start=start)
    assert client.post("/v1/batch", json=body, headers=basic(key)).status_code == 200
    # The SDK retries the same batch: stored once, handed on again, sent once.
    assert client.post("/v1/batch", json=body, headers=basic(key)).status_code == 200
    events = wait_for_events(mixpanel, 2)
    time.sleep(0.5)  # room for a wrong second delivery to show up
    events = tracked(mixpanel)
    assert sorted(e["properties"]["$insert_id"] for e in events) == ["ann-0", "ann-1"]
    assert {e["properties"]["distinct_id"] for e in events} == {"ann"}
    assert {e["properties"]["token"] for e in events} == {"project-token"}


def test_an_outage_delays_nothing_in_storage_and_loses_nothing(
    client: TestClient, key: str, mixpanel: CaptureServer
) -> None:
    mixpanel.status = 503
    start = datetime.now(UTC) - timedelta(hours=1)
    names = [f"step_{i}" for i in range(20)]
    answer = client.post("/v1/batch", json=batch("bob", *names, start=start), headers=basic(key))
    assert answer.status_code == 200
    deadline = time.monotonic() + WITHIN
    while stored(client, "bob") < 20 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert stored(client, "bob") == 20  # stored while the provider is down
    mixpanel.wait_for(lambda r: r.path == "/track")  # and it was being tried
    assert tracked(mixpanel)  # the refused attempts were recorded...
    mixpanel.clear()
    mixpanel.status = 200
    events = wait_for_events(mixpanel, 20)  # ...and after recovery, everything arrives
    assert sorted(e["properties"]["$insert_id"] for e in events) == sorted(
        f"bob-{i}" for i in range(20)
    )


def test_erasure_stops_forwarding_and_asks_mixpanel_to_delete(
    client: TestClient, key: str, mixpanel: CaptureServer
) -> None:
    mixpanel.status = 503  # hold the events in the forward queue
    start = datetime.now(UTC) - timedelta(hours=1)
    client.post("/v1/batch", json=batch("eve", "signup", start=start), headers=basic(key))
    deadline = time.monotonic() + WITHIN
    while stored(client, "eve") < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    mixpanel.wait_for(lambda r: r.path == "/track")
    # The deletion request is answered; the forwarder's retries still meet an outage.
    deleted = b'{"status": "ok", "results": {"task_id": "t-42"}}'
    mixpanel.routes["/api/app/data-deletions/"] = Reply(200, body=deleted)
    erased = client.delete("/api/v1/analytics/user/eve", headers=auth_header("eve"))
    assert erased.status_code == 200
    mixpanel.status = 200
    (deletion,) = mixpanel.wait_for(lambda r: "data-deletions" in r.path)
    assert_deletion(deletion)
    audit = client.get(
        "/api/v1/analytics/audit?subject=eve", headers=auth_header("root", "admin")
    ).json()
    assert audit["entries"][0]["details"]["mixpanel"] == {
        "deletion": "requested",
        "taskId": "t-42",
        "ids": 1,
    }
    mixpanel.clear()
    # A new user's event goes through: by then eve's waiting event would have gone too.
    client.post("/v1/batch", json=batch("max", "signup", start=start), headers=basic(key))
    events = wait_for_events(mixpanel, 1)
    assert [e["properties"]["distinct_id"] for e in events] == ["max"]


def assert_deletion(request: CapturedRequest) -> None:
    assert request.method == "POST"
    assert request.query["token"] == ["project-token"]
    assert request.headers["authorization"] == "Bearer gdpr-token"
    assert request.json()["distinct_ids"] == ["eve"]


def ga4_events(server: CaptureServer) -> list[dict[str, Any]]:
    bodies = [r.json() for r in server.received(lambda r: r.path == "/mp/collect")]
    return [event for body in bodies for event in body["events"]]


def test_one_provider_down_holds_back_only_itself(
    client: TestClient, key: str, mixpanel: CaptureServer, ga4: CaptureServer
) -> None:
    mixpanel.status = 503
    start = datetime.now(UTC) - timedelta(hours=1)
    names = [f"Step {i}" for i in range(30)]
    client.post("/v1/batch", json=batch("dan", *names, start=start), headers=basic(key))
    deadline = time.monotonic() + WITHIN
    while len(ga4_events(ga4)) < 30 and time.monotonic() < deadline:
        time.sleep(0.05)
    events = ga4_events(ga4)
    assert sorted(e["name"] for e in events) == sorted(f"step_{i}" for i in range(30))
    requests = ga4.received(lambda r: r.path == "/mp/collect")
    assert len(requests) == 2  # one person, 25 events per request at most
    assert all(r.query["measurement_id"] == ["G-TEST123"] for r in requests)
    assert {r.json()["user_id"] for r in requests} == {"dan"}
    assert all(e["params"]["engagement_time_msec"] for e in events)
    assert len({e["params"]["session_id"] for e in events}) == 1
    mixpanel.clear()
    mixpanel.status = 200
    assert len(wait_for_events(mixpanel, 30)) == 30
    assert len(ga4_events(ga4)) == 30  # nothing sent twice to GA4 meanwhile


def forward_gauges(client: TestClient) -> dict[tuple[str, str], float]:
    from prometheus_client.parser import text_string_to_metric_families

    found = {}
    for family in text_string_to_metric_families(client.get("/metrics").text):
        if family.name.startswith("mysoulmate_forward_") and family.type == "gauge":
            for sample in family.samples:
                found[(sample.name, sample.labels["provider"])] = sample.value
    return found


def test_metrics_show_the_age_of_the_oldest_event_waiting_for_a_provider(
    client: TestClient, key: str, mixpanel: CaptureServer
) -> None:
    assert forward_gauges(client)[("mysoulmate_forward_oldest_age_seconds", "mixpanel")] == 0
    mixpanel.status = 503
    start = datetime.now(UTC) - timedelta(hours=1)
    assert (
        client.post("/v1/batch", json=batch("cy", "a", start=start), headers=basic(key)).status_code
        == 200
    )
    mixpanel.wait_for(lambda r: r.path == "/track")  # being tried, and failing
    time.sleep(1.1)
    gauges = forward_gauges(client)
    assert gauges[("mysoulmate_forward_queue_messages", "mixpanel")] >= 1
    assert gauges[("mysoulmate_forward_oldest_age_seconds", "mixpanel")] >= 1
    assert gauges[("mysoulmate_forward_queue_dead_letters", "mixpanel")] == 0
    mixpanel.status = 200
    deadline = time.monotonic() + WITHIN
    while forward_gauges(client)[("mysoulmate_forward_queue_messages", "mixpanel")] and (
        time.monotonic() < deadline
    ):
        time.sleep(0.1)
    assert forward_gauges(client)[("mysoulmate_forward_oldest_age_seconds", "mixpanel")] == 0
