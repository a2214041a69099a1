"""DynamoDB storage, the AWS default. Key design: docs/dynamodb.md.

Events are written with TransactWriteItems: each event a Put conditioned on not existing,
together with the daily rollup updates of exactly the events in that transaction
(`dynamodb_rollups`), so a redelivered or re-sent message is stored once and counted once.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from botocore.exceptions import BotoCoreError, ClientError

from mysoulmate.analytics.models import (
    AuditEntry,
    AuditPage,
    EventPage,
    Profile,
    QueuedMessage,
    StoredEvent,
)
from mysoulmate.analytics.ports import (
    ANY_EVENT,
    CountRow,
    ErasureResult,
    EventPoint,
    MessageKey,
    ProfileUpdate,
    RevenueRow,
    StorageUnavailableError,
    StoreResult,
    UserSet,
    UsersRow,
    time_key,
)
from mysoulmate.analytics.rollups import UNKNOWN_PLATFORM
from mysoulmate.storage.dynamodb.rollups import (
    SEEN_SK,
    TRANSACT_LIMIT,
    ChunkPlan,
    UserState,
    build_transaction,
    days_between,
    event_item_bytes,
    first_sk,
    is_rollup_event,
    pack_order,
    parse_state,
    rollup_pk,
    user_shard,
    users_sk,
)
from mysoulmate.storage.paging import decode_cursor, next_page_cursor

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

BATCH_WRITE_LIMIT = 25  # items per BatchWriteItem; moto accepts more, AWS does not
BATCH_GET_LIMIT = 100  # keys per BatchGetItem (AWS)
MAX_WRITE_ATTEMPTS = 8
BACKOFF_BASE_SECONDS = 0.05
BACKOFF_CAP_SECONDS = 2.0
PROFILE_SK = "PROFILE"
BY_USER_TIME = "ByUserTime"
_INDEX_KEYS = ("pk", "sk", "gsi1pk", "gsi1sk")
_CURSOR_KEYS = {*_INDEX_KEYS, "q"}
AUDIT_PK = "AUDIT"
_AUDIT_CURSOR_KEYS = {"pk", "sk", "q"}
# Worth another attempt after a backoff: throttling, contention, transient server errors.
_RETRYABLE_CODES = {
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
    "TransactionConflictException",
    "TransactionInProgressException",
    "InternalServerError",
}
_RETRYABLE_REASONS = {"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"}
_TS_LEN = len("2026-01-31T12:00:00.000000Z")  # time_key() is fixed-width


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


def user_pk(user_id: str) -> str:
    return f"USER#{user_id}"


def event_sk(message_id: str) -> str:
    return f"EVENT#{message_id}"


def backoff_delay(attempt: int) -> float:
    """Exponential backoff with full jitter (AWS Architecture Blog's recommendation)."""
    return random.uniform(0, min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2**attempt))


