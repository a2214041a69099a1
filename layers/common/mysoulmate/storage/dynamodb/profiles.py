"""Profile merges of a whole delivery in two DynamoDB calls instead of two per user.

A delivery's identifies used to cost each user a GetItem and a conditional PutItem (with the
tombstone check, a TransactWriteItems): 5 % identifies from distinct users tripled the calls
per 1,000 events. Here every user's profile is read with one BatchGetItem (100 keys per
call), merged in memory, and written with one TransactWriteItems per 50 users: per user, the
optimistic-concurrency Put (over the version that was read) and the tombstone check, exactly
the pair `update_profile` writes. A cancelled transaction wrote nothing; its cancellation
reasons say, per action, who was erased (check failed: None, as `update_profile` answers) and
who lost a race (their Put's condition failed): those are read and merged again, the rest of
the chunk retried as it was.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from mysoulmate.analytics.models import Profile
from mysoulmate.analytics.ports import ProfileResults, ProfileUpdate, StorageUnavailableError
from mysoulmate.storage.dynamodb.erasure import guarded_profile_put
from mysoulmate.storage.dynamodb.keys import PROFILE_SK, user_pk
from mysoulmate.storage.dynamodb.reads import _utc_key
from mysoulmate.storage.dynamodb.retry import (
    MAX_WRITE_ATTEMPTS,
    RETRYABLE_CODES,
    backoff_delay,
    cancellation_reasons,
)
from mysoulmate.storage.dynamodb.states import PREFETCH_SECONDS

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

USERS_PER_TRANSACTION = 50  # two actions each, TransactWriteItems' 100
TRANSACTION_BYTES = 3_500_000  # of AWS's 4 MB per transaction, with headroom


def profile_put(user_id: str, current: Profile | None, merged: Profile) -> dict[str, Any]:
    """The Put of ``merged`` over exactly the version that was read (optimistic concurrency);
    sets ``merged.version``."""
    merged.version = (current.version if current else 0) + 1
    return {
        "Item": {
            "pk": {"S": user_pk(user_id)},
            "sk": {"S": PROFILE_SK},
            "doc": {"S": merged.model_dump_json()},
            "version": {"N": str(merged.version)},
        },
        "ConditionExpression": "attribute_not_exists(pk) OR version = :expected",
        "ExpressionAttributeValues": {":expected": {"N": str(current.version if current else 0)}},
    }


class DynamoProfiles:
    _client: DynamoDBClient
    _table: str
    _sleep: Callable[[float], None]
    _prefetched: threading.local
    _batch_get: Callable[..., dict[tuple[str, str], dict[str, Any]]]  # DynamoIdentity's

    def update_profiles(
        self, updates: Mapping[str, tuple[ProfileUpdate, datetime]]
    ) -> ProfileResults:
        results = ProfileResults()
        todo = dict(updates)
        for attempt in range(MAX_WRITE_ATTEMPTS):
            if not todo:
                return results
            current = self._prefetched_profiles(set(todo)) if attempt == 0 else None
            if current is None:
                current = self._read_profiles(list(todo))
            again: dict[str, tuple[ProfileUpdate, datetime]] = {}
            for chunk in _chunks(todo, current):
                again.update(self._write_chunk(chunk, current, results))
            todo = again
            if todo and attempt + 1 < MAX_WRITE_ATTEMPTS:
                self._sleep(backoff_delay(attempt))  # another writer won; merge again
        for user_id in todo:
            results.failed[user_id] = "profile update failed: it kept changing; gave up"
        return results

    def _write_chunk(
        self,
        chunk: dict[str, tuple[ProfileUpdate, datetime]],
        current: dict[str, Profile],
        results: ProfileResults,
    ) -> dict[str, tuple[ProfileUpdate, datetime]]:
        """Write one transaction's users; return those to merge and write again."""
        actions: list[dict[str, Any]] = []
        merged: dict[str, Profile] = {}
        for user_id, (update, received_at) in chunk.items():
            before = current.get(user_id)
            merged[user_id] = update(before)
            put = profile_put(user_id, before, merged[user_id])
            actions += guarded_profile_put(self._table, put, user_id, _utc_key(received_at))
        try:
            self._client.transact_write_items(TransactItems=actions)  # type: ignore[arg-type]
        except BotoCoreError as exc:
            raise StorageUnavailableError(f"dynamodb: {exc}") from exc
        except ClientError as exc:
            reasons = cancellation_reasons(exc)
            if exc.response["Error"]["Code"] in RETRYABLE_CODES:
                return chunk
            if len(reasons) != len(actions):
                raise StorageUnavailableError(f"dynamodb: {exc}") from exc
            again = {}
            for index, user_id in enumerate(chunk):
                if reasons[2 * index + 1] == "ConditionalCheckFailed":
                    results.merged[user_id] = None  # erased since: the traits stay gone
                else:
                    again[user_id] = chunk[user_id]
            return again
        results.merged.update(merged)
        return {}

    def _prefetched_profiles(self, users: set[str]) -> dict[str, Profile] | None:
        """This thread's `session_marks` read of these profiles, when it covers them and is
        fresh (taken once). Writes stay conditioned on the version read, so a profile changed
        since only costs a retry."""
        held = getattr(self._prefetched, "profiles", None)
        self._prefetched.profiles = None
        if held is None:
            return None
        covered, profiles, read_at = held
        if not users <= covered or time.monotonic() - read_at >= PREFETCH_SECONDS:
            return None
        return {user: profile for user, profile in profiles.items() if user in users}

    def _read_profiles(self, users: list[str]) -> dict[str, Profile]:
        """The stored profiles of ``users`` (`DynamoIdentity._batch_get`: consistent reads,
        100 keys per call, unprocessed keys retried)."""
        keys = [{"pk": {"S": user_pk(user_id)}, "sk": {"S": PROFILE_SK}} for user_id in users]
        items = self._batch_get(keys)
        return {
            user_id: Profile.model_validate_json(item["doc"]["S"])
            for user_id in users
            if (item := items.get((user_pk(user_id), PROFILE_SK))) is not None
        }


def _chunks(
    todo: dict[str, tuple[ProfileUpdate, datetime]], current: dict[str, Profile]
) -> list[dict[str, tuple[ProfileUpdate, datetime]]]:
    """Users in transactions of at most USERS_PER_TRANSACTION and TRANSACTION_BYTES (each
    user budgeted at twice their stored profile: the merge may grow it)."""
    chunks: list[dict[str, tuple[ProfileUpdate, datetime]]] = [{}]
    size = 0
    for user_id, update in todo.items():
        profile = current.get(user_id)
        cost = 2 * len(profile.model_dump_json()) + 2_048 if profile else 4_096
        if len(chunks[-1]) >= USERS_PER_TRANSACTION or size + cost > TRANSACTION_BYTES:
            chunks.append({})
            size = 0
        chunks[-1][user_id] = update
        size += cost
    return [chunk for chunk in chunks if chunk]
