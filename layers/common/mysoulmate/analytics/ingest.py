"""The consumer's record handler: queued messages in, stored exactly once.

Every shape drives this same code: the SQS Lambda through Powertools' BatchProcessor, the
local in-process worker, and the container worker. Records are parsed one by one (a
poison record fails alone) and written in bulk at the end of the batch, so a batch of a
thousand events costs DynamoDB forty calls, not a thousand.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial

from pydantic import ValidationError

from mysoulmate.analytics.models import ANONYMOUS_PREFIX, Profile, QueuedBatch, QueuedMessage
from mysoulmate.analytics.ports import EventStore, MessageKey, ProfileResults, StoreResult
from mysoulmate.analytics.profiles import PROFILE_TYPES, merge_message
from mysoulmate.analytics.rollups import MICROS, revenue_of
from mysoulmate.analytics.sessions import assign_sessions
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
    forwarded: int = 0  # messages handed to the providers' queues


# Hands stored messages to the providers' forward queues; raises if they could not be queued.
Forward = Callable[[list[QueuedMessage]], None]


class IngestBatch:
    """Collects the records of one delivery, then writes them together."""

    def __init__(self, store: EventStore, forward: Forward | None = None) -> None:
        self._store = store
        self._forward = forward
        self._messages: dict[MessageKey, QueuedMessage] = {}
        self._records: dict[MessageKey, list[str]] = defaultdict(list)
        # Keys of redelivered messages as added: a visitor's under the visitor, before any link.
        self._redelivered: set[MessageKey] = set()

    def add(self, record_id: str, body: str, *, delivery: int = 1) -> None:
        """Parse one record; raise PoisonMessageError if it can never be stored.
        ``delivery``: how many times the queue has handed this record out (1 the first time)."""
        try:
            messages = parse_body(body)
        except ValidationError as exc:
            raise PoisonMessageError(
                f"record {record_id} is not a valid analytics message: {_summary(exc)}"
            ) from None
        for message in messages:
            self._messages.setdefault(message.key, message)
            self._records[message.key].append(record_id)
            if delivery > 1:
                self._redelivered.add(message.key)

    def flush(self) -> FlushOutcome:
        """Store everything added; report the record ids whose message was not stored."""
        outcome = FlushOutcome()
        if not self._messages:
            return outcome
        resolved = self._resolved_visitors()
        # Performance measurements are counted into sketches, not stored as events.
        failed: dict[MessageKey, str] = self._record_perf(
            [m for m in resolved if m.type == "perf"], outcome
        )
        messages = self._with_sessions([m for m in resolved if m.type != "perf"])
        result = self._store.insert_events(messages) if messages else StoreResult()
        outcome.stored += result.written
        outcome.duplicates += result.duplicates
        outcome.erased += len(result.erased)
        _count_revenue(m for m in messages if m.key in result.new_keys)
        failed.update(result.failed)
        # One read-merge-write per user and batch, however many identifies they sent, and
        # all users' merges together.
        identifies: dict[str, list[QueuedMessage]] = defaultdict(list)
        for message in messages:
            skip = message.key in failed or message.key in result.erased
            if message.type in PROFILE_TYPES and not skip:
                identifies[message.userId].append(message)
        if identifies:
            self._update_profiles(identifies, failed, outcome)
        self._link_identities(messages, failed, result.erased)
        if self._forward is not None:
            outcome.forwarded = self._forwarded(messages, failed, result.erased)
        for key, reason in failed.items():
            for record_id in self._records[key]:
                outcome.failed_records[record_id] = reason
        self._messages.clear()
        self._records.clear()
        self._redelivered.clear()
        return outcome

    def _update_profiles(
        self,
        identifies: dict[str, list[QueuedMessage]],
        failed: dict[MessageKey, str],
        outcome: FlushOutcome,
    ) -> None:
        """All users' profile merges in one call (DynamoDB: two round trips in all)."""
        updates = {
            user_id: (partial(_merge_all, messages), min(m.receivedAt for m in messages))
            for user_id, messages in identifies.items()
        }
        try:
            results = self._store.update_profiles(updates)
        except Exception as exc:  # noqa: BLE001 - reported per record, retried by the queue
            results = ProfileResults(
                failed={user: f"profile update failed: {exc}" for user in updates}
            )
        for user_id, merged in results.merged.items():
            if merged is None:  # erased since: the traits must not come back
                outcome.erased += len(identifies[user_id])
        for user_id, reason in results.failed.items():
            for message in identifies[user_id]:
                failed[message.key] = reason

    def _record_perf(
        self, perf: list[QueuedMessage], outcome: FlushOutcome
    ) -> dict[MessageKey, str]:
        """Count the batch's perf messages once each; their failures, by message."""
        if not perf:
            return {}
        try:
            result = self._store.record_perf(perf)
        except Exception as exc:  # noqa: BLE001 - reported per record, retried by the queue
            return {m.key: f"perf counters failed: {exc}" for m in perf}
        outcome.stored += result.written
        outcome.duplicates += result.duplicates
        outcome.erased += len(result.erased)
        return dict(result.failed)

    def _resolved_visitors(self) -> list[QueuedMessage]:
        """The batch, with each anonymous visitor already linked to a user stored as that
        user (their records follow); a messageId the user already has is one message.
        Perf messages keep the visitor: their ledger entry (person, messageId) must be the
        same on every delivery, before a link or after it, or a redelivery counts twice."""
        messages = list(self._messages.values())
        visitors = {m.anonymousId for m in messages if _resolvable(m) and m.anonymousId}
        links = self._store.linked_users(visitors) if visitors else {}
        if not links:
            return messages
        resolved: dict[MessageKey, QueuedMessage] = {}
        records: dict[MessageKey, list[str]] = defaultdict(list)
        for message in messages:
            user = links.get(message.anonymousId or "") if _resolvable(message) else None
            moved = message.model_copy(update={"userId": user}) if user else message
            resolved.setdefault(moved.key, moved)
            records[moved.key].extend(self._records[message.key])
        self._records = records
        return list(resolved.values())

    def _forwarded(
        self,
        messages: list[QueuedMessage],
        failed: dict[MessageKey, str],
        erased: set[MessageKey],
    ) -> int:
        """Queue what is stored for the providers: new messages and duplicates alike, since a
        redelivered record may be one whose forwarding failed after its storage. Providers
        deduplicate (Mixpanel by $insert_id, the others through the forwarder's ledger).
        If queueing fails, the records fail and come back: storage is already done."""
        stored = [m for m in messages if m.key not in failed and m.key not in erased]
        if not stored or self._forward is None:
            return 0
        try:
            self._forward(stored)
        except Exception as exc:  # noqa: BLE001 - reported per record, retried by the queue
            for message in stored:
                failed[message.key] = f"forward queue failed: {exc}"
            return 0
        return len(stored)

    def _with_sessions(self, messages: list[QueuedMessage]) -> list[QueuedMessage]:
        """Each event with its session id, continuing the person's stored session."""
        people = {m.userId for m in messages if m.event is not None}
        identified = {m.userId for m in messages if m.type in PROFILE_TYPES}
        marks = self._store.session_marks(people, identified) if people or identified else {}
        return assign_sessions(messages, marks)

    def _link_identities(
        self,
        messages: list[QueuedMessage],
        failed: dict[MessageKey, str],
        erased: set[MessageKey],
    ) -> None:
        """Link anonymous ids to users (identify with both ids, alias), moving the
        visitors' history; then re-check the visitors this batch stored, in case a link was
        made concurrently (the link's move or this re-check sees each stored event), and
        link again for redelivered visitor messages that resolved to their user."""
        asked: dict[tuple[str, str], list[QueuedMessage]] = defaultdict(list)
        stored = [m for m in messages if m.key not in failed and m.key not in erased]
        for message in stored:
            link = _link_of(message)
            if link is not None:
                asked[link].append(message)
        visitors = {m.anonymousId: m for m in stored if _is_visitor(m) and m.anonymousId}
        known = {anonymous_id for anonymous_id, _ in asked} | set(visitors)
        links = self._store.linked_users(known) if known else {}
        # An id linked already needs no new link (the first wins), unless its visitor
        # stored something in this batch: that is moved below.
        wanted = {link: asked[link] for link in asked if link[0] not in links}
        for anonymous_id, user_id in links.items():
            if anonymous_id in visitors:
                wanted.setdefault((anonymous_id, user_id), []).append(visitors[anonymous_id])
        # A redelivered visitor message, stored as its user now: an earlier delivery may have
        # stored it as the visitor, its re-check link failing (a move cut short). Linking
        # again moves that copy (a messageId the user already has stays one event).
        for message in stored if self._redelivered else ():
            if message.anonymousId and not _is_visitor(message):
                as_visitor = (ANONYMOUS_PREFIX + message.anonymousId, message.messageId)
                if as_visitor in self._redelivered:
                    wanted.setdefault((message.anonymousId, message.userId), []).append(message)
        for (anonymous_id, user_id), linking in wanted.items():
            received_at = min(m.receivedAt for m in linking)
            try:
                self._store.link_anonymous(anonymous_id, user_id, received_at)
            except Exception as exc:  # noqa: BLE001 - reported per record, retried by the queue
                for message in linking:
                    failed[message.key] = f"identity link failed: {exc}"


def _resolvable(message: QueuedMessage) -> bool:
    return message.type != "perf" and _is_visitor(message)


def _is_visitor(message: QueuedMessage) -> bool:
    """Stored under its anonymous id (`models.person_key`): no userId was sent."""
    return message.anonymousId is not None and message.userId == ANONYMOUS_PREFIX + (
        message.anonymousId
    )


def _link_of(message: QueuedMessage) -> tuple[str, str] | None:
    """(anonymousId, userId) when the message ties an anonymous id to a user."""
    if message.userId.startswith(ANONYMOUS_PREFIX):
        return None
    if message.type == "identify" and message.anonymousId:
        return (message.anonymousId, message.userId)
    if message.type == "alias" and message.previousId:
        return (message.previousId, message.userId)
    return None


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
