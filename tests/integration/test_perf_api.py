"""Client performance telemetry through the laptop shape: measurements posted to
`/api/v1/perf` (JWT) and as Segment `perf` messages (`/v1/batch` with a write key, and the
signed-in `/api/v1/analytics/batch`) go through the durable queue into sketches, counted once
per messageId; `/api/v1/perf/summary` answers quantiles within the sketch's 1 % of the exact
ones per app version and day, and `/api/v1/perf/screens` names the screens that regressed."""

from __future__ import annotations

import base64
import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from mysoulmate.analytics import write_keys
from mysoulmate.runtime.backends import event_store, local_queue, source_store
from mysoulmate.runtime.worker import drain_once

from tests.support.helpers import auth_header

NOW = datetime.now(UTC).replace(microsecond=0)


def drain() -> None:
    while drain_once(local_queue(), event_store(), 100):
        pass


def batch(values: list[float], version: str = "2.4.0", **extra: Any) -> dict[str, Any]:
    return {
        "appVersion": version,
        "platform": "ios",
        "deviceClass": "mid",
        "measurements": [
            {"metric": "render", "name": "ChatScreen", "value": value} for value in values
        ],
        **extra,
    }


def summary(client: TestClient, **params: str) -> dict[str, Any]:
    response = client.get(
        "/api/v1/perf/summary",
        params={"metric": "render", "name": "ChatScreen", **params},
        headers=auth_header("ops", "admin"),
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def exact(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[int(q * (len(ordered) - 1))]


def test_measurements_become_quantiles_within_the_sketch_accuracy(client: TestClient) -> None:
    rng = random.Random(19)
    values = [round(rng.lognormvariate(5, 0.6), 3) for _ in range(1_500)]
    for start in range(0, len(values), 500):
        response = client.post(
            "/api/v1/perf", json=batch(values[start : start + 500]), headers=auth_header("ava")
        )
        assert response.status_code == 202, response.text
        assert response.json()["measurements"] == 500
    drain()

    body = summary(client)
    assert body["unit"] == "ms"
    assert body["relativeAccuracy"] == 0.01
    overall = body["overall"]
    assert overall["count"] == 1_500
    for key, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99)):
        truth = exact(values, q)
        assert abs(overall[key] - truth) <= 0.0101 * truth, (key, overall[key], truth)
    assert overall["mean"] == pytest.approx(sum(values) / len(values), rel=1e-6)
    assert [v["appVersion"] for v in body["byVersion"]] == ["2.4.0"]
    assert [(d["day"], d["count"]) for d in body["byDay"]] == [(NOW.date().isoformat(), 1_500)]


def test_a_retried_batch_is_counted_once(client: TestClient) -> None:
    message_id = str(uuid.uuid4())
    for _ in range(3):
        response = client.post(
            "/api/v1/perf",
            json=batch([100.0, 200.0], messageId=message_id),
            headers=auth_header("ava"),
        )
        assert response.status_code == 202
        assert response.json()["messageId"] == message_id
    drain()
    assert summary(client)["overall"]["count"] == 2


def test_summary_per_version_and_day_with_filters(client: TestClient) -> None:
    yesterday = (NOW - timedelta(days=1)).isoformat()
    old = batch([100.0] * 10, version="2.3.0")
    old["measurements"] = [{**m, "timestamp": yesterday} for m in old["measurements"]]
    new = batch([300.0] * 20, version="2.10.0", deviceClass="low")
    for body in (old, new):
        assert client.post("/api/v1/perf", json=body, headers=auth_header("ava")).status_code == 202
    drain()

    body = summary(client)
    assert [(v["appVersion"], v["count"]) for v in body["byVersion"]] == [
        ("2.10.0", 20),  # natural version order: 2.10 after 2.3
        ("2.3.0", 10),
    ]
    days = [(d["day"], d["appVersion"], d["count"]) for d in body["byDay"]]
    today, before = NOW.date(), NOW.date() - timedelta(days=1)
    assert days == [(before.isoformat(), "2.3.0", 10), (today.isoformat(), "2.10.0", 20)]
    assert summary(client, deviceClass="low")["overall"]["count"] == 20
    assert summary(client, appVersion="2.3.0")["overall"]["p50"] == pytest.approx(100, rel=0.01)
    assert summary(client, platform="android")["overall"] == {
        "count": 0,
        "p50": None,
        "p90": None,
        "p99": None,
        "mean": None,
    }


def test_screens_name_the_regression_since_the_previous_version(client: TestClient) -> None:
    sent = [
        batch([100.0] * 60, version="2.3.0"),
        batch([150.0] * 60, version="2.4.0"),  # +50 %: regressed
        {
            **batch([400.0] * 60, version="2.3.0"),
            "measurements": [
                {"metric": "render", "name": "Settings", "value": 400.0} for _ in range(60)
            ],
        },
        {
            **batch([420.0] * 60, version="2.4.0"),
            "measurements": [
                {"metric": "render", "name": "Settings", "value": 420.0} for _ in range(60)
            ],
        },
        batch([900.0] * 5, version="2.5.0"),  # too few to compare
    ]
    for body in sent:
        assert client.post("/api/v1/perf", json=body, headers=auth_header("ava")).status_code == 202
    drain()
    response = client.get("/api/v1/perf/screens", headers=auth_header("ops", "admin"))
    assert response.status_code == 200, response.text
    screens = {s["name"]: s for s in response.json()["screens"]}
    assert list(screens) == ["Settings", "ChatScreen"]  # slowest first
    chat = screens["ChatScreen"]
    assert (chat["appVersion"], chat["previousVersion"]) == ("2.4.0", "2.3.0")
    assert chat["change"] == pytest.approx(0.5, abs=0.03)
    assert chat["regressed"] is True
    assert screens["Settings"]["regressed"] is False


