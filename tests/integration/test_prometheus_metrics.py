"""`GET /metrics` and `GET /api/v1/metrics` of the container/laptop shape: the exposition
parses with prometheus_client's own parser, and its figures move as requests and events
flow (the API through TestClient, the local worker storing what the API queued)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from mysoulmate.observability import signals
from mysoulmate.observability.prometheus import ActiveUsersCollector
from mysoulmate.queue.local import LocalQueue
from mysoulmate.runtime.backends import event_store, local_queue
from mysoulmate.runtime.worker import drain_once
from prometheus_client.parser import text_string_to_metric_families

from tests.support.helpers import auth_header

REPO_ROOT = Path(__file__).resolve().parents[2]
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client: TestClient) -> Samples:
    """Every sample of ``/metrics``, parsed by prometheus_client's parser."""
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


@pytest.fixture
def app(app: FastAPI) -> FastAPI:
    """The shared app with a route that fails, for the 500 counters."""

    @app.get("/test-only/boom/{item}")
    async def boom(item: str) -> None:
        raise LookupError(item)

    return app


def track(client: TestClient, user: str, **body: Any) -> None:
    body.setdefault("event", "Song Played")
    response = client.post("/api/v1/analytics/track", json=body, headers=auth_header(user))
    assert response.status_code == 202, response.text


def drain() -> None:
    while drain_once(local_queue(), event_store(), 100):
        pass


# -- HTTP ------------------------------------------------------------------------------------


def test_requests_are_counted_and_timed_by_route_template(client: TestClient) -> None:
    before = scrape(client)
    for user in ("alice", "bob", "carol"):
        response = client.get(f"/api/v1/analytics/user/{user}", headers=auth_header(user))
        assert response.status_code == 200, response.text
    after = scrape(client)

    labels = {"route": "/api/v1/analytics/user/{userId}", "method": "GET", "status": "200"}
    assert moved(before, after, "http_requests_total", **labels) == 3
    assert moved(before, after, "http_request_duration_seconds_count", **labels) == 3
    assert moved(before, after, "http_request_duration_seconds_bucket", le="+Inf", **labels) == 3
    assert moved(before, after, "http_request_duration_seconds_sum", **labels) > 0
    # The scrape before this one was itself a request.
    assert value(after, "http_requests_total", route="/metrics", method="GET", status="200") >= 1
    raw = {dict(key[1]).get("route") for key in after if key[0] == "http_requests_total"}
    assert not any(route and "alice" in route for route in raw)


def test_unmatched_paths_and_unknown_methods_get_fixed_labels(client: TestClient) -> None:
    before = scrape(client)
    for path in ("/no/such/thing", "/api/v1/nothing-here/42", "/wp-login.php"):
        assert client.get(path).status_code == 404
    assert client.request("BREW", "/health").status_code == 405
    after = scrape(client)

    assert moved(
        before, after, "http_requests_total", route="unmatched", method="GET", status="404"
    )
    assert moved(
        before, after, "http_requests_total", route="/health", method="OTHER", status="405"
    )
    routes = {dict(key[1]).get("route") for key in after if key[0] == "http_requests_total"}
    assert not routes & {"/no/such/thing", "/wp-login.php", "/api/v1/nothing-here/42"}


def test_errors_are_counted_by_code_and_500s_by_exception_type(client: TestClient) -> None:
    before = scrape(client)
    assert client.post("/api/v1/analytics/track", json={"event": "x"}).status_code == 401
    response = client.post(
        "/api/v1/analytics/track", json={"properties": []}, headers=auth_header("alice")
    )
    assert response.status_code == 422
    assert client.get("/test-only/boom/1").status_code == 500
    after = scrape(client)

    errors = "mysoulmate_errors_total"
    assert moved(before, after, errors, code="unauthorized", exception="AuthenticationError") == 1
    assert (
        moved(
            before,
            after,
            "mysoulmate_errors_total",
            code="validation_error",
            exception="RequestValidationError",
        )
        == 1
    )
    assert (
        moved(
            before, after, "mysoulmate_errors_total", code="internal_error", exception="LookupError"
        )
        == 1
    )
    boom = {"route": "/test-only/boom/{item}", "method": "GET", "status": "500"}
    assert moved(before, after, "http_requests_total", **boom) == 1


# -- ingest: accepted, stored, deduplicated, revenue, dead letters ---------------------------


