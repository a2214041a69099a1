"""DynamoDB storage, the AWS default. Key design: docs/dynamodb.md.

Events are written with TransactWriteItems: each event a Put conditioned on not existing,
together with the daily rollup updates of exactly the events in that transaction
(`dynamodb_rollups`), so a redelivered or re-sent message is stored once and counted once.

This module keeps the store class and its writes (events, profiles, erasure, audit); the
read-side mixin is in `reads`, identity links in `identity`, the per-user and audit item keys
in `keys`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from mysoulmate.analytics.models import (
    ANONYMOUS_PREFIX,
    AuditEntry,
    Profile,
    QueuedMessage,
    StoredEvent,
)
from mysoulmate.analytics.ports import (
    ErasureResult,
    MessageKey,
    ProfileUpdate,
    StorageUnavailableError,
    StoreResult,
    time_key,
)
from mysoulmate.storage.dynamodb.erasure import (
    ErasurePlan,
    guarded_profile_put,
    plan_erasure,
    seen_reset,
    set_removals,
    split_erased,
    tombstone_update,
)
from mysoulmate.storage.dynamodb.identity import DynamoIdentity
from mysoulmate.storage.dynamodb.keys import (
    AUDIT_PK,
    BY_USER_TIME,
    EVENT_SESSION,
    RECEIVED,
    event_sk,
    user_pk,
)
from mysoulmate.storage.dynamodb.perf import DynamoPerf
from mysoulmate.storage.dynamodb.profiles import DynamoProfiles, profile_put
from mysoulmate.storage.dynamodb.reads import _utc_key
from mysoulmate.storage.dynamodb.retry import BACKOFF_BASE_SECONDS as BACKOFF_BASE_SECONDS
from mysoulmate.storage.dynamodb.retry import BACKOFF_CAP_SECONDS as BACKOFF_CAP_SECONDS
from mysoulmate.storage.dynamodb.retry import (
    MAX_WRITE_ATTEMPTS,
    RETRYABLE_CODES,
    RETRYABLE_REASONS,
    backoff_delay,
    cancellation_reasons,
    is_retryable,
)
from mysoulmate.storage.dynamodb.rollups import (
    TRANSACT_LIMIT,
    ChunkPlan,
    UserState,
    build_transaction,
    event_item_bytes,
    pack_order,
)
from mysoulmate.storage.dynamodb.set_spill import spill
from mysoulmate.storage.dynamodb.states import SEEN_NAMES, DynamoUserStates

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

BATCH_WRITE_LIMIT = 25  # items per BatchWriteItem; moto accepts more, AWS does not
# How often an erasure moves its tombstone up to a later receipt it found and reads again;
# each move needs a new write of the person committed during the previous read.
MAX_TOMBSTONE_MOVES = 5


def table_schema() -> dict[str, Any]:
    """The keys and index this adapter relies on, as CreateTable arguments.

    template.yaml declares the same table (a test keeps them equal); tests, benchmarks and
    local emulators create it from here.
    """
    return {
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [
            {"AttributeName": name, "AttributeType": "S"}
            for name in ("pk", "sk", "gsi1pk", "gsi1sk")
        ],
        "KeySchema": [
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        "GlobalSecondaryIndexes": [
            {
                "IndexName": BY_USER_TIME,
                "KeySchema": [
                    {"AttributeName": "gsi1pk", "KeyType": "HASH"},
                    {"AttributeName": "gsi1sk", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
    }


class DynamoEventStore(DynamoUserStates, DynamoIdentity, DynamoPerf, DynamoProfiles):
    def __init__(
        self,
        table: str,
        client: DynamoDBClient,
        *,
        retention_days: int = 0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._table = table
        self._client = client
        self._retention = timedelta(days=retention_days) if retention_days else None
        self._sleep = sleep
        self._prefetched = threading.local()  # see `DynamoUserStates.session_marks`

    # -- writes -------------------------------------------------------------------------

    def _event_item(self, message: QueuedMessage) -> dict[str, Any]:
        pk = user_pk(message.userId)
        ts = time_key(message.timestamp)
        doc = StoredEvent(
            messageId=message.messageId,
            type=message.type,
            event=message.event,
            properties=message.stored_properties(),
            timestamp=message.timestamp,
            receivedAt=message.receivedAt,
            anonymousId=message.anonymousId,
            platform=message.platform,
            context=message.context,
            sessionId=message.sessionId,
        ).model_dump_json()
        item: dict[str, Any] = {
            "pk": {"S": pk},
            "sk": {"S": event_sk(message.messageId)},
            "gsi1pk": {"S": pk},
            "gsi1sk": {"S": f"{ts}#{message.messageId}"},
            "type": {"S": message.type},
            "ts": {"S": ts},
            "doc": {"S": doc},
        }
        if message.event is not None:
            item["event"] = {"S": message.event}
        if message.platform is not None:
            item["platform"] = {"S": message.platform}
        if message.sessionId is not None:
            item[EVENT_SESSION] = {"S": message.sessionId}
        if self._retention is not None:
            expires = message.timestamp + self._retention
            item["expiresAt"] = {"N": str(int(expires.timestamp()))}
        return item

    def insert_events(self, messages: Sequence[QueuedMessage]) -> StoreResult:
        """Store new events and their rollups in transactions of ≤100 actions (AWS's limit).

        Every event Put is conditioned on the item not existing; a cancelled transaction
        names the events that already existed, which are dropped (duplicates) before the
        rollups are recomputed for the rest. Only a committed transaction counts events.
        Messages of erased users (SEEN's tombstone) are dropped up front, and every
        transaction re-checks each of its users' tombstones (see `dynamodb.erasure`).
        """
        unique: dict[MessageKey, QueuedMessage] = {}
        for message in messages:
            unique.setdefault(message.key, message)
        result = StoreResult(duplicates=len(messages) - len(unique))
        pending = sorted(unique.values(), key=pack_order)
        try:
            # Every user's SEEN item: rollup state and tombstone in the same BatchGetItem.
            states = self._initial_states({m.userId for m in pending})
        except StorageUnavailableError as exc:
            result.failed = {m.key: str(exc) for m in pending}
            return result
        items = {m.key: self._event_item(m) for m in pending}
        sizes = {key: event_item_bytes(item) for key, item in items.items()}
        while pending:
            # Drop what a tombstone covers before planning (states are re-read after a
            # cancelled transaction), rather than have the transaction cancelled for it.
            pending, erased = split_erased(pending, states)
            result.erased |= erased
            chunk, pending = _take_chunk(pending, states, sizes)
            overflow = self._commit_chunk(chunk, states, items, sizes, result)
            pending = overflow + pending
        return result

    def _commit_chunk(
        self,
        chunk: list[QueuedMessage],
        states: dict[str, UserState],
        items: Mapping[MessageKey, dict[str, Any]],
        sizes: Mapping[MessageKey, int],
        result: StoreResult,
    ) -> list[QueuedMessage]:
        """Write one chunk (retrying), record the outcome; return events it could not fit
        after a rebuild (fresh first-seen states can need more actions)."""
        overflow: list[QueuedMessage] = []
        spilled: set[tuple[str, str]] = set()  # FIRST# sets found spilled

        def fail(reason: str) -> list[QueuedMessage]:
            for message in chunk:
                result.failed[message.key] = reason
            return overflow

        for attempt in range(MAX_WRITE_ATTEMPTS):
            if not chunk:
                return overflow
            tx = build_transaction(
                self._table, [(m, items[m.key]) for m in chunk], states, spilled_sets=spilled
            )
            try:
                self._client.transact_write_items(TransactItems=tx.actions)  # type: ignore[arg-type]
            except BotoCoreError as exc:
                # Outcome unknown: the redelivery finds committed events as duplicates.
                return fail(f"dynamodb: {exc}")
            except ClientError as exc:
                code = exc.response["Error"]["Code"]
                reasons = [
                    r.get("Code", "None") for r in exc.response.get("CancellationReasons", [])
                ]
                failed_conditions = [
                    tx.roles[i]
                    for i, reason in enumerate(reasons)
                    if reason == "ConditionalCheckFailed" and i < len(tx.roles)
                ]
                if code == "TransactionCanceledException" and failed_conditions:
                    existing = {r.message.key for r in failed_conditions if r.message}
                    stale = {r.user_id for r in failed_conditions if r.kind == "seen" and r.user_id}
                    full = {r.key for r in failed_conditions if r.kind == "set" and r.key}
                    spilled |= {r.key for r in failed_conditions if r.kind == "spilled" and r.key}
                    result.duplicates += len(existing)
                    chunk = [m for m in chunk if m.key not in existing]
                    try:
                        for key in sorted(full):  # make room, then plan again
                            spill(self._client, self._table, key, self._sleep)
                    except StorageUnavailableError as spill_error:
                        return fail(str(spill_error))
                    if stale:
                        try:
                            states.update(self._read_states(stale))
                        except StorageUnavailableError as read_error:
                            return fail(str(read_error))
                        # An erasure landed since the states were read: drop what it covers.
                        chunk, erased = split_erased(chunk, states)
                        result.erased |= erased
                    chunk, more = _take_chunk(chunk, states, sizes)
                    overflow.extend(more)
                    continue  # progress, not contention: no backoff
                retryable = code in RETRYABLE_CODES or (
                    code == "TransactionCanceledException"
                    and any(r in RETRYABLE_REASONS for r in reasons)
                )
                if not retryable:
                    return fail(f"dynamodb: {exc}")
                if attempt + 1 < MAX_WRITE_ATTEMPTS:
                    self._sleep(backoff_delay(attempt))
                continue
            result.written += len(chunk)
            result.new_keys.update(m.key for m in chunk)
            states.update(tx.new_states)
            return overflow
        return fail("dynamodb: still conflicting or throttled after retries") if chunk else overflow

    def _batch_write(self, requests: list[Any]) -> None:
        """Run write requests in BatchWriteItem calls of ≤25, retrying UnprocessedItems."""
        for start in range(0, len(requests), BATCH_WRITE_LIMIT):
            todo = requests[start : start + BATCH_WRITE_LIMIT]
            for attempt in range(MAX_WRITE_ATTEMPTS):
                try:
                    response = self._client.batch_write_item(RequestItems={self._table: todo})
                except (ClientError, BotoCoreError) as exc:
                    raise StorageUnavailableError(f"dynamodb: {exc}") from exc
                todo = list(response.get("UnprocessedItems", {}).get(self._table, []))
                if not todo:
                    break
                if attempt + 1 < MAX_WRITE_ATTEMPTS:
                    self._sleep(backoff_delay(attempt))
            else:
                raise StorageUnavailableError("dynamodb: writes still unprocessed after retries")

    def _transact_updates(self, actions: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Idempotent conditional updates, ≤100 per transaction; actions whose condition
        fails are dropped (nothing to do) and returned, contention is retried after a
        backoff."""
        dropped: list[dict[str, Any]] = []
        for start in range(0, len(actions), TRANSACT_LIMIT):
            todo = actions[start : start + TRANSACT_LIMIT]
            for attempt in range(MAX_WRITE_ATTEMPTS):
                if not todo:
                    break
                try:
                    self._client.transact_write_items(TransactItems=todo)  # type: ignore[arg-type]
                    break
                except BotoCoreError as exc:
                    raise StorageUnavailableError(f"dynamodb: {exc}") from exc
                except ClientError as exc:
                    reasons = cancellation_reasons(exc)
                    if "ConditionalCheckFailed" in reasons:
                        outcomes = list(zip(todo, reasons, strict=False))
                        dropped += [a for a, r in outcomes if r == "ConditionalCheckFailed"]
                        todo = [a for a, r in outcomes if r != "ConditionalCheckFailed"]
                        continue
                    if not is_retryable(exc):
                        raise StorageUnavailableError(f"dynamodb: {exc}") from exc
                    if attempt + 1 < MAX_WRITE_ATTEMPTS:
                        self._sleep(backoff_delay(attempt))
            else:
                if todo:
                    raise StorageUnavailableError("dynamodb: updates still conflicting")
        return dropped

    def update_profile(
        self, user_id: str, update: ProfileUpdate, *, received_at: datetime | None = None
    ) -> Profile | None:
        for attempt in range(MAX_WRITE_ATTEMPTS):
            current = self.get_profile(user_id)
            merged = update(current)
            put = profile_put(user_id, current, merged)
            try:
                if received_at is None:
                    self._client.put_item(TableName=self._table, **put)
                else:
                    # With the tombstone check in the same transaction: an erasure is
                    # either seen here or, coming later, deletes what this writes.
                    received = _utc_key(received_at)
                    actions = guarded_profile_put(self._table, put, user_id, received)
                    self._client.transact_write_items(TransactItems=actions)  # type: ignore[arg-type]
                return merged
            except BotoCoreError as exc:
                raise StorageUnavailableError(f"dynamodb: {exc}") from exc
            except ClientError as exc:
                code = exc.response["Error"]["Code"]
                reasons = [
                    r.get("Code", "None") for r in exc.response.get("CancellationReasons", [])
                ]
                if reasons[1:2] == ["ConditionalCheckFailed"]:
                    return None  # erased at or after received_at: the traits stay gone
                conflict = code == "ConditionalCheckFailedException" or (
                    reasons[:1] == ["ConditionalCheckFailed"]
                )
                retryable = code in RETRYABLE_CODES or any(r in RETRYABLE_REASONS for r in reasons)
                if not (conflict or retryable):
                    raise StorageUnavailableError(f"dynamodb: {exc}") from exc
                if attempt + 1 < MAX_WRITE_ATTEMPTS:
                    self._sleep(backoff_delay(attempt))  # another writer won; merge again
        raise StorageUnavailableError(f"dynamodb: profile {user_id!r} kept changing; gave up")

    # -- GDPR ---------------------------------------------------------------------------

    def delete_user(self, user_id: str, erased_at: datetime) -> ErasureResult:
        """Record the tombstone first (so no write racing us can add data received before
        it, see `dynamodb.erasure`), then read every item of the user (events tell which
        day sets hold them), take them out of those sets and delete the items, SEEN's
        tombstone excepted. The anonymous ids linked to the user are forgotten before the
        user's LINKED# items go: each visitor gets a tombstone too, what a move cut short
        left under them is erased, then the LINK# item. Re-running after a crash redoes it
        all."""
        # Erasure only: the consumer builds this store at every cold start without `moves`.
        from mysoulmate.storage.dynamodb.moves import link_deletions

        plan = self._tombstone_and_plan(user_id, _utc_key(erased_at))
        events, profile = plan.events, plan.profile
        for anonymous_id in plan.links:
            # The visitor's own tombstone first, as the user's: a message of theirs received
            # before the erasure and still queued is dropped, not stored as the visitor.
            left = self._tombstone_and_plan(ANONYMOUS_PREFIX + anonymous_id, _utc_key(erased_at))
            self._erase(ANONYMOUS_PREFIX + anonymous_id, left)
            events, profile = events + left.events, profile or left.profile
        self._transact_updates(link_deletions(self._table, user_id, plan.links))
        self._erase(user_id, plan)
        return ErasureResult(events=events, profile=profile)

    def _tombstone_and_plan(self, person: str, erased_key: str) -> ErasurePlan:
        """Record the tombstone, then read what to erase. When an event received after it is
        found (`ErasurePlan.found_later`), the tombstone moves up to that receipt and the items
        are read again: a write received at or before the new time may have committed
        between the read and the move, and none can after it."""
        self._record_tombstone(person, erased_key)
        plan = self._plan_erasure(person)
        for _ in range(MAX_TOMBSTONE_MOVES):
            if not plan.found_later:
                break
            self._record_tombstone(person, plan.latest)
            plan = self._plan_erasure(person)
        return plan

    def _plan_erasure(self, user_id: str) -> ErasurePlan:
        return plan_erasure(
            user_id,
            self._query_all(
                TableName=self._table,
                KeyConditionExpression="pk = :pk",
                ExpressionAttributeValues={":pk": {"S": user_pk(user_id)}},
                ProjectionExpression=", ".join(
                    [
                        *("pk", "sk", "#type", "#event", "platform", "ts", "#doc", "#received"),
                        *SEEN_NAMES,
                    ]
                ),
                ExpressionAttributeNames={
                    "#type": "type",
                    "#event": "event",
                    "#doc": "doc",
                    "#received": RECEIVED,
                    **SEEN_NAMES,
                },
                ConsistentRead=True,
            ),
        )

    def _erase(self, user_id: str, plan: ErasurePlan) -> None:
        failed = self._transact_updates(set_removals(self._table, user_id, plan.set_keys))
        # A set that has spilled (or does not exist) failed the first guess: try once more.
        again = {(a["Update"]["Key"]["pk"]["S"], a["Update"]["Key"]["sk"]["S"]) for a in failed}
        self._transact_updates(set_removals(self._table, user_id, again, spilled=True))
        self._batch_write([{"DeleteRequest": {"Key": key}} for key in plan.deletes])
        if plan.seen:
            self._update_item(seen_reset(self._table, user_id))

    def _record_tombstone(self, user_id: str, erased_key: str) -> None:
        try:
            self._update_item(tombstone_update(self._table, user_id, erased_key))
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise StorageUnavailableError(f"dynamodb: {exc}") from exc
            # A later erasure is already recorded; it covers this one.

    def _update_item(self, arguments: dict[str, Any]) -> None:
        """UpdateItem, retried on contention (a consumer's transaction on the same item);
        a failed condition is raised for the caller to judge."""
        for attempt in range(MAX_WRITE_ATTEMPTS):
            try:
                self._client.update_item(**arguments)
                return
            except BotoCoreError as exc:
                raise StorageUnavailableError(f"dynamodb: {exc}") from exc
            except ClientError as exc:
                code = exc.response["Error"]["Code"]
                if code == "ConditionalCheckFailedException":
                    raise
                if code not in RETRYABLE_CODES:
                    raise StorageUnavailableError(f"dynamodb: {exc}") from exc
                if attempt + 1 < MAX_WRITE_ATTEMPTS:
                    self._sleep(backoff_delay(attempt))
        raise StorageUnavailableError("dynamodb: update still conflicting after retries")

    def append_audit(self, entry: AuditEntry) -> None:
        try:
            self._client.put_item(
                TableName=self._table,
                Item={
                    "pk": {"S": AUDIT_PK},
                    "sk": {"S": f"{_utc_key(entry.at)}#{entry.id}"},
                    "subject": {"S": entry.subject},
                    "doc": {"S": entry.model_dump_json()},
                },
            )
        except (ClientError, BotoCoreError) as exc:
            raise StorageUnavailableError(f"dynamodb: {exc}") from exc

    def ping(self) -> None:
        try:
            self._client.describe_table(TableName=self._table)
        except (ClientError, BotoCoreError) as exc:
            raise StorageUnavailableError(f"dynamodb: {exc}") from exc


def _take_chunk(
    pending: list[QueuedMessage], states: Mapping[str, UserState], sizes: Mapping[MessageKey, int]
) -> tuple[list[QueuedMessage], list[QueuedMessage]]:
    """First fit: the events (in order) that fit one transaction, and the rest."""
    plan = ChunkPlan(states)
    rest: list[QueuedMessage] = []
    for message in pending:
        if plan.is_full() or not plan.try_add(message, sizes[message.key]):
            rest.append(message)
    return plan.events, rest
