"""DynamoDB storage, the AWS default. Key design: docs/dynamodb.md.

Events are written with BatchWriteItem (25 items per call, AWS's limit) keyed by
(userId, messageId), so a redelivered message overwrites itself instead of adding a row.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from mysoulmate.analytics.models import EventPage, Profile, QueuedMessage, StoredEvent
from mysoulmate.storage.base import (
    MessageKey,
    ProfileUpdate,
    StorageUnavailableError,
    StoreResult,
    decode_cursor,
    encode_cursor,
    time_key,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

BATCH_WRITE_LIMIT = 25  # items per BatchWriteItem; moto accepts more, AWS does not
MAX_WRITE_ATTEMPTS = 8
BACKOFF_BASE_SECONDS = 0.05
BACKOFF_CAP_SECONDS = 2.0
PROFILE_SK = "PROFILE"
BY_USER_TIME = "ByUserTime"
_CURSOR_KEYS = {"pk", "sk", "gsi1pk", "gsi1sk"}


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
        # BatchWriteItem rejects a request naming one key twice: collapse duplicates first.
        unique: dict[MessageKey, QueuedMessage] = {}
        for message in messages:
            unique.setdefault(message.key, message)
        result = StoreResult(duplicates=len(messages) - len(unique))
        pending = list(unique.values())
        for start in range(0, len(pending), BATCH_WRITE_LIMIT):
            chunk = pending[start : start + BATCH_WRITE_LIMIT]
            failed = self._write_chunk([self._event_item(m) for m in chunk])
            for message in chunk:
                key_pair = (user_pk(message.userId), event_sk(message.messageId))
                if key_pair in failed:
                    result.failed[message.key] = failed[key_pair]
                else:
                    result.written += 1
        return result

    def _write_chunk(self, items: list[dict[str, Any]]) -> dict[tuple[str, str], str]:
        """Write ≤25 items, retrying UnprocessedItems; return the keys never written."""
        requests: list[Any] = [{"PutRequest": {"Item": item}} for item in items]
        for attempt in range(MAX_WRITE_ATTEMPTS):
            try:
                response = self._client.batch_write_item(RequestItems={self._table: requests})
            except (ClientError, BotoCoreError) as exc:
                return {_key_of(r): f"dynamodb: {exc}" for r in requests}
            requests = list(response.get("UnprocessedItems", {}).get(self._table, []))
            if not requests:
                return {}
            if attempt + 1 < MAX_WRITE_ATTEMPTS:
                self._sleep(backoff_delay(attempt))
        return {_key_of(r): "dynamodb: still unprocessed after retries" for r in requests}

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

    def list_events(self, user_id: str, limit: int, cursor: str | None) -> EventPage:
        pk = user_pk(user_id)
        query: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": BY_USER_TIME,
            "KeyConditionExpression": "gsi1pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": pk}},
            "ProjectionExpression": "pk, sk, gsi1pk, gsi1sk, #doc",
            "ExpressionAttributeNames": {"#doc": "doc"},
            "ScanIndexForward": False,
            # One extra item tells whether another page exists, so the last page has no
            # cursor (as on the SQL backends) instead of one leading to an empty page.
            "Limit": limit + 1,
        }
        if cursor:
            position = decode_cursor(cursor, _CURSOR_KEYS, pinned={"pk": pk, "gsi1pk": pk})
            query["ExclusiveStartKey"] = {k: {"S": v} for k, v in position.items()}
        try:
            response = self._client.query(**query)
        except (ClientError, BotoCoreError) as exc:
            raise StorageUnavailableError(f"dynamodb: {exc}") from exc
        items = response["Items"]
        events = [StoredEvent.model_validate_json(i["doc"]["S"]) for i in items[:limit]]
        next_cursor = None
        if len(items) > limit:
            last = items[limit - 1]
            next_cursor = encode_cursor({k: last[k]["S"] for k in _CURSOR_KEYS})
        return EventPage(events=events, next_cursor=next_cursor)

    def ping(self) -> None:
        try:
            self._client.describe_table(TableName=self._table)
        except (ClientError, BotoCoreError) as exc:
            raise StorageUnavailableError(f"dynamodb: {exc}") from exc


def _key_of(request: Any) -> tuple[str, str]:
    item = request["PutRequest"]["Item"]
    return (item["pk"]["S"], item["sk"]["S"])
