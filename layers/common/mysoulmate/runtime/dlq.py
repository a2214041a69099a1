"""`mysoulmate dlq list`: the messages the consumer gave up on, and why.

The local queue keeps the reason the worker recorded with each failure. SQS keeps none, so
each body is diagnosed again (`analytics.ingest.diagnose`): validation is deterministic,
and a valid message in the DLQ means storage failed every time it was received. Payloads
are never printed: only ids, times, receive counts and reasons.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from mysoulmate.analytics.ingest import diagnose
from mysoulmate.core.settings import Settings

SQS_RECEIVE_LIMIT = 10  # messages per ReceiveMessage (AWS)


@dataclass(frozen=True)
class DeadLetterRow:
    id: str
    sent_at: datetime | None
    receives: int
    reason: str


def dead_letters(settings: Settings, limit: int) -> list[DeadLetterRow]:
    if settings.queue_backend == "local":
        from mysoulmate.runtime.backends import local_queue

        return [
            DeadLetterRow(
                letter.id,
                datetime.fromtimestamp(letter.sent_at, UTC),
                letter.receive_count,
                letter.reason,
            )
            for letter in local_queue().dead_letters(limit)
        ]
    if not settings.events_dlq_url:
        raise ValueError("EVENTS_DLQ_URL is not set: it names the SQS dead-letter queue")
    return _sqs_dead_letters(settings.events_dlq_url, limit)


def _sqs_dead_letters(url: str, limit: int) -> list[DeadLetterRow]:
    """Peek: received with a zero visibility timeout, so the messages stay in the DLQ."""
    from mysoulmate.storage.aws import aws_client

    sqs = aws_client("sqs")
    rows: dict[str, DeadLetterRow] = {}
    while len(rows) < limit:
        response = sqs.receive_message(
            QueueUrl=url,
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
