"""No silent loss: a message that cannot be stored is dead-lettered with its reason, counted,
logged (never its payload) and listed by `mysoulmate dlq list`."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from mysoulmate.queue.local import LocalQueue
from mysoulmate.runtime.backends import event_store, local_queue
from mysoulmate.runtime.cli import main
from mysoulmate.runtime.worker import drain_once

SECRET_PAYLOAD = '{"type":"track","userId":"u","password":"hunter2"}'


def test_a_poison_message_reaches_the_dead_letters_with_its_reason(
    capsys: pytest.CaptureFixture[str],
) -> None:
    queue = local_queue()
    queue.visibility_timeout = 0.0
    queue.send(SECRET_PAYLOAD)
    for _ in range(queue.max_receive_count + 1):
        drain_once(queue, event_store(), 10)
    assert queue.depth() == (0, 1)
    (letter,) = queue.dead_letters()
    assert letter.receive_count == queue.max_receive_count
    assert letter.reason.startswith("record ")
    assert "not a valid analytics message" in letter.reason

    assert main(["dlq", "list"]) == 0
    listed = capsys.readouterr().out
    assert letter.id in listed
    assert "not a valid analytics message" in listed
    assert "hunter2" not in listed
    assert main(["dlq", "list", "--json"]) == 0
    (line,) = capsys.readouterr().out.strip().splitlines()
    assert json.loads(line)["receives"] == queue.max_receive_count


def test_dead_lettering_is_logged_without_the_payload(caplog: pytest.LogCaptureFixture) -> None:
    queue = local_queue()
    queue.visibility_timeout = 0.0
    queue.send(SECRET_PAYLOAD)
    with caplog.at_level(logging.WARNING):
        for _ in range(queue.max_receive_count + 1):
            drain_once(queue, event_store(), 10)
    text = "\n".join(record.getMessage() + str(record.__dict__) for record in caplog.records)
    assert "message dead-lettered" in text
    assert "hunter2" not in text


def test_an_empty_dead_letter_queue_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dlq", "list"]) == 0
    assert capsys.readouterr().out.strip() == "no dead letters"


def test_queues_from_before_reasons_were_kept_still_open(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE messages (id TEXT PRIMARY KEY, body TEXT NOT NULL, sent_at REAL NOT NULL,"
        " visible_at REAL NOT NULL, receive_count INTEGER NOT NULL DEFAULT 0, receipt TEXT);"
        "CREATE TABLE dead_letters (id TEXT PRIMARY KEY, body TEXT NOT NULL, sent_at REAL NOT"
        " NULL, receive_count INTEGER NOT NULL, moved_at REAL NOT NULL);"
        "INSERT INTO dead_letters VALUES ('old', 'x', 1.0, 5, 2.0);"
    )
    conn.commit()
    conn.close()
    (letter,) = LocalQueue(path).dead_letters()
    assert letter.id == "old"
    assert "no failure was recorded" in letter.reason


def test_sqs_dead_letters_are_listed_with_a_diagnosis(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import boto3
    from moto import mock_aws
    from mysoulmate.runtime.backends import reset_backends

    with mock_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        main_url = sqs.create_queue(QueueName="events")["QueueUrl"]
        dlq_url = sqs.create_queue(QueueName="events-dlq")["QueueUrl"]
        sqs.send_message(QueueUrl=dlq_url, MessageBody=SECRET_PAYLOAD)
        valid = {
            "type": "track",
            "messageId": "m-1",
            "userId": "ann",
            "event": "signup",
            "timestamp": "2026-01-31T12:00:00Z",
            "receivedAt": "2026-01-31T12:00:00Z",
        }
        sqs.send_message(QueueUrl=dlq_url, MessageBody=json.dumps(valid))
        monkeypatch.setenv("QUEUE_BACKEND", "sqs")
        monkeypatch.setenv("EVENTS_QUEUE_URL", main_url)
        monkeypatch.setenv("EVENTS_DLQ_URL", dlq_url)
        reset_backends()
        assert main(["dlq", "list"]) == 0
        out = capsys.readouterr().out
        # Peeking leaves them in the DLQ.
        attributes = sqs.get_queue_attributes(
            QueueUrl=dlq_url, AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]
    assert "2 dead letter(s)" in out
    assert "invalid message" in out
    assert "valid track message m-1: storage kept failing" in out
    assert "hunter2" not in out
    assert attributes["ApproximateNumberOfMessages"] == "2"


def test_sqs_listing_needs_the_dlq_url(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from mysoulmate.runtime.backends import reset_backends

    monkeypatch.setenv("QUEUE_BACKEND", "sqs")
    monkeypatch.setenv("EVENTS_QUEUE_URL", "https://sqs.us-east-1.amazonaws.com/1/events")
    reset_backends()
    assert main(["dlq", "list"]) == 2
    assert "EVENTS_DLQ_URL" in capsys.readouterr().err
