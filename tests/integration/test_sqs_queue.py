"""SqsQueue against moto: what is sent arrives, and every call stays within SQS's limits
(10 entries and 256 KiB per SendMessageBatch, 256 KiB per message), which moto may not
enforce as strictly as AWS does."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from mysoulmate.analytics.ports import QueueError
from mysoulmate.queue.limits import MAX_BATCH_BYTES, MAX_MESSAGE_BYTES
from mysoulmate.queue.sqs import SqsQueue

from tests.support.aws import REGION, ApiCalls, Queues, receive_all

KIB = 1024


@pytest.fixture
def queue_client(aws: None) -> Any:
    """The SQS client the queue under test uses (the `sqs` fixture is the test's own)."""
    return boto3.client("sqs", region_name=REGION)


@pytest.fixture
def calls(queue_client: Any) -> ApiCalls:
    return ApiCalls(queue_client, "sqs")


@pytest.fixture
def queue(queue_client: Any, queues: Queues) -> SqsQueue:
    return SqsQueue(queues.url, queue_client)


def batch_bytes(params: dict[str, Any]) -> int:
    return sum(len(entry["MessageBody"].encode()) for entry in params["Entries"])


def received_bodies(sqs: Any, queues: Queues) -> list[str]:
    return [m["Body"] for m in receive_all(sqs, queues.url)]


def test_send_queues_one_message(queue: SqsQueue, sqs: Any, queues: Queues) -> None:
    queue.send('{"hello":"world"}')

    assert received_bodies(sqs, queues) == ['{"hello":"world"}']


def test_send_batch_of_25_uses_three_calls_and_delivers_all(
    queue: SqsQueue, calls: ApiCalls, sqs: Any, queues: Queues
) -> None:
    bodies = [f'{{"n":{i}}}' for i in range(25)]

    queue.send_batch(bodies)

    batches = calls.of("SendMessageBatch")
    assert [len(p["Entries"]) for p in batches] == [10, 10, 5]
    for params in batches:
        ids = [entry["Id"] for entry in params["Entries"]]
        assert len(ids) == len(set(ids))
    assert sorted(received_bodies(sqs, queues)) == sorted(bodies)


def test_large_bodies_are_split_so_no_call_exceeds_256_kib(
    queue: SqsQueue, calls: ApiCalls, sqs: Any, queues: Queues
) -> None:
    bodies = [f"{i}" + "x" * (60 * KIB - 1) for i in range(10)]

    queue.send_batch(bodies)

    batches = calls.of("SendMessageBatch")
    assert len(batches) >= 3
    assert all(batch_bytes(p) <= MAX_BATCH_BYTES for p in batches)
    assert sorted(received_bodies(sqs, queues)) == sorted(bodies)


def test_batch_size_is_measured_in_bytes_not_characters(
    queue: SqsQueue, calls: ApiCalls, sqs: Any, queues: Queues
) -> None:
    # 40,000 characters of "é" are 80,000 bytes: four would fit by characters, not by bytes.
    bodies = [f"{i}" + "é" * 40_000 for i in range(4)]

    queue.send_batch(bodies)

    batches = calls.of("SendMessageBatch")
    assert len(batches) == 2
    assert all(batch_bytes(p) <= MAX_BATCH_BYTES for p in batches)
    assert sorted(received_bodies(sqs, queues)) == sorted(bodies)


def test_a_body_of_exactly_256_kib_is_sent(
    queue: SqsQueue, calls: ApiCalls, sqs: Any, queues: Queues
) -> None:
    body = "x" * MAX_MESSAGE_BYTES

    queue.send_batch([body])
    queue.send(body)

    assert len(calls.of("SendMessageBatch")) == 1
    assert received_bodies(sqs, queues) == [body, body]


def test_a_body_over_256_kib_fails_the_batch_before_any_call(
    queue: SqsQueue, calls: ApiCalls, sqs: Any, queues: Queues
) -> None:
    small = [f'{{"n":{i}}}' for i in range(12)]
    too_big = "x" * (MAX_MESSAGE_BYTES + 1)

    with pytest.raises(QueueError, match="exceeds"):
        queue.send_batch([*small, too_big])

    assert calls.calls == []
    assert received_bodies(sqs, queues) == []


def test_send_of_a_body_over_256_kib_fails_before_any_call(
    queue: SqsQueue, calls: ApiCalls, sqs: Any, queues: Queues
) -> None:
    # Multibyte: within the limit in characters, over it in bytes.
    too_big = "é" * (MAX_MESSAGE_BYTES // 2 + 1)

    with pytest.raises(QueueError):
        queue.send(too_big)

    assert calls.calls == []
    assert received_bodies(sqs, queues) == []


def test_ping_succeeds_on_an_existing_queue(queue: SqsQueue, calls: ApiCalls) -> None:
    queue.ping()

    assert [name for name, _ in calls.calls] == ["GetQueueAttributes"]


def test_ping_on_a_missing_queue_raises_queue_error(queue_client: Any, queues: Queues) -> None:
    missing = queues.url.rsplit("/", 1)[0] + "/no-such-queue"

    with pytest.raises(QueueError, match="sqs"):
        SqsQueue(missing, queue_client).ping()


def test_send_to_a_missing_queue_raises_queue_error(queue_client: Any, queues: Queues) -> None:
    missing = queues.url.rsplit("/", 1)[0] + "/no-such-queue"
    queue = SqsQueue(missing, queue_client)

    with pytest.raises(QueueError):
        queue.send("{}")
    with pytest.raises(QueueError):
        queue.send_batch(["{}", "{}"])
