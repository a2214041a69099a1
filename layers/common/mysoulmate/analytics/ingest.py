"""The consumer's record handler: queued messages in, stored exactly once.

Every shape drives this same code: the SQS Lambda through Powertools' BatchProcessor, the
local in-process worker, and the container worker. Records are parsed one by one (a
poison record fails alone) and written in bulk at the end of the batch, so a batch of a
thousand events costs DynamoDB forty calls, not a thousand.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import partial

from pydantic import ValidationError

from mysoulmate.analytics.models import Profile, QueuedBatch, QueuedMessage
from mysoulmate.analytics.ports import EventStore, MessageKey
from mysoulmate.analytics.profiles import PROFILE_TYPES, merge_message
from mysoulmate.analytics.rollups import MICROS, revenue_of
from mysoulmate.observability.signals import count


class PoisonMessageError(ValueError):
    """A record that can never be stored as it is: retried, then dead-lettered."""


def _summary(exc: ValidationError) -> str:
    """How many validation errors, and where and what the first one is (never a value)."""
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first.get("loc", ())) or "message"
    return f"{exc.error_count()} error(s), first: {where}: {first['msg']}"


def parse_body(body: str) -> list[QueuedMessage]:
    """The messages of one queue body: a single message, or a `QueuedBatch` of several.

    Both are our own compact JSON, so the shape shows in the first characters: a batch
    starts ``{"v":1,"batch":``, a message ``{"v":1,"type":``."""
    if '"batch"' in body[:24]:
        return QueuedBatch.model_validate_json(body).batch
    return [QueuedMessage.model_validate_json(body)]


def diagnose(body: str) -> str:
    """Why a dead-lettered message could not be stored, judged from its body alone: the
    validation error of a poison message, or that it is valid and storage failed."""
    try:
        messages = parse_body(body)
    except ValidationError as exc:
        return f"invalid message: {_summary(exc)}"
    if len(messages) != 1:
        return (
            f"valid batch of {len(messages)} messages: storage kept failing; "
            "redrive it once storage is healthy"
        )
    message = messages[0]
    return (
        f"valid {message.type} message {message.messageId}: storage kept failing; "
        "redrive it once storage is healthy"
    )


@dataclass
class FlushOutcome:
    stored: int = 0
    duplicates: int = 0
    erased: int = 0  # dropped: their user was erased after they were received
    failed_records: dict[str, str] = field(default_factory=dict)


class IngestBatch:
    """Collects the records of one delivery, then writes them together."""

    def __init__(self, store: EventStore) -> None:
        self._store = store
        self._messages: dict[MessageKey, QueuedMessage] = {}
        self._records: dict[MessageKey, list[str]] = defaultdict(list)

    def add(self, record_id: str, body: str) -> None:
        """Parse one record; raise PoisonMessageError if it can never be stored."""
        try:
            messages = parse_body(body)
        except ValidationError as exc:
            raise PoisonMessageError(
                f"record {record_id} is not a valid analytics message: {_summary(exc)}"
            ) from None
        for message in messages:
            self._messages.setdefault(message.key, message)
            self._records[message.key].append(record_id)

    def flush(self) -> FlushOutcome:
        """Store everything added; report the record ids whose message was not stored."""
        outcome = FlushOutcome()
        if not self._messages:
            return outcome
        messages = list(self._messages.values())
        result = self._store.insert_events(messages)
        outcome.stored = result.written
        outcome.duplicates = result.duplicates
        outcome.erased = len(result.erased)
        _count_revenue(m for m in messages if m.key in result.new_keys)
        failed = dict(result.failed)
        # One read-merge-write per user and batch, however many identifies they sent.
        identifies: dict[str, list[QueuedMessage]] = defaultdict(list)
        for message in messages:
            skip = message.key in failed or message.key in result.erased
            if message.type in PROFILE_TYPES and not skip:
                identifies[message.userId].append(message)
        for user_id, user_messages in identifies.items():
            earliest = min(m.receivedAt for m in user_messages)
            try:
                merged = self._store.update_profile(
                    user_id, partial(_merge_all, user_messages), received_at=earliest
                )
                if merged is None:  # erased since: the traits must not come back
                    outcome.erased += len(user_messages)
            except Exception as exc:  # noqa: BLE001 - reported per record, retried by the queue
                for message in user_messages:
                    failed[message.key] = f"profile update failed: {exc}"
        for key, reason in failed.items():
            for record_id in self._records[key]:
                outcome.failed_records[record_id] = reason
        self._messages.clear()
        self._records.clear()
        return outcome


def _count_revenue(new_messages: Iterable[QueuedMessage]) -> None:
    """Revenue of the events stored for the first time, per currency: the same delta the
    rollups just added, so a redelivered purchase is never counted twice."""
    by_currency: dict[str, int] = defaultdict(int)
    for message in new_messages:
        # The rollups' own rule (revenue_of), without rebuilding the whole delta.
        if message.type == "track" and "revenue" in message.properties:
            revenue = revenue_of(message.properties)
            if revenue is not None:
                by_currency[revenue[0]] += revenue[1]
    for currency, micros in sorted(by_currency.items()):
        count("Revenue", micros / MICROS, currency=currency)


def _merge_all(messages: list[QueuedMessage], profile: Profile | None) -> Profile:
    merged = profile
    for message in messages:
        merged = merge_message(merged, message)
    assert merged is not None  # messages is never empty
    return merged