class DynamoEventStore:
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

    # -- writes -------------------------------------------------------------------------

    def _event_item(self, message: QueuedMessage) -> dict[str, Any]:
        pk = user_pk(message.userId)
        ts = time_key(message.timestamp)
        doc = StoredEvent(
            messageId=message.messageId,
            type=message.type,
            event=message.event,
            properties=message.properties if message.type == "track" else message.traits,
            timestamp=message.timestamp,
            receivedAt=message.receivedAt,
            anonymousId=message.anonymousId,
            platform=message.platform,
            context=message.context,
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
        if self._retention is not None:
            expires = message.timestamp + self._retention
            item["expiresAt"] = {"N": str(int(expires.timestamp()))}
        return item

    def insert_events(self, messages: Sequence[QueuedMessage]) -> StoreResult:
        """Store new events and their rollups in transactions of ≤100 actions (AWS's limit).

        Every event Put is conditioned on the item not existing; a cancelled transaction
        names the events that already existed, which are dropped (duplicates) before the
        rollups are recomputed for the rest. Only a committed transaction counts events.
        """
        unique: dict[MessageKey, QueuedMessage] = {}
        for message in messages:
            unique.setdefault(message.key, message)
        result = StoreResult(duplicates=len(messages) - len(unique))
        pending = sorted(unique.values(), key=pack_order)
        items = {m.key: self._event_item(m) for m in pending}
        sizes = {key: event_item_bytes(item) for key, item in items.items()}
        try:
            states = self._read_states({m.userId for m in pending if is_rollup_event(m)})
        except StorageUnavailableError as exc:
            result.failed = {m.key: str(exc) for m in pending}
            return result
        while pending:
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

        def fail(reason: str) -> list[QueuedMessage]:
            for message in chunk:
                result.failed[message.key] = reason
            return overflow

        for attempt in range(MAX_WRITE_ATTEMPTS):
            if not chunk:
                return overflow
            tx = build_transaction(self._table, [(m, items[m.key]) for m in chunk], states)
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
                    result.duplicates += len(existing)
                    chunk = [m for m in chunk if m.key not in existing]
                    if stale:
                        try:
                            states.update(self._read_states(stale))
                        except StorageUnavailableError as read_error:
                            return fail(str(read_error))
                    chunk, more = _take_chunk(chunk, states, sizes)
                    overflow.extend(more)
                    continue  # progress, not contention: no backoff
                retryable = code in _RETRYABLE_CODES or (
                    code == "TransactionCanceledException"
                    and any(r in _RETRYABLE_REASONS for r in reasons)
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

    def _read_states(self, users: set[str]) -> dict[str, UserState]:
        """The SEEN items of ``users`` (consistent reads, ≤100 keys per BatchGetItem)."""
        states: dict[str, UserState] = {}
        keys = [{"pk": {"S": user_pk(u)}, "sk": {"S": SEEN_SK}} for u in sorted(users)]
        for start in range(0, len(keys), BATCH_GET_LIMIT):
            request: Any = {
                self._table: {
                    "Keys": keys[start : start + BATCH_GET_LIMIT],
                    "ConsistentRead": True,
                    "ProjectionExpression": "pk, #first, #day, #keys",
                    "ExpressionAttributeNames": {"#first": "first", "#day": "day", "#keys": "keys"},
                }
            }
            for attempt in range(MAX_WRITE_ATTEMPTS):
                try:
                    response = self._client.batch_get_item(RequestItems=request)
                except (ClientError, BotoCoreError) as exc:
                    raise StorageUnavailableError(f"dynamodb: {exc}") from exc
                for item in response.get("Responses", {}).get(self._table, []):
                    states[item["pk"]["S"].removeprefix("USER#")] = parse_state(item)
                request = response.get("UnprocessedKeys") or {}
                if not request:
                    break
                if attempt + 1 < MAX_WRITE_ATTEMPTS:
                    self._sleep(backoff_delay(attempt))
            else:
                raise StorageUnavailableError("dynamodb: first-seen reads still unprocessed")
        return states

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

    def _transact_updates(self, actions: list[dict[str, Any]]) -> None:
        """Idempotent conditional updates, ≤100 per transaction; actions whose condition
        fails are dropped (nothing to do), contention is retried after a backoff."""
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
                    code = exc.response["Error"]["Code"]
                    reasons = [
                        r.get("Code", "None") for r in exc.response.get("CancellationReasons", [])
                    ]
                    if "ConditionalCheckFailed" in reasons:
                        todo = [
                            a
                            for a, r in zip(todo, reasons, strict=False)
                            if r != "ConditionalCheckFailed"
                        ]
                        continue
                    if code not in _RETRYABLE_CODES and not (
                        code == "TransactionCanceledException"
                        and any(r in _RETRYABLE_REASONS for r in reasons)
                    ):
                        raise StorageUnavailableError(f"dynamodb: {exc}") from exc
                    if attempt + 1 < MAX_WRITE_ATTEMPTS:
                        self._sleep(backoff_delay(attempt))
            else:
                if todo:
                    raise StorageUnavailableError("dynamodb: updates still conflicting")

    def update_profile(self, user_id: str, update: ProfileUpdate) -> Profile:
        key = {"pk": {"S": user_pk(user_id)}, "sk": {"S": PROFILE_SK}}
        for attempt in range(MAX_WRITE_ATTEMPTS):
            current = self.get_profile(user_id)
            merged = update(current)
            merged.version = (current.version if current else 0) + 1
            # Optimistic concurrency: write only over the version that was merged into.
            expected = str(current.version if current else 0)
            try:
                self._client.put_item(
                    TableName=self._table,
                    Item={
                        **key,
                        "doc": {"S": merged.model_dump_json()},
                        "version": {"N": str(merged.version)},
                    },
                    ConditionExpression="attribute_not_exists(pk) OR version = :expected",
                    ExpressionAttributeValues={":expected": {"N": expected}},
                )
                return merged
            except BotoCoreError as exc:
                raise StorageUnavailableError(f"dynamodb: {exc}") from exc
            except ClientError as exc:
                if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                    raise StorageUnavailableError(f"dynamodb: {exc}") from exc
                if attempt + 1 < MAX_WRITE_ATTEMPTS:
                    self._sleep(backoff_delay(attempt))  # another writer won; merge again
        raise StorageUnavailableError(f"dynamodb: profile {user_id!r} kept changing; gave up")

    # -- reads --------------------------------------------------------------------------

    def get_profile(self, user_id: str) -> Profile | None:
        try:
            response = self._client.get_item(
                TableName=self._table,
                Key={"pk": {"S": user_pk(user_id)}, "sk": {"S": PROFILE_SK}},
                ConsistentRead=True,
            )
        except (ClientError, BotoCoreError) as exc:
            raise StorageUnavailableError(f"dynamodb: {exc}") from exc
        item = response.get("Item")
        if not item:
            return None
        return Profile.model_validate_json(item["doc"]["S"])

    def list_events(
        self,
        user_id: str,
        limit: int,
        cursor: str | None,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        event: str | None = None,
    ) -> EventPage:
        pk = user_pk(user_id)
        bounds = _sk_bounds(start, end)
        if bounds is None:
            return EventPage(events=[])
        scope = _scope(f"{start}|{end}|{event}")
        query: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": BY_USER_TIME,
            "ProjectionExpression": "pk, sk, gsi1pk, gsi1sk, #doc",
            "ExpressionAttributeNames": {"#doc": "doc"},
            "ScanIndexForward": False,
            **_user_time_condition(pk, bounds),
        }
        if event is not None:
            query["FilterExpression"] = "#type = :track AND #event = :event"
            query["ExpressionAttributeNames"] |= {"#type": "type", "#event": "event"}
            query["ExpressionAttributeValues"] |= {":track": {"S": "track"}, ":event": {"S": event}}
        if cursor:
            position = decode_cursor(
                cursor, _CURSOR_KEYS, pinned={"pk": pk, "gsi1pk": pk, "q": scope}
            )
            query["ExclusiveStartKey"] = {k: {"S": position[k]} for k in _INDEX_KEYS}
        # One extra item tells whether another page exists, so the last page has no cursor
        # (as on the SQL backends); a filter may leave a page short, so keep reading.
        items = self._collect(query, limit + 1, filtered=event is not None)
        events = [StoredEvent.model_validate_json(i["doc"]["S"]) for i in items[:limit]]
        next_cursor = next_page_cursor(
            items, limit, lambda last: {**{k: last[k]["S"] for k in _INDEX_KEYS}, "q": scope}
        )
        return EventPage(events=events, next_cursor=next_cursor)

    def _collect(self, query: dict[str, Any], wanted: int, *, filtered: bool) -> list[Any]:
        """Query pages until ``wanted`` items matched or the range is exhausted."""
        items: list[Any] = []
        while len(items) < wanted:
            need = wanted - len(items)
            # Limit counts items read before the filter: read more when filtering.
            query["Limit"] = min(1_000, max(need * 4, 100)) if filtered else need
            try:
                response = self._client.query(**query)
            except (ClientError, BotoCoreError) as exc:
                raise StorageUnavailableError(f"dynamodb: {exc}") from exc
            items.extend(response["Items"])
            if "LastEvaluatedKey" not in response:
                break
            query["ExclusiveStartKey"] = response["LastEvaluatedKey"]
        return items

    def _query_all(self, **query: Any) -> Iterator[dict[str, Any]]:
        """Every item a query matches, page after page."""
        while True:
            try:
                response = self._client.query(**query)
            except (ClientError, BotoCoreError) as exc:
                raise StorageUnavailableError(f"dynamodb: {exc}") from exc
            yield from response["Items"]
            if "LastEvaluatedKey" not in response:
                return
            query["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def _points(self, user_id: str, bounds: tuple[str | None, str | None]) -> list[EventPoint]:
        """The user's track events within index bounds, oldest first (index order is
        (time, messageId) because the time prefix is fixed-width)."""
        query = _user_time_condition(user_id and user_pk(user_id), bounds)
        query["ExpressionAttributeNames"] = {"#type": "type", "#event": "event"}
        query["ExpressionAttributeValues"][":track"] = {"S": "track"}
        points = []
        for item in self._query_all(
            TableName=self._table,
            IndexName=BY_USER_TIME,
            ScanIndexForward=True,
            ProjectionExpression="gsi1sk, #event",
            FilterExpression="#type = :track AND attribute_exists(#event)",
            **query,
        ):
            sk = item["gsi1sk"]["S"]
            points.append(EventPoint(sk[:_TS_LEN], item["event"]["S"], sk[_TS_LEN + 1 :]))
        return points

    def user_event_points(self, user_id: str) -> list[EventPoint]:
        return self._points(user_id, (None, None))

    # -- rollups ------------------------------------------------------------------------

    def _day_items(
        self, start: date, end: date, prefix: str, event: str | None = None
    ) -> Iterator[tuple[date, dict[str, Any]]]:
        """Rollup items of each day in [start, end] whose sort key starts with ``prefix``:
        one Query per day (the day's partition), paginated."""
        for day in days_between(start, end):
            query: dict[str, Any] = {
                "TableName": self._table,
                "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
                "ExpressionAttributeValues": {
                    ":pk": {"S": rollup_pk(day)},
                    ":prefix": {"S": prefix},
                },
            }
            if event is not None:
                query["FilterExpression"] = "#event = :event"
                query["ExpressionAttributeNames"] = {"#event": "event"}
                query["ExpressionAttributeValues"][":event"] = {"S": event}
            for item in self._query_all(**query):
                yield day, item

    def rollup_counts(self, start: date, end: date) -> list[CountRow]:
        totals: Counter[tuple[date, str, str]] = Counter()
        for day, item in self._day_items(start, end, "COUNT#"):
            key = (day, item["platform"]["S"], item["event"]["S"])
            totals[key] += int(item["events"]["N"])
        return [CountRow(*key, events=n) for key, n in sorted(totals.items()) if n]

    def rollup_revenue(self, start: date, end: date) -> list[RevenueRow]:
        totals: dict[tuple[date, str, str], int] = {}
        for day, item in self._day_items(start, end, "REVENUE#"):
            key = (day, item["platform"]["S"], item["currency"]["S"])
            totals[key] = totals.get(key, 0) + int(item["micros"]["N"])
        return [RevenueRow(*key, micros=n) for key, n in sorted(totals.items())]

    def rollup_users(self, start: date, end: date, *, by_event: bool) -> list[UsersRow]:
        sets: dict[tuple[date, str, str], set[str]] = {}
        prefixes = ["ACTIVE#", "USERS#"] if by_event else ["ACTIVE#"]
        for prefix in prefixes:
            for day, item in self._day_items(start, end, prefix):
                members = item.get("users", {}).get("SS")
                if members:  # a set emptied by erasures loses its attribute
                    event = item["event"]["S"] if prefix == "USERS#" else ANY_EVENT
                    sets.setdefault((day, item["platform"]["S"], event), set()).update(members)
        return [UsersRow(*key, users=_user_set(users)) for key, users in sorted(sets.items())]

    def first_seen_users(self, start: date, end: date) -> dict[date, UserSet]:
        days: dict[date, set[str]] = {}
        for day, item in self._day_items(start, end, "FIRST#"):
            members = item.get("users", {}).get("SS")
            if members:
                days.setdefault(day, set()).update(members)
        return {day: _user_set(users) for day, users in sorted(days.items())}

    def empty_user_set(self) -> UserSet:
        return _user_set(())

    def funnel_candidates(
        self,
        first_event: str,
        starts_from: datetime,
        starts_to: datetime,
        until: datetime,
        events: frozenset[str] | None,
    ) -> Iterator[tuple[str, list[EventPoint]]]:
        """No index spans users by time: the day user sets of ``first_event`` name the
        candidates, then each candidate's events (one Query on ByUserTime) decide exactly."""
        first_from, first_to = _utc(starts_from), _utc(starts_to)
        if first_from > first_to:
            return
        candidates: set[str] = set()
        for _, item in self._day_items(
            first_from.date(), first_to.date(), "USERS#", event=first_event
        ):
            candidates.update(item.get("users", {}).get("SS", []))
        lo, to_key, until_key = time_key(first_from), time_key(first_to), _utc_key(until)
        bounds = (lo, max(to_key, until_key) + "$")
        for user_id in sorted(candidates):
            points = self._points(user_id, bounds)
            if not any(p.event == first_event and p.ts <= to_key for p in points):
                continue
            yield (
                user_id,
                [p for p in points if p.ts <= until_key and (events is None or p.event in events)],
            )

    # -- GDPR ---------------------------------------------------------------------------

    def delete_user(self, user_id: str) -> ErasureResult:
        """Read every item of the user (events tell which day sets hold them), take them
        out of those sets, then delete the items. Re-running after a crash redoes it all."""
        pk = user_pk(user_id)
        items = list(
            self._query_all(
                TableName=self._table,
                KeyConditionExpression="pk = :pk",
                ExpressionAttributeValues={":pk": {"S": pk}},
                ProjectionExpression="pk, sk, #type, #event, platform, ts, #first",
                ExpressionAttributeNames={"#type": "type", "#event": "event", "#first": "first"},
                ConsistentRead=True,
            )
        )
        shard = user_shard(user_id)
        set_keys: set[tuple[str, str]] = set()
        events = 0
        for item in items:
            sk = item["sk"]["S"]
            if sk.startswith("EVENT#"):
                events += 1
                if item.get("type", {}).get("S") == "track" and "event" in item:
                    day_pk = rollup_pk(date.fromisoformat(item["ts"]["S"][:10]))
                    platform = item.get("platform", {}).get("S") or UNKNOWN_PLATFORM
                    for name in (item["event"]["S"], ANY_EVENT):
                        set_keys.add((day_pk, users_sk(platform, shard, name)))
            elif sk == SEEN_SK and "first" in item:
                set_keys.add((rollup_pk(date.fromisoformat(item["first"]["S"])), first_sk(shard)))
        self._transact_updates(
            [
                {
                    "Update": {
                        "TableName": self._table,
                        "Key": {"pk": {"S": set_pk}, "sk": {"S": set_sk}},
                        "UpdateExpression": "DELETE #users :u",
                        # Never create an empty item for a set that does not exist.
                        "ConditionExpression": "attribute_exists(pk)",
                        "ExpressionAttributeNames": {"#users": "users"},
                        "ExpressionAttributeValues": {":u": {"SS": [user_id]}},
                    }
                }
                for set_pk, set_sk in sorted(set_keys)
            ]
        )
        self._batch_write(
            [{"DeleteRequest": {"Key": {"pk": i["pk"], "sk": i["sk"]}}} for i in items]
        )
        profile = any(i["sk"]["S"] == PROFILE_SK for i in items)
        return ErasureResult(events=events, profile=profile)

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

    def list_audit(self, limit: int, cursor: str | None, subject: str | None = None) -> AuditPage:
        """Newest first from one partition (sk = time#id), optionally filtered by subject."""
        scope = _scope(subject or "")
        query: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": AUDIT_PK}},
            "ScanIndexForward": False,
        }
        if subject is not None:
            query["FilterExpression"] = "subject = :subject"
            query["ExpressionAttributeValues"][":subject"] = {"S": subject}
        if cursor:
            position = decode_cursor(
                cursor, _AUDIT_CURSOR_KEYS, pinned={"pk": AUDIT_PK, "q": scope}
            )
            query["ExclusiveStartKey"] = {k: {"S": position[k]} for k in ("pk", "sk")}
        items = self._collect(query, limit + 1, filtered=subject is not None)
        entries = [AuditEntry.model_validate_json(i["doc"]["S"]) for i in items[:limit]]
        next_cursor = next_page_cursor(
            items, limit, lambda last: {"pk": AUDIT_PK, "sk": last["sk"]["S"], "q": scope}
        )
        return AuditPage(entries=entries, next_cursor=next_cursor)

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


def _user_set(users: Iterable[str]) -> UserSet:
    """This backend's UserSet is a frozenset of user ids (typeshed's frozenset operators
    are too general for mypy to match the port's Self-typed protocol)."""
    return cast("UserSet", frozenset(users))


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _utc_key(moment: datetime) -> str:
    return time_key(_utc(moment))


def _scope(text: str) -> str:
    """Pins a cursor to the query it came from (another filter's cursor is a 4xx)."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _sk_bounds(
    start: datetime | None, end: datetime | None
) -> tuple[str | None, str | None] | None:
    """ByUserTime sort-key bounds for event times in [start, end]: gsi1sk is
    `<time>#<messageId>` and '$' sorts right after '#'. None when the range is empty."""
    lo = _utc_key(start) if start is not None else None
    hi = _utc_key(end) + "$" if end is not None else None
    if lo is not None and hi is not None and lo > hi:
        return None
    return lo, hi


def _user_time_condition(pk: str, bounds: tuple[str | None, str | None]) -> dict[str, Any]:
    lo, hi = bounds
    values: dict[str, Any] = {":pk": {"S": pk}}
    condition = "gsi1pk = :pk"
    if lo is not None and hi is not None:
        condition += " AND gsi1sk BETWEEN :lo AND :hi"
    elif lo is not None:
        condition += " AND gsi1sk >= :lo"
    elif hi is not None:
        condition += " AND gsi1sk <= :hi"
    if lo is not None:
        values[":lo"] = {"S": lo}
    if hi is not None:
        values[":hi"] = {"S": hi}
    return {"KeyConditionExpression": condition, "ExpressionAttributeValues": values}
