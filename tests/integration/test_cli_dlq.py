"""`mysoulmate dlq list | redrive` on each queue backend: the local queue's dead-letter
table, SQS (moto) and RabbitMQ (the real broker at 127.0.0.1:5672). Redrive moves every dead
letter back to the events queue and a second run moves nothing; an interrupted redrive
leaves each message in one queue or the other, never in neither."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest
from mysoulmate.queue.local import LocalQueue
from mysoulmate.queue.rabbitmq import RabbitQueue
from mysoulmate.runtime.backends import event_store, local_queue, reset_backends
from mysoulmate.runtime.cli import app
from mysoulmate.runtime.worker import drain_once
from typer.testing import CliRunner, Result

from tests.support.aws import DLQ_NAME, QUEUE_NAME, Queues
from tests.support.rabbitmq import BROKER_URL, broker_channel, depth, drain, scratch_queue

POISON = '{"type":"track","userId":"u","password":"hunter2"}'


def run(*args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(app, list(args), input=stdin)


def dead_letters(queue: LocalQueue, bodies: list[str]) -> None:
    """Send ``bodies`` and let the local worker fail them into the dead-letter table."""
    queue.visibility_timeout = 0.0
    queue.send_batch(bodies)
    for _ in range(queue.max_receive_count + 1):
        drain_once(queue, event_store(), 10)
    assert queue.depth() == (0, len(bodies))


# -- the local queue ----------------------------------------------------------------------


def test_local_redrive_moves_dead_letters_back_and_a_second_run_moves_nothing() -> None:
    queue = local_queue()
    dead_letters(queue, [POISON, POISON.replace("u", "v"), POISON.replace("u", "w")])
    ids = {letter.id for letter in queue.dead_letters()}

    result = run("dlq", "redrive", "--yes")
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "moved 3 message(s) from the local queue's dead-letter table to the local queue; 0 left\n"
    )
    assert result.stderr == ""  # no progress bar off a terminal
    assert queue.depth() == (3, 0)
    assert {message.id for message in queue.receive(10)} == ids  # fresh: receive count 1

    again = run("dlq", "redrive", "--yes")
    assert again.exit_code == 0
    assert again.stdout == "no dead letters in the local queue's dead-letter table\n"
    assert queue.depth() == (3, 0)


def test_redrive_asks_first_and_no_moves_nothing() -> None:
    queue = local_queue()
    dead_letters(queue, [POISON])
    result = run("dlq", "redrive", stdin="n\n")
    assert result.exit_code == 1
    assert "Move 1 dead letter(s) from the local queue's dead-letter table" in result.stderr
    assert result.stderr.strip().splitlines()[-1] == "mysoulmate: nothing moved: not confirmed"
    assert queue.depth() == (0, 1)


def test_redrive_limit() -> None:
    queue = local_queue()
    dead_letters(queue, [POISON, POISON, POISON])
    result = run("dlq", "redrive", "--limit", "2", "--yes")
    assert result.exit_code == 0
    assert "moved 2 message(s)" in result.stdout
    assert queue.depth() == (2, 1)


def test_ctrl_c_stops_after_the_current_message(monkeypatch: pytest.MonkeyPatch) -> None:
    queue = local_queue()
    dead_letters(queue, [POISON, POISON, POISON])
    redrive = LocalQueue.redrive

    def redrive_then_ctrl_c(self: LocalQueue, letter_id: str) -> bool:
        moved = redrive(self, letter_id)
        os.kill(os.getpid(), signal.SIGINT)  # the operator presses Ctrl-C mid-run
        return moved

    monkeypatch.setattr(LocalQueue, "redrive", redrive_then_ctrl_c)
    result = run("dlq", "redrive", "--yes")
    assert result.exit_code == 130
    assert result.stdout.startswith("moved 1 message(s)")
    assert "run it again to move the rest" in result.stderr
    assert queue.depth() == (1, 2)  # one moved, two still dead letters: none lost
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored

    monkeypatch.setattr(LocalQueue, "redrive", redrive)
    assert run("dlq", "redrive", "--yes").exit_code == 0
    assert queue.depth() == (3, 0)


def test_local_list_shows_reasons_never_payloads() -> None:
    queue = local_queue()
    dead_letters(queue, [POISON])
    result = run("dlq", "list", "--json")
    assert result.exit_code == 0
    (row,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert row["receives"] == queue.max_receive_count
    assert row["deadLetteredAt"]
    assert "not a valid analytics message" in row["reason"]
    assert "hunter2" not in result.stdout


# -- SQS --------------------------------------------------------------------------------------


@pytest.fixture
def sqs_backend(queues: Queues, monkeypatch: pytest.MonkeyPatch) -> Queues:
    monkeypatch.setenv("QUEUE_BACKEND", "sqs")
    monkeypatch.setenv("EVENTS_QUEUE_URL", queues.url)
    monkeypatch.setenv("EVENTS_DLQ_URL", queues.dlq_url)
    reset_backends()
    return queues


def _count(sqs: Any, url: str) -> int:
    attributes = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


def test_sqs_redrive(sqs: Any, sqs_backend: Queues) -> None:
    bodies = [json.dumps({"n": n}) for n in range(13)]  # more than one receive's worth
    for body in bodies:
        sqs.send_message(
            QueueUrl=sqs_backend.dlq_url,
            MessageBody=body,
            MessageAttributes={"source": {"DataType": "String", "StringValue": "test"}},
        )
    listed = run("dlq", "list", "--limit", "5")
    assert "5 dead letter(s)" in listed.stdout
    assert _count(sqs, sqs_backend.dlq_url) == 13  # listing leaves them there

    result = run("dlq", "redrive", "--yes")
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        f"moved 13 message(s) from SQS {DLQ_NAME} to SQS {QUEUE_NAME}; 0 left\n"
    )
    assert _count(sqs, sqs_backend.dlq_url) == 0
    received: list[dict[str, Any]] = []
    while batch := sqs.receive_message(
        QueueUrl=sqs_backend.url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
    ).get("Messages", []):
        received += batch
    assert sorted(m["Body"] for m in received) == sorted(bodies)
    assert all(m["MessageAttributes"]["source"]["StringValue"] == "test" for m in received)
    assert "no dead letters" in run("dlq", "redrive", "--yes").stdout


def test_sqs_redrive_needs_the_dlq_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUEUE_BACKEND", "sqs")
    monkeypatch.setenv("EVENTS_QUEUE_URL", "https://sqs.us-east-1.amazonaws.com/1/events")
    reset_backends()
    result = run("dlq", "redrive", "--yes")
    assert result.exit_code == 2
    assert result.stderr == (
        "mysoulmate: EVENTS_DLQ_URL is not set: it names the SQS dead-letter queue\n"
    )


# -- RabbitMQ ---------------------------------------------------------------------------------


@pytest.fixture
def rabbit(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A queue of the test's own on the real broker, configured as the events queue."""
    with scratch_queue() as name:
        monkeypatch.setenv("QUEUE_BACKEND", "rabbitmq")
        monkeypatch.setenv("RABBITMQ_URL", BROKER_URL)
        monkeypatch.setenv("RABBITMQ_QUEUE", name)
        reset_backends()
        yield name


