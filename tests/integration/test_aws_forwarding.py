"""Forwarding on the AWS shape, end to end in moto: the consumer function stores a batch and
appends it to the GA4 forward queue; the forwarder function (`functions/forwarder/app.py`),
with its API secret read from SSM, sends it to a local capture server standing in for GA4,
once per message whatever the redeliveries (the ledger in the events table). An outage
defers records with a longer visibility timeout; a refused batch goes straight to the
forwarder's dead-letter queue with its reason; an erased person's queued events never go.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from tests.support.aws import REGION, FakeLambdaContext, Queues, queued_message, sqs_event
from tests.support.capture_server import CaptureServer, Reply

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]
SECRET = "ga-api-s3cret"
PARAMETER = "/mysoulmate/test/ga-api-secret"


@pytest.fixture
def ga4() -> Iterator[CaptureServer]:
    with CaptureServer(status=204, body=b"") as server:
        yield server


@pytest.fixture
def forward_queues(sqs: Any) -> Queues:
    dlq_url = sqs.create_queue(QueueName="mysoulmate-test-forward-ga4-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 24})
    url = sqs.create_queue(
        QueueName="mysoulmate-test-forward-ga4",
        Attributes={"VisibilityTimeout": "720", "RedrivePolicy": redrive},
    )["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    return Queues(url=url, arn=arn, dlq_url=dlq_url, dlq_arn=dlq_arn)


@pytest.fixture
def deployed(
    lambda_env: Callable[..., None],
    events_table: str,
    queues: Queues,
    forward_queues: Queues,
    ga4: CaptureServer,
    monkeypatch: pytest.MonkeyPatch,
) -> Queues:
    boto3.client("ssm", region_name=REGION).put_parameter(
        Name=PARAMETER, Value=SECRET, Type="SecureString"
    )
    for name, value in {
        "GA_MEASUREMENT_ID": "G-TEST123",
        "GA_API_SECRET_PARAMETER": PARAMETER,
        "GA_ENDPOINT": f"{ga4.url}/mp/collect",
        "GA4_FORWARD_QUEUE_URL": forward_queues.url,
        "FORWARD_DLQ_URL": forward_queues.dlq_url,
        "FORWARD_PROVIDER": "ga4",
    }.items():
        monkeypatch.setenv(name, value)
    # Powertools caches parameters per process: start each test from SSM itself.
    from aws_lambda_powertools.utilities import parameters

    parameters.clear_caches()
    lambda_env(queues.url)
    return forward_queues


@pytest.fixture
def consumer(deployed: Queues, load_function: Callable[[str], Handler]) -> Handler:
    return load_function("consumer")


@pytest.fixture
def forwarder(deployed: Queues, load_function: Callable[[str], Handler]) -> Handler:
    return load_function("forwarder")


def receive_event(sqs: Any, queue: Queues, wait: int = 0) -> dict[str, Any]:
    """What the Lambda poller would hand the forwarder: received records of the queue."""
    received = sqs.receive_message(
        QueueUrl=queue.url,
        MaxNumberOfMessages=10,
        AttributeNames=["All"],
        WaitTimeSeconds=wait,
    ).get("Messages", [])
    records = [
        {
            "messageId": m["MessageId"],
            "receiptHandle": m["ReceiptHandle"],
            "body": m["Body"],
            "attributes": m.get("Attributes", {}),
            "messageAttributes": {},
            "eventSource": "aws:sqs",
            "eventSourceARN": queue.arn,
            "awsRegion": REGION,
        }
        for m in received
    ]
    return {"Records": records}


def sent_event_ids(server: CaptureServer) -> list[str]:
    """The `seq` of every event GA4 received (one request per person)."""
    ids = []
    for request in server.received():
        for event in request.json()["events"]:
            ids.append(event["params"]["seq"])
    return ids


def store_two(consumer: Handler, user: str = "alice") -> None:
    """Two events through the consumer function: recent ones (GA4 takes 72 hours back)."""
    at = datetime.now(UTC) - timedelta(minutes=1)
    bodies = [
        queued_message(user, message_id=n, event="song_played", at=at, properties={"seq": n})
        for n in ("m-1", "m-2")
    ]
    event = sqs_event([m.model_dump_json() for m in bodies], ["r-1", "r-2"])
    assert consumer(event, FakeLambdaContext()) == {"batchItemFailures": []}


def test_stored_events_reach_ga4_once_through_the_forward_queue(
    consumer: Handler,
    forwarder: Handler,
    deployed: Queues,
    queues: Queues,
    sqs: Any,
    ga4: CaptureServer,
) -> None:
    store_two(consumer)
    event = receive_event(sqs, deployed)
    assert event["Records"], "the consumer appended what it stored to the forward queue"
    assert forwarder(event, FakeLambdaContext()) == {"batchItemFailures": []}
    (request,) = ga4.received()
    assert request.path == "/mp/collect"
    assert request.query["api_secret"] == [SECRET]  # read from SSM, not from the environment
    assert sorted(sent_event_ids(ga4)) == ["m-1", "m-2"]
    # The same records again (a redelivery after a lost response): nothing is sent twice.
    assert forwarder(event, FakeLambdaContext()) == {"batchItemFailures": []}
    assert len(ga4.received()) == 1


def test_an_outage_defers_the_records_with_a_longer_visibility_and_sends_later(
    consumer: Handler,
    forwarder: Handler,
    deployed: Queues,
    queues: Queues,
    sqs: Any,
    ga4: CaptureServer,
) -> None:
    store_two(consumer)
    event = receive_event(sqs, deployed)
    ga4.status = 503
    response = forwarder(event, FakeLambdaContext())
    failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
    assert failed == {r["messageId"] for r in event["Records"]}
    assert len(ga4.received()) >= 2, "retried within the invocation before deferring"
    # Deferred: not visible again right away (moto keeps the new visibility timeout).
    assert receive_event(sqs, deployed)["Records"] == []
    assert (
        sqs.get_queue_attributes(
            QueueUrl=deployed.dlq_url, AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]["ApproximateNumberOfMessages"]
        == "0"
    )
    # GA4 is back; the redelivered records go out once.
    ga4.status = 204
    ga4.clear()
    assert forwarder(event, FakeLambdaContext()) == {"batchItemFailures": []}
    assert sorted(sent_event_ids(ga4)) == ["m-1", "m-2"]


def test_a_refused_batch_goes_to_the_dead_letter_queue_with_its_reason(
    consumer: Handler,
    forwarder: Handler,
    deployed: Queues,
    queues: Queues,
    sqs: Any,
    ga4: CaptureServer,
) -> None:
    store_two(consumer)
    event = receive_event(sqs, deployed)
    ga4.replies.append(Reply(status=400, body=b'{"error": "bad request"}'))
    assert forwarder(event, FakeLambdaContext()) == {"batchItemFailures": []}
    dead = sqs.receive_message(
        QueueUrl=deployed.dlq_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
    )["Messages"]
    assert [m["Body"] for m in dead] == [r["body"] for r in event["Records"]]
    reason = dead[0]["MessageAttributes"]["reason"]["StringValue"]
    assert reason.startswith("rejected:")
    assert "400" in reason
    assert SECRET not in reason
    assert dead[0]["MessageAttributes"]["provider"]["StringValue"] == "ga4"


def test_an_unreadable_record_is_dead_lettered_alone(
    consumer: Handler,
    forwarder: Handler,
    deployed: Queues,
    queues: Queues,
    sqs: Any,
    ga4: CaptureServer,
) -> None:
    store_two(consumer)
    event = receive_event(sqs, deployed)
    event["Records"].append({**event["Records"][0], "messageId": "junk", "body": "not json"})
    assert forwarder(event, FakeLambdaContext()) == {"batchItemFailures": []}
    assert sorted(sent_event_ids(ga4)) == ["m-1", "m-2"]
    (dead,) = sqs.receive_message(QueueUrl=deployed.dlq_url, MessageAttributeNames=["All"])[
        "Messages"
    ]
    assert dead["Body"] == "not json"
    assert dead["MessageAttributes"]["reason"]["StringValue"].startswith("invalid forward")


def test_an_erasure_stops_what_is_still_in_the_forward_queue(
    consumer: Handler,
    forwarder: Handler,
    deployed: Queues,
    queues: Queues,
    sqs: Any,
    ga4: CaptureServer,
) -> None:
    from mysoulmate.analytics.gdpr import erase
    from mysoulmate.runtime.backends import event_store

    store_two(consumer, user="bob")
    erase(event_store(), "admin", "bob")
    event = receive_event(sqs, deployed)
    assert event["Records"]
    assert forwarder(event, FakeLambdaContext()) == {"batchItemFailures": []}
    assert ga4.received() == []


def test_an_unreadable_secret_fails_the_function_at_init_naming_the_parameter(
    deployed: Queues, load_function: Callable[[str], Handler]
) -> None:
    from mysoulmate.runtime.secrets import SecretUnavailableError

    boto3.client("ssm", region_name=REGION).delete_parameter(Name=PARAMETER)
    with pytest.raises(SecretUnavailableError, match=PARAMETER) as raised:
        load_function("forwarder")
    assert SECRET not in str(raised.value)


def test_the_consumer_reads_no_provider_secret(
    consumer: Handler, deployed: Queues, queues: Queues, sqs: Any
) -> None:
    """Storing and queueing for the forwarders works with the SSM parameter gone: only the
    forwarder reads it."""
    boto3.client("ssm", region_name=REGION).delete_parameter(Name=PARAMETER)
    store_two(consumer)
    assert receive_event(sqs, deployed)["Records"]
