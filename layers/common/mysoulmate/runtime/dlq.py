"""`mysoulmate dlq list | redrive`: the messages the consumer gave up on, why, and moving them
back once the cause is fixed.

One dead-letter queue per `QUEUE_BACKEND`: the local queue's dead-letter table, the SQS
events DLQ (`EVENTS_DLQ_URL`, redriven to `EVENTS_QUEUE_URL`), or RabbitMQ's
``<RABBITMQ_QUEUE>-dlq`` (redriven to ``<RABBITMQ_QUEUE>``).

The local queue keeps the reason the worker recorded with each failure. SQS and RabbitMQ
keep none, so each body is diagnosed again (`analytics.ingest.diagnose`): validation is
deterministic, and a valid message in the DLQ means storage failed every time it was
received. Payloads are never printed: only ids, times, receive counts and reasons.

Redrive moves one message at a time, at least once and never lost: it is sent to the
events queue and only then removed from the DLQ (the local queue does both in one
transaction). Stopping between two messages (`redrive`'s ``stop``) leaves every message in
one queue or the other; stopping in the middle of one leaves it in both at worst, which the
idempotent write path absorbs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from mysoulmate.analytics.ingest import diagnose
from mysoulmate.core.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

    from mysoulmate.queue.local import LocalQueue
    from mysoulmate.queue.rabbitmq_dlq import RabbitDeadLetters

SQS_RECEIVE_LIMIT = 10  # messages per ReceiveMessage (AWS)
SQS_REDRIVE_VISIBILITY_SECONDS = 120  # a taken message's hold while it is moved
SQS_ATTRIBUTE_TYPES = ("String", "Number", "Binary")


class DeadLetterConfigError(ValueError):
    """The settings name no dead-letter queue for this backend."""


@dataclass(frozen=True)
class DeadLetterRow:
    id: str
    sent_at: datetime | None
    receives: int | None
    reason: str
    dead_lettered_at: datetime | None = None


class DeadLetters(Protocol):
    """One backend's dead-letter queue. `take` holds messages for this caller until each is
    `move`d back to the events queue or `release`d (left a dead letter)."""

    @property
    def where(self) -> str: ...

    @property
    def target(self) -> str: ...

    def depth(self) -> int | None: ...

    def peek(self, limit: int) -> list[DeadLetterRow]: ...

    def take(self, limit: int) -> Sequence[Any]: ...

    def move(self, taken: Any) -> bool: ...

    def release(self, taken: Sequence[Any]) -> None: ...

    def close(self) -> None: ...


def open_dead_letters(settings: Settings) -> DeadLetters:
    """The dead-letter queue of the configured queue backend."""
    if settings.queue_backend == "local":
        from mysoulmate.runtime.backends import local_queue

        return LocalDeadLetters(local_queue())
    if settings.queue_backend == "rabbitmq":
        from mysoulmate.queue.rabbitmq_dlq import RabbitDeadLetters

        return BrokerDeadLetters(
            RabbitDeadLetters(settings.rabbitmq_url, queue=settings.rabbitmq_queue)
        )
    if not settings.events_dlq_url:
        raise DeadLetterConfigError("EVENTS_DLQ_URL is not set: it names the SQS dead-letter queue")
    from mysoulmate.storage.aws import aws_client

    return SqsDeadLetters(settings.events_dlq_url, settings.events_queue_url, aws_client("sqs"))


def dead_letters(settings: Settings, limit: int) -> list[DeadLetterRow]:
    """Up to ``limit`` dead letters of the configured backend, left where they are."""
    queue = open_dead_letters(settings)
    try:
        return queue.peek(limit)
    finally:
        queue.close()


@dataclass
class RedriveOutcome:
    moved: int = 0
    stopped: bool = False  # ``stop`` said so before the DLQ was empty or the limit reached


def redrive(
    queue: DeadLetters,
    limit: int,
    *,
    stop: Callable[[], bool] = lambda: False,
    on_moved: Callable[[], None] = lambda: None,
) -> RedriveOutcome:
    """Move up to ``limit`` dead letters back to the events queue, one at a time; ``stop``
    is asked before each message, ``on_moved`` told after each."""
    outcome = RedriveOutcome()
    while outcome.moved < limit:
        batch = list(queue.take(min(SQS_RECEIVE_LIMIT, limit - outcome.moved)))
        if not batch:
            break
        for index, taken in enumerate(batch):
            if stop():
                queue.release(batch[index:])
                outcome.stopped = True
                return outcome
            try:
                moved = queue.move(taken)
            except BaseException:
                queue.release(batch[index + 1 :])
                raise
            if moved:
                outcome.moved += 1
                on_moved()
    return outcome


# -- the local queue -----------------------------------------------------------------------


class LocalDeadLetters:
    def __init__(self, queue: LocalQueue) -> None:
        self._queue = queue

    @property
    def where(self) -> str:
        return "the local queue's dead-letter table"

    @property
    def target(self) -> str:
        return "the local queue"

    def depth(self) -> int:
        return self._queue.depth()[1]

    def peek(self, limit: int) -> list[DeadLetterRow]:
        return [
            DeadLetterRow(
                letter.id,
                datetime.fromtimestamp(letter.sent_at, UTC),
                letter.receive_count,
                letter.reason,
                datetime.fromtimestamp(letter.moved_at, UTC),
            )
            for letter in self._queue.dead_letters(limit)
        ]

    def take(self, limit: int) -> list[str]:
        return [letter.id for letter in self._queue.dead_letters(limit)]

    def move(self, taken: Any) -> bool:
        return self._queue.redrive(str(taken))

    def release(self, taken: Sequence[Any]) -> None:
        """Nothing to give back: ids are only read until moved."""

    def close(self) -> None:
        """The queue is the process's (`runtime.backends.local_queue`)."""