def test_events_flow_from_accepted_to_stored_with_revenue_counted_once(
    client: TestClient,
) -> None:
    before = scrape(client)
    now = datetime.now(UTC).isoformat()
    track(client, "alice", messageId="m-1", timestamp=now)
    track(
        client,
        "alice",
        event="purchase",
        messageId="m-2",
        timestamp=now,
        properties={"revenue": 9.99, "currency": "eur"},
    )
    track(
        client, "bob", event="purchase", messageId="m-3", timestamp=now, properties={"revenue": 5}
    )
    response = client.post(
        "/api/v1/analytics/identify", json={"traits": {"plan": "pro"}}, headers=auth_header("bob")
    )
    assert response.status_code == 202
    queued = scrape(client)
    assert moved(before, queued, "mysoulmate_events_accepted_total") == 3
    assert moved(before, queued, "mysoulmate_identifies_accepted_total") == 1
    assert value(queued, "mysoulmate_queue_messages") == 4
    assert value(queued, "mysoulmate_queue_oldest_message_age_seconds") >= 0

    drain()
    stored = scrape(client)
    assert moved(queued, stored, "mysoulmate_events_stored_total") == 4
    assert moved(queued, stored, "mysoulmate_events_deduplicated_total") == 0
    assert moved(queued, stored, "mysoulmate_revenue_total", currency="EUR") == pytest.approx(9.99)
    assert moved(queued, stored, "mysoulmate_revenue_total", currency="USD") == pytest.approx(5)
    assert value(stored, "mysoulmate_queue_messages") == 0
    assert (
        moved(
            queued,
            stored,
            "mysoulmate_storage_query_duration_seconds_count",
            operation="ingest_flush",
        )
        >= 1
    )

    # The client re-sends the purchase: stored once, its revenue not counted again.
    track(
        client,
        "alice",
        event="purchase",
        messageId="m-2",
        timestamp=now,
        properties={"revenue": 9.99, "currency": "EUR"},
    )
    drain()
    again = scrape(client)
    assert moved(stored, again, "mysoulmate_events_deduplicated_total") == 1
    assert moved(stored, again, "mysoulmate_events_stored_total") == 0
    assert moved(stored, again, "mysoulmate_revenue_total", currency="EUR") == 0


def test_active_users_come_from_the_rollups(client: TestClient) -> None:
    now = datetime.now(UTC).isoformat()
    for user in ("u1", "u2", "u3"):
        track(client, user, timestamp=now)
    drain()
    samples = scrape(client)
    assert value(samples, "mysoulmate_active_users", window="1d") == 3
    assert value(samples, "mysoulmate_active_users", window="7d") == 3
    assert value(samples, "mysoulmate_active_users", window="30d") == 3


def test_active_users_are_cached_for_the_ttl() -> None:
    clock = [1000.0]
    collector = ActiveUsersCollector(ttl=60, clock=lambda: clock[0])
    store = event_store()
    assert collector.figures() == {"1d": 0, "7d": 0, "30d": 0}
    from tests.support.aws import queued_message

    store.insert_events([queued_message("zoe", at=datetime.now(UTC))])
    clock[0] += 59
    assert collector.figures() == {"1d": 0, "7d": 0, "30d": 0}
    clock[0] += 2
    assert collector.figures() == {"1d": 1, "7d": 1, "30d": 1}


def test_dead_lettered_messages_are_counted(client: TestClient, tmp_path: Path) -> None:
    queue = LocalQueue(tmp_path / "q.db", visibility_timeout=0.001, max_receive_count=1)
    before = scrape(client)
    queue.send_batch(["poison-1", "poison-2"])
    assert len(queue.receive(10, visibility_timeout=0)) == 2
    assert queue.receive(10) == []  # the receive that would exceed the count moves them
    after = scrape(client)
    assert moved(before, after, "mysoulmate_events_dead_lettered_total") == 2


def test_poison_messages_count_as_consumer_failures(client: TestClient) -> None:
    before = scrape(client)
    local_queue().send("not json at all")
    drain_once(local_queue(), event_store(), 10)
    after = scrape(client)
    assert moved(before, after, "mysoulmate_consumer_record_failures_total") == 1


# -- read side: GDPR, storage timing, i18n cache ---------------------------------------------


def test_gdpr_requests_and_storage_queries_are_counted(client: TestClient) -> None:
    before = scrape(client)
    alice = auth_header("alice")
    assert client.get("/api/v1/analytics/user/alice/export", headers=alice).status_code == 200
    assert client.delete("/api/v1/analytics/user/alice", headers=alice).status_code == 200
    admin = auth_header("ops", "admin")
    assert client.get("/api/v1/analytics/dashboard", headers=admin).status_code == 200
    after = scrape(client)

    assert moved(before, after, "mysoulmate_gdpr_requests_total", kind="export") == 1
    assert moved(before, after, "mysoulmate_gdpr_requests_total", kind="erase") == 1
    for operation in ("record", "erase", "dashboard"):
        name = "mysoulmate_storage_query_duration_seconds_count"
        assert moved(before, after, name, operation=operation) == 1, operation


