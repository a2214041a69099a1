"""Write-key sources in the events table (beside users' items, never colliding with them).

Each source is two items, always written together in one transaction:

| item | `pk` | `sk` | attributes |
| --- | --- | --- | --- |
| by key | `SOURCE#<keyHash>` | `SOURCE` | id, name, kind, hint, created, revoked |
| listing | `SOURCES` | `SOURCE#<id>` | the same plus `keyHash` |

So authenticating a key is one GetItem, listing is one Query of a small partition (sorted
here: there are a handful of sources), and revoking finds the key's item from the listing.
Neither item has `gsi1pk`, so the `ByUserTime` index never sees them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from mysoulmate.analytics.ports import Source, StorageUnavailableError, time_key

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

SOURCE_SK = "SOURCE"
SOURCES_PK = "SOURCES"
REVOKED = "revoked"
_NEW = "attribute_not_exists(pk)"
# An item is revoked only if it exists and is not revoked yet: the first time stays.
_NOT_REVOKED = "attribute_exists(pk) AND attribute_not_exists(#revoked)"


def key_pk(key_hash: str) -> str:
    return f"SOURCE#{key_hash}"


def listing_sk(source_id: str) -> str:
    return f"SOURCE#{source_id}"


def _key(moment: datetime) -> str:
    return time_key(moment.astimezone(UTC) if moment.tzinfo else moment)


def _item(source: Source) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": {"S": source.id},
        "name": {"S": source.name},
        "kind": {"S": source.kind},
        "hint": {"S": source.key_hint},
        "created": {"S": _key(source.created_at)},
    }
    if source.revoked_at is not None:
        item[REVOKED] = {"S": _key(source.revoked_at)}
    return item


def _source(item: dict[str, Any]) -> Source:
    revoked = item.get(REVOKED)
    return Source(
        id=item["id"]["S"],
        name=item["name"]["S"],
        kind=item["kind"]["S"],
        key_hint=item["hint"]["S"],
        created_at=datetime.fromisoformat(item["created"]["S"]),
        revoked_at=datetime.fromisoformat(revoked["S"]) if revoked else None,
    )


def _condition_failed(exc: ClientError) -> bool:
    """A cancelled transaction one of whose conditions failed (not a conflict or throttle)."""
    reasons = exc.response.get("CancellationReasons", [])
    return any(reason.get("Code") == "ConditionalCheckFailed" for reason in reasons)


class DynamoSourceStore:
    def __init__(self, table_name: str, client: DynamoDBClient) -> None:
        self._table = table_name
        self._client = client

    def create_source(self, source: Source, key_hash: str) -> None:
        by_key = {"pk": {"S": key_pk(key_hash)}, "sk": {"S": SOURCE_SK}, **_item(source)}
        listing = {
            "pk": {"S": SOURCES_PK},
            "sk": {"S": listing_sk(source.id)},
            "keyHash": {"S": key_hash},
            **_item(source),
        }
        puts = [
            {"Put": {"TableName": self._table, "Item": item, "ConditionExpression": _NEW}}
            for item in (by_key, listing)
        ]
        try:
            self._client.transact_write_items(TransactItems=puts)  # type: ignore[arg-type]
        except ClientError as exc:
            if _condition_failed(exc):
                raise ValueError(f"source {source.id} or its key already exists") from None
            raise StorageUnavailableError(f"dynamodb: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageUnavailableError(f"dynamodb: {exc}") from exc

    def find_source(self, key_hash: str) -> Source | None:
        # Consistent: a key used right after it was created must not be cached as unknown.
        item = self._get({"pk": {"S": key_pk(key_hash)}, "sk": {"S": SOURCE_SK}})
        return _source(item) if item else None

    def list_sources(self) -> list[Source]:
        items: list[dict[str, Any]] = []
        try:
            pages = self._client.get_paginator("query").paginate(
                TableName=self._table,
                KeyConditionExpression="pk = :pk",
                ExpressionAttributeValues={":pk": {"S": SOURCES_PK}},
                ConsistentRead=True,
            )
            for page in pages:
                items.extend(page["Items"])
        except (ClientError, BotoCoreError) as exc:
            raise StorageUnavailableError(f"dynamodb: {exc}") from exc
        return sorted(map(_source, items), key=lambda s: (s.created_at, s.id))

    def revoke_source(self, source_id: str, revoked_at: datetime) -> Source | None:
        listing_key = {"pk": {"S": SOURCES_PK}, "sk": {"S": listing_sk(source_id)}}
        for _ in range(2):  # a second look only after a concurrent revocation won the race
            item = self._get(listing_key)
            if not item or REVOKED in item:
                return _source(item) if item else None
            try:
                self._client.transact_write_items(
                    TransactItems=self._revocation(item, revoked_at)  # type: ignore[arg-type]
                )
            except ClientError as exc:
                if not _condition_failed(exc):
                    raise StorageUnavailableError(f"dynamodb: {exc}") from exc
                continue
            except BotoCoreError as exc:
                raise StorageUnavailableError(f"dynamodb: {exc}") from exc
            return _source({**item, REVOKED: {"S": _key(revoked_at)}})
        raise StorageUnavailableError(f"dynamodb: source {source_id} kept changing; gave up")

    def _revocation(self, listing: dict[str, Any], revoked_at: datetime) -> list[dict[str, Any]]:
        """Both items of the source get the same revocation time, or neither does."""
        by_key = {"pk": {"S": key_pk(listing["keyHash"]["S"])}, "sk": {"S": SOURCE_SK}}
        return [
            {
                "Update": {
                    "TableName": self._table,
                    "Key": key,
                    "UpdateExpression": "SET #revoked = :at",
                    "ConditionExpression": _NOT_REVOKED,
                    "ExpressionAttributeNames": {"#revoked": REVOKED},
                    "ExpressionAttributeValues": {":at": {"S": _key(revoked_at)}},
                }
            }
            for key in ({"pk": listing["pk"], "sk": listing["sk"]}, by_key)
        ]

    def _get(self, key: dict[str, Any]) -> dict[str, Any] | None:
        try:
            response = self._client.get_item(TableName=self._table, Key=key, ConsistentRead=True)
        except (ClientError, BotoCoreError) as exc:
            raise StorageUnavailableError(f"dynamodb: {exc}") from exc
        item: dict[str, Any] | None = response.get("Item")
        return item