# -- RabbitMQ ------------------------------------------------------------------------------


class BrokerDeadLetters:
    def __init__(self, queue: RabbitDeadLetters) -> None:
        self._queue = queue

    @property
    def where(self) -> str:
        return self._queue.where

    @property
    def target(self) -> str:
        return self._queue.target

    def depth(self) -> int:
        return self._queue.depth()

    def peek(self, limit: int) -> list[DeadLetterRow]:
        return [
            DeadLetterRow(
                letter.id,
                None,  # the producer sets no timestamp
                letter.deliveries,
                f"{letter.why}; {diagnose(letter.body)}",
                letter.dead_lettered_at,
            )
            for letter in self._queue.peek(limit)
        ]

    def take(self, limit: int) -> Sequence[Any]:
        return self._queue.take(limit)

    def move(self, taken: Any) -> bool:
        self._queue.move(taken)
        return True

    def release(self, taken: Sequence[Any]) -> None:
        if taken:
            self._queue.release_all()

    def close(self) -> None:
        self._queue.close()


# -- SQS -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _SqsMessage:
    receipt: str
    body: str
    attributes: dict[str, Any]


class SqsDeadLetters:
    def __init__(self, dlq_url: str, queue_url: str, sqs: SQSClient) -> None:
        self._url = dlq_url
        self._target = queue_url
        self._sqs = sqs

    @property
    def where(self) -> str:
        return f"SQS {self._url.rsplit('/', 1)[-1]}"

    @property
    def target(self) -> str:
        return f"SQS {self._target.rsplit('/', 1)[-1]}" if self._target else "?"

    def depth(self) -> int:
        attributes = self._sqs.get_queue_attributes(
            QueueUrl=self._url, AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]
        return int(attributes.get("ApproximateNumberOfMessages", "0"))

    def peek(self, limit: int) -> list[DeadLetterRow]:
        """Received with a zero visibility timeout, so the messages stay in the DLQ."""
        rows: dict[str, DeadLetterRow] = {}
        while len(rows) < limit:
            response = self._sqs.receive_message(
                QueueUrl=self._url,
                MaxNumberOfMessages=min(SQS_RECEIVE_LIMIT, limit - len(rows)),
                VisibilityTimeout=0,
                WaitTimeSeconds=0,
                MessageSystemAttributeNames=["SentTimestamp", "ApproximateReceiveCount"],
            )
            fresh = [m for m in response.get("Messages", []) if m["MessageId"] not in rows]
            if not fresh:
                break
            for message in fresh:
                attributes = message.get("Attributes", {})
                sent = attributes.get("SentTimestamp")
                rows[message["MessageId"]] = DeadLetterRow(
                    message["MessageId"],
                    datetime.fromtimestamp(int(sent) / 1000, UTC) if sent else None,
                    int(attributes.get("ApproximateReceiveCount", "0")),
                    diagnose(message["Body"]),
                )
        return list(rows.values())

    def take(self, limit: int) -> list[_SqsMessage]:
        if not self._target:
            raise DeadLetterConfigError("EVENTS_QUEUE_URL is not set: redrive sends there")
        response = self._sqs.receive_message(
            QueueUrl=self._url,
            MaxNumberOfMessages=min(SQS_RECEIVE_LIMIT, limit),
            VisibilityTimeout=SQS_REDRIVE_VISIBILITY_SECONDS,
            WaitTimeSeconds=1,  # a long poll asks every server: an empty answer means empty
            MessageAttributeNames=["All"],
        )
        return [
            _SqsMessage(
                message["ReceiptHandle"],
                message["Body"],
                {
                    name: value
                    for name, value in message.get("MessageAttributes", {}).items()
                    if value.get("DataType", "").split(".")[0] in SQS_ATTRIBUTE_TYPES
                },
            )
            for message in response.get("Messages", [])
        ]

    def move(self, taken: Any) -> bool:
        message: _SqsMessage = taken
        if message.attributes:
            self._sqs.send_message(
                QueueUrl=self._target,
                MessageBody=message.body,
                MessageAttributes=message.attributes,
            )
        else:
            self._sqs.send_message(QueueUrl=self._target, MessageBody=message.body)
        self._sqs.delete_message(QueueUrl=self._url, ReceiptHandle=message.receipt)
        return True

    def release(self, taken: Sequence[Any]) -> None:
        """Visible again now rather than when the hold expires."""
        for message in taken:
            self._sqs.change_message_visibility(
                QueueUrl=self._url, ReceiptHandle=message.receipt, VisibilityTimeout=0
            )

    def close(self) -> None:
        """The client is shared (`storage.aws.aws_client`)."""