def test_i18n_catalog_cache_hits_and_misses(client: TestClient) -> None:
    before = scrape(client)
    for _ in range(3):
        response = client.get("/api/v1/i18n/translate?key=errors.not_found&locale=de")
        assert response.status_code == 200
    after = scrape(client)
    looked_up = moved(before, after, "mysoulmate_i18n_catalog_cache_hits_total") + moved(
        before, after, "mysoulmate_i18n_catalog_cache_misses_total"
    )
    assert looked_up >= 3
    assert moved(before, after, "mysoulmate_i18n_catalog_cache_hits_total") >= 2


def test_process_memory_and_cpu_are_exposed(client: TestClient) -> None:
    samples = scrape(client)
    assert value(samples, "process_resident_memory_bytes") > 0
    assert ("process_cpu_seconds_total", frozenset()) in samples


def test_storage_pool_families_are_declared_without_postgres(client: TestClient) -> None:
    exposition = client.get("/metrics").text
    names = {family.name for family in text_string_to_metric_families(exposition)}
    assert {
        "mysoulmate_storage_pool_connections",
        "mysoulmate_storage_pool_requests_waiting",
    } <= names


def test_storage_pool_of_postgres_is_exposed(
    monkeypatch: pytest.MonkeyPatch,
    postgres_database: str,
    make_client: Callable[..., TestClient],
) -> None:
    monkeypatch.setenv("STORAGE_BACKEND", "postgres")
    monkeypatch.setenv("DATABASE_URL", postgres_database)
    monkeypatch.setenv("DATABASE_POOL_SIZE", "3")
    from mysoulmate.runtime.backends import reset_backends

    reset_backends()
    try:
        with make_client() as client:
            samples = scrape(client)
    finally:
        event_store().close()  # type: ignore[attr-defined]
        reset_backends()
    assert value(samples, "mysoulmate_storage_pool_connections", state="max") == 3
    assert value(samples, "mysoulmate_storage_pool_connections", state="open") >= 1
    assert ("mysoulmate_storage_pool_requests_waiting", frozenset()) in samples


# -- the JSON view -------------------------------------------------------------------------


def test_json_metrics_are_for_admins_only(client: TestClient) -> None:
    assert client.get("/api/v1/metrics").status_code == 401
    response = client.get("/api/v1/metrics", headers=auth_header("alice"))
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "admin_required"


def test_json_metrics_carry_the_same_families(client: TestClient) -> None:
    track(client, "alice")
    response = client.get("/api/v1/metrics", headers=auth_header("ops", "admin"))
    assert response.status_code == 200, response.text
    body = response.json()
    families = {family["name"]: family for family in body["families"]}
    exposed = {
        family.name for family in text_string_to_metric_families(client.get("/metrics").text)
    }
    assert exposed <= set(families) | {"http_requests", "http_request_duration_seconds"}
    accepted = families["mysoulmate_events_accepted"]
    assert accepted["type"] == "counter"
    assert accepted["samples"][0]["value"] >= 1
    tracked = {
        "route": "/api/v1/analytics/track",
        "method": "POST",
        "status": "202",
    }
    assert any(
        s["labels"] == tracked and s["value"] >= 1 for s in families["http_requests"]["samples"]
    )


def test_unknown_signals_fail_loudly() -> None:
    with pytest.raises(signals.UnknownSignalError):
        signals.count("NoSuchSignal")
    with pytest.raises(signals.UnknownSignalError):
        signals.observe("EventsStored", 1.0)  # a counter, not a histogram


# -- several workers: multiprocess mode ------------------------------------------------------


WORKER = textwrap.dedent(
    """
    import sys
    from fastapi.testclient import TestClient
    from mysoulmate.runtime.server import create_server_app
    with TestClient(create_server_app()) as client:
        for _ in range(int(sys.argv[1])):
            assert client.get("/health").status_code == 200
        if sys.argv[2] == "scrape":
            sys.stdout.write(client.get("/metrics").text)
    """
)


def test_several_workers_add_up_in_multiprocess_mode(tmp_path: Path) -> None:
    """Separate processes sharing PROMETHEUS_MULTIPROC_DIR, as uvicorn --workers runs them:
    a scrape served by any one of them reports every worker's requests."""
    shared = tmp_path / "prometheus"
    shared.mkdir()
    env = {
        **os.environ,
        "PROMETHEUS_MULTIPROC_DIR": str(shared),
        "DATA_DIR": str(tmp_path / "data"),
    }

    def worker(requests: int, then: str) -> str:
        result = subprocess.run(
            [sys.executable, "-c", WORKER, str(requests), then],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    worker(3, "exit")
    worker(4, "exit")
    exposition = worker(2, "scrape")

    samples: Samples = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    health = {"route": "/health", "method": "GET", "status": "200"}
    assert value(samples, "http_requests_total", **health) == 9
    assert value(samples, "http_request_duration_seconds_count", **health) == 9
    assert value(samples, "process_resident_memory_bytes") > 0
    assert json.dumps(sorted(p.name for p in shared.iterdir()))  # the workers' files are there
