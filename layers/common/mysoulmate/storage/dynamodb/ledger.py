"""The forward ledger on DynamoDB (AWS): which messages each provider accepted, as items of
the events table, shared by every Lambda that forwards.

An entry is the item pk = USER#<user_id>, sk = FWD#<provider>#<message_id>, with `expiresAt`
`KEEP_DAYS` ahead so the table's TTL removes it (longer than any provider takes an event
late, GA4: 72 hours; TTL may lag a day or two, which only keeps an entry longer).

It lives in the user's partition on purpose: an erasure deletes every item of that
partition but the tombstone (`dynamodb.erasure.plan_erasure`), so it forgets what was
forwarded for the person too, with no list of providers to look through. Nothing else
trips over these items: a user's events are read through the ByUserTime index, which they
are not in (no gsi1 keys); a visitor's move (`dynamodb.moves.read_visitor`) and the
erasure's counts look only at EVENT#, SEEN, PROFILE and LINKED# items; no read scans.

`forwarded` is BatchGetItem (100 keys a call, consistent reads), `record` BatchWriteItem
(25 puts a call; a put of an existing entry only moves its expiry on); unprocessed keys and
items, and throttling, are retried with the adapter's backoff (`dynamodb.retry`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from mysoulmate.analytics.ports import MessageKey, StorageUnavailableError
from mysoulmate.storage.dynamodb.keys import FORWARD_LEDGER_PREFIX, RECEIVED, user_pk
from mysoulmate.storage.dynamodb.reads import _utc_key
from mysoulmate.storage.dynamodb.retry import MAX_WRITE_ATTEMPTS, backoff_delay, is_retryable

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

KEEP_DAYS = 7
BATCH_GET_LIMIT = 100  # keys per BatchGetItem (AWS)
BATCH_WRITE_LIMIT = 25  # items per BatchWriteItem; moto accepts more, AWS does not

ItemKey = tuple[str, str]  # (pk, sk)


def forward_sk(provider: str, message_id: str) -> str:
    return f"{FORWARD_LEDGER_PREFIX}{provider}#{message_id}"


class DynamoForwardLedger:
    def __init__(
        self,
        table: str,
        client: DynamoDBClient,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``clock`` is wall time in seconds (the TTL attribute is epoch seconds)."""
        self._table = table
        self._client = client
        self._sleep = sleep
        self._clock = clock

    def forwarded(self, provider: str, keys: Collection[MessageKey]) -> set[MessageKey]:
        wanted = _item_keys(provider, keys)
        found: set[MessageKey] = set()
        pending = sorted(wanted)
        for start in range(0, len(pending), BATCH_GET_LIMIT):
            request = {
                self._table: {
                    "Keys": [_key(pk, sk) for pk, sk in pending[start : start + BATCH_GET_LIMIT]],
                    "ConsistentRead": True,  # an entry another Lambda just recorded counts
                    "ProjectionExpression": "pk, sk",
                }
            }
            for response in self._until_processed(self._get, request, "UnprocessedKeys"):
                for item in response.get("Responses", {}).get(self._table, []):
                    found.add(wanted[(item["pk"]["S"], item["sk"]["S"])])
        return found

    def record(self, provider: str, receipts: Mapping[MessageKey, datetime]) -> None:
        expires = str(int(self._clock()) + KEEP_DAYS * 86400)
        puts = [
            {
                "PutRequest": {
                    "Item": {
                        **_key(pk, sk),
                        "expiresAt": {"N": expires},
                        RECEIVED: {"S": _utc_key(receipts[key])},
                    }
                }
            }
            for (pk, sk), key in sorted(_item_keys(provider, receipts).items())
        ]
        for start in range(0, len(puts), BATCH_WRITE_LIMIT):
            request = {self._table: puts[start : start + BATCH_WRITE_LIMIT]}
            for _ in self._until_processed(self._write, request, "UnprocessedItems"):
                pass

    def _get(self, request: Any) -> Mapping[str, Any]:
        return self._client.batch_get_item(RequestItems=request)

    def _write(self, request: Any) -> Mapping[str, Any]:
        return self._client.batch_write_item(RequestItems=request)

    def _until_processed(
        self, call: Callable[[Any], Mapping[str, Any]], request: Any, unprocessed: str
    ) -> list[Mapping[str, Any]]:
        """Responses of ``call`` until the part named ``unprocessed`` comes back empty:
        what DynamoDB left (or a throttled call) is sent again after a backoff."""
        responses: list[Mapping[str, Any]] = []
        for attempt in range(MAX_WRITE_ATTEMPTS):
            if attempt:
                self._sleep(backoff_delay(attempt))
            try:
                response = call(request)
            except BotoCoreError as exc:
                raise StorageUnavailableError(f"dynamodb: {exc}") from exc
            except ClientError as exc:
                if not is_retryable(exc):
                    raise StorageUnavailableError(f"dynamodb: {exc}") from exc
                continue
            responses.append(response)
            request = response.get(unprocessed) or {}
            if not request:
                return responses
        raise StorageUnavailableError(
            "dynamodb: forward ledger requests still unprocessed after retries"
        )


def _item_keys(provider: str, keys: Collection[MessageKey]) -> dict[ItemKey, MessageKey]:
    """Each distinct key's item key; a '#' in the provider would let two providers' entries
    share one sk, so it is refused (provider names are fixed words: ga4, mixpanel)."""
    if "#" in provider:
        raise ValueError(f"provider name {provider!r} must not contain '#'")
    return {
        (user_pk(user), forward_sk(provider, message)): (user, message) for user, message in keys
    }


def _key(pk: str, sk: str) -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"S": sk}}
