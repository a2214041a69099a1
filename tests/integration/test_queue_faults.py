"""Queue outages: when the queue cannot take a message the API says 503 (with Retry-After)
and has not accepted it; everything it did accept is stored exactly once."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError
from fastapi.testclient import TestClient
from moto import mock_aws
from mysoulmate.analytics.ingest import IngestBatch
from mysoulmate.runtime.backends import event_store, local_queue, message_queue, reset_backends
from mysoulmate.runtime.worker import drain_once

from tests.support.helpers import auth_header

MakeClient = Callable[..., TestClient]


def track(client: TestClient, index: int) -> int:
    response = client.post(
        "/api/v1/analytics/track",
        json={"event": "tap", "messageId": f"m-{index}"},
        headers=auth_header("ann"),
    )
    if response.status_code == 503:
        assert response.json()["error"]["code"] == "queue_unavailable"
        assert int(response.headers["Retry-After"]) >= 1
    return response.status_code


def stored_ids() -> list[str]:
    return sorted(e.messageId for e in event_store().list_events("ann", 500, None).events)


def test_a_local_queue_locked_by_another_process_refuses_then_recovers(
    isolated_env: Path, make_client: MakeClient
) -> None:
    from mysoulmate.core.bulkhead import Bulkhead

    with make_client() as client:
        accepted = [i for i in range(5) if track(client, i) == 202]
        locker = sqlite3.connect(isolated_env / "queue.db", isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")  # another process holding the file
        refused = [i for i in range(5, 8) if track(client, i) == 503]
        locker.execute("ROLLBACK")
        locker.close()
        Bulkhead.reset_all()  # the breaker's cooldown is not what this test waits for
        accepted += [i for i in range(8, 13) if track(client, i) == 202]
    while drain_once(local_queue(), event_store(), 100):
        pass
    assert refused == [5, 6, 7]
    assert stored_ids() == sorted(f"m-{i}" for i in accepted)
    assert len(accepted) == 10


@pytest.fixture
def sqs(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[object, str]]:
    with mock_aws():
        client = boto3.client("sqs", region_name="us-east-1")
        url = client.create_queue(QueueName="events")["QueueUrl"]
        monkeypatch.setenv("QUEUE_BACKEND", "sqs")
        monkeypatch.setenv("EVENTS_QUEUE_URL", url)
        reset_backends()
        yield client, url


def test_sqs_errors_refuse_ingest_and_lose_nothing(
    sqs: tuple[object, str], make_client: MakeClient
) -> None:
    from mysoulmate.core.bulkhead import Bulkhead

    client, url = sqs
    outage = {"on": False}

    def fail_while_down(**_: object) -> None:
        if outage["on"]:
            raise ClientError(
                {"Error": {"Code": "ServiceUnavailable", "Message": "down"}}, "SendMessage"
            )

    queue = message_queue()
    queue._client.meta.events.register("before-call.sqs.SendMessage", fail_while_down)  # type: ignore[attr-defined]
    with make_client() as api:
        accepted = [i for i in range(5) if track(api, i) == 202]
        outage["on"] = True
        refused = [i for i in range(5, 8) if track(api, i) == 503]
        outage["on"] = False
        Bulkhead.reset_all()
        accepted += [i for i in range(8, 13) if track(api, i) == 202]
    # The consumer: every message in the queue, one redelivered twice for good measure.
    messages = client.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]  # type: ignore[attr-defined]
    bodies = [m["Body"] for m in messages] + [messages[0]["Body"], messages[0]["Body"]]
    batch = IngestBatch(event_store())
    for index, body in enumerate(bodies):
        batch.add(f"r{index}", body)
    outcome = batch.flush()
    assert refused == [5, 6, 7]
    assert outcome.stored == len(accepted) == 10
    assert stored_ids() == sorted(f"m-{i}" for i in accepted)
    assert all(json.loads(b)["messageId"] in stored_ids() for b in bodies)