def dead_letter_on_the_broker(name: str, bodies: list[str]) -> None:
    """Queue ``bodies``; reject the first, let the others use up their deliveries (each
    nacked with requeue until the delivery limit dead-letters it), as a failing worker
    would; wait until the DLQ holds them all."""
    producer = RabbitQueue(BROKER_URL, queue=name)
    producer.send_batch(bodies)
    producer.close()
    with broker_channel() as channel:
        rejected = False
        while True:
            method, _, _ = channel.basic_get(name, auto_ack=False)
            if method is None:
                break
            channel.basic_nack(method.delivery_tag, requeue=rejected)
            rejected = True
    deadline = time.monotonic() + 20
    while depth(f"{name}-dlq") < len(bodies):
        assert time.monotonic() < deadline, "the broker did not dead-letter the messages"
        time.sleep(0.05)


def test_rabbitmq_list_and_redrive(rabbit: str) -> None:
    valid = {
        "type": "track",
        "messageId": "m-1",
        "userId": "ann",
        "event": "signup",
        "timestamp": "2026-01-31T12:00:00Z",
        "receivedAt": "2026-01-31T12:00:00Z",
    }
    bodies = [POISON, json.dumps(valid)]
    dead_letter_on_the_broker(rabbit, bodies)

    listed = run("dlq", "list")
    assert listed.exit_code == 0, listed.output
    assert "2 dead letter(s)" in listed.stdout
    assert "rejected by the worker" in listed.stdout
    assert "delivered 5 times without being stored" in listed.stdout
    assert "valid track message m-1: storage kept failing" in listed.stdout
    assert "hunter2" not in listed.stdout
    assert depth(f"{rabbit}-dlq") == 2  # listing leaves them there

    result = run("dlq", "redrive", "--yes")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("moved 2 message(s) from RabbitMQ")
    assert result.stdout.endswith(f"to '{rabbit}'; 0 left\n")
    assert depth(f"{rabbit}-dlq") == 0
    moved = drain(rabbit)
    assert sorted(body.decode() for body, _ in moved) == sorted(bodies)
    for _, headers in moved:  # a fresh start in the events queue, and a trace of the move
        assert "x-death" not in headers
        assert headers["mysoulmate-redrives"] == 1

    again = run("dlq", "redrive", "--yes")
    assert again.exit_code == 0
    assert again.stdout.startswith("no dead letters in RabbitMQ")