@pytest.mark.parametrize(
    ("change", "field", "kind"),
    [
        ({"measurements": [{"metric": "render", "name": "A", "value": -1}]}, "measurements", None),
        (
            {"measurements": [{"metric": "heat", "name": "A", "value": 1}]},
            "metric",
            "literal_error",
        ),
        ({"measurements": [{"metric": "render", "name": "A#B", "value": 1}]}, "name", None),
        ({"measurements": []}, "measurements", "too_short"),
        (
            {"measurements": [{"metric": "fps", "name": "A", "value": 1}] * 501},
            "measurements",
            None,
        ),
        ({"appVersion": "2.4 beta"}, "appVersion", "string_pattern_mismatch"),
        ({"deviceClass": "potato"}, "deviceClass", "literal_error"),
    ],
)
def test_bad_batches_are_refused_with_a_localized_message(
    client: TestClient, change: dict[str, Any], field: str, kind: str | None
) -> None:
    response = client.post(
        "/api/v1/perf",
        json={**batch([1.0]), **change},
        headers={**auth_header("ava"), "Accept-Language": "fr"},
    )
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert response.headers["content-language"] == "fr"
    assert any(field in d["field"] for d in error["details"])
    if kind is not None:
        assert kind in {d["type"] for d in error["details"]}
    drain()
    assert summary(client)["overall"]["count"] == 0


def test_an_impossible_value_names_its_metric_and_limit(client: TestClient) -> None:
    response = client.post(
        "/api/v1/perf",
        json=batch([700_000.0]),
        headers={**auth_header("ava"), "Accept-Language": "fr"},
    )
    assert response.status_code == 422
    messages = " ".join(d["message"] for d in response.json()["error"]["details"])
    assert "render doit être un nombre fini entre 0 et 600" in messages


def test_a_measurement_in_the_future_is_refused(client: TestClient) -> None:
    body = batch([1.0])
    body["measurements"][0]["timestamp"] = (NOW + timedelta(days=1)).isoformat()
    response = client.post("/api/v1/perf", json=body, headers=auth_header("ava"))
    assert response.status_code in (400, 422)
    assert response.json()["error"]["details"][0]["field"] == "measurements.0.timestamp"


def test_reads_need_the_admin_role_and_writes_a_token(client: TestClient) -> None:
    assert client.post("/api/v1/perf", json=batch([1.0])).status_code == 401
    for path in ("/api/v1/perf/summary?metric=render&name=A", "/api/v1/perf/screens"):
        assert client.get(path, headers=auth_header("ava")).status_code == 403
        assert client.get(path).status_code == 401


@pytest.fixture
def write_key() -> str:
    _, key = write_keys.create_source(source_store(), "app", "client", datetime.now(UTC))
    return key


def test_segment_perf_messages_are_counted_and_bad_ones_rejected_alone(
    client: TestClient, write_key: str
) -> None:
    basic = {"Authorization": "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()}
    good = {
        "type": "perf",
        "anonymousId": "device-1",
        "context": {"app": {"version": "2.4.0"}, "os": {"name": "iOS"}},
        "properties": {
            "deviceClass": "high",
            "measurements": [{"metric": "render", "name": "ChatScreen", "value": 120.0}] * 3,
        },
    }
    bad = {**good, "properties": {"measurements": [{"metric": "render", "value": 1}]}}
    response = client.post("/v1/batch", json={"batch": [good, bad]}, headers=basic)
    assert response.status_code == 200, response.text
    assert [r["index"] for r in response.json()["rejected"]] == [1]

    signed_in = {**good, "messageId": "m-1"}
    signed_in.pop("anonymousId")
    response = client.post(
        "/api/v1/analytics/batch", json={"batch": [signed_in]}, headers=auth_header("ava")
    )
    assert response.status_code == 200, response.text
    drain()

    body = summary(client, platform="ios", deviceClass="high")
    assert body["overall"]["count"] == 6
    assert body["byVersion"][0]["appVersion"] == "2.4.0"
    # Perf messages are sketches only: nothing shows up as the person's events.
    events = client.get("/api/v1/analytics/user/ava", headers=auth_header("ava")).json()
    assert events["events"] == []


def test_metrics_expose_each_screens_p90_and_its_regression(client: TestClient) -> None:
    for version, value in (("2.3.0", 100.0), ("2.4.0", 150.0)):
        response = client.post(
            "/api/v1/perf", json=batch([value] * 60, version=version), headers=auth_header("ava")
        )
        assert response.status_code == 202
    drain()
    text = client.get("/metrics").text
    labels = 'platform="ios",screen="ChatScreen",version="2.4.0"'
    assert f"mysoulmate_perf_render_regressed{{{labels}}} 1.0" in text
    p90 = next(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(f"mysoulmate_perf_render_p90_milliseconds{{{labels}}}")
    )
    assert p90 == pytest.approx(150, rel=0.01)
    assert 'previous="2.3.0"' in text