def test_rabbitmq_interrupted_redrive_loses_nothing(
    rabbit: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mysoulmate.queue.rabbitmq_dlq import RabbitDeadLetters

    bodies = [json.dumps({"n": n}) for n in range(5)]
    dead_letter_on_the_broker(rabbit, bodies)
    move = RabbitDeadLetters.move

    def move_then_ctrl_c(self: RabbitDeadLetters, letter: Any) -> None:
        move(self, letter)
        os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(RabbitDeadLetters, "move", move_then_ctrl_c)
    result = run("dlq", "redrive", "--yes")
    assert result.exit_code == 130
    assert depth(rabbit) == 1
    assert depth(f"{rabbit}-dlq") == 4  # those taken and not moved went back


def test_rabbitmq_unreachable_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUEUE_BACKEND", "rabbitmq")
    monkeypatch.setenv("RABBITMQ_URL", "amqp://guest:S3cretPw@127.0.0.1:1/%2F")
    reset_backends()
    result = run("dlq", "list")
    assert result.exit_code == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("mysoulmate: rabbitmq: cannot connect to amqp://guest@127.0.0.1:1")
    assert "S3cretPw" not in result.stderr


# -- what `mysoulmate report` says about them -------------------------------------------------


def test_the_report_counts_local_dead_letters() -> None:
    from mysoulmate.core.settings import get_settings
    from mysoulmate.runtime.cli.report import dead_letter_health

    dead_letters(local_queue(), [POISON, POISON])
    health = dead_letter_health(get_settings())
    assert health is not None
    assert [(p.provider, p.deadLetters) for p in health.providers] == [("consumer", 2)]


def test_the_report_counts_sqs_dead_letters(sqs: Any, sqs_backend: Queues) -> None:
    from mysoulmate.core.settings import get_settings
    from mysoulmate.runtime.cli.report import dead_letter_health

    sqs.send_message(QueueUrl=sqs_backend.dlq_url, MessageBody=POISON)
    health = dead_letter_health(get_settings())
    assert health is not None
    assert [(p.provider, p.deadLetters) for p in health.providers] == [("consumer", 1)]


def test_the_report_does_not_fail_on_an_unreachable_broker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mysoulmate.core.settings import get_settings
    from mysoulmate.runtime.cli.report import dead_letter_health

    monkeypatch.setenv("QUEUE_BACKEND", "rabbitmq")
    monkeypatch.setenv("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:1/%2F")
    reset_backends()
    assert dead_letter_health(get_settings()) is None
