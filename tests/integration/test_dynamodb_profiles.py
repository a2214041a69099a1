"""A delivery's profile merges on DynamoDB: two calls for any number of users (up to 50 per
transaction), and a merge that lost a race to another writer is merged again, not lost."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import partial
from typing import Any

import boto3
import pytest
from mysoulmate.analytics.models import Profile, QueuedMessage
from mysoulmate.analytics.ports import ProfileUpdate
from mysoulmate.analytics.profiles import merge_identify
from mysoulmate.storage.dynamodb.store import DynamoEventStore

from tests.support.aws import REGION, TABLE_NAME, ApiCalls
from tests.support.messages import identify, jan


@pytest.fixture
def client(events_table: str) -> Any:
    return boto3.client("dynamodb", region_name=REGION)


@pytest.fixture
def store(client: Any) -> DynamoEventStore:
    return DynamoEventStore(TABLE_NAME, client, sleep=lambda _: None)


def merge(message: QueuedMessage, profile: Profile | None) -> Profile:
    return merge_identify(profile, message)


def updates_of(*messages: QueuedMessage) -> dict[str, tuple[ProfileUpdate, datetime]]:
    return {m.userId: (partial(merge, m), m.receivedAt) for m in messages}


def operations(calls: ApiCalls) -> list[str]:
    return [name for name, _ in calls.calls]


def test_fifty_users_cost_one_read_and_one_write(client: Any, store: DynamoEventStore) -> None:
    calls = ApiCalls(client, "dynamodb")
    results = store.update_profiles(
        updates_of(*(identify(f"u-{n}", jan(5), plan="pro") for n in range(50)))
    )
    assert results.failed == {}
    assert operations(calls) == ["BatchGetItem", "TransactWriteItems"]
    (write,) = calls.of("TransactWriteItems")
    assert len(write["TransactItems"]) == 100  # a Put and a tombstone check per user
    calls.calls.clear()
    store.update_profiles(updates_of(*(identify(f"u-{n}", jan(6), n=n) for n in range(120))))
    # 100 keys per BatchGetItem, 50 users per transaction.
    assert operations(calls).count("BatchGetItem") == 2
    assert operations(calls).count("TransactWriteItems") == 3
    assert store.get_profile("u-3").traits == {"plan": "pro", "n": 3}  # type: ignore[union-attr]


def test_a_merge_that_lost_a_race_is_merged_again(client: Any, store: DynamoEventStore) -> None:
    other = DynamoEventStore(TABLE_NAME, boto3.client("dynamodb", region_name=REGION))
    store.update_profile("ava", partial(merge, identify("ava", jan(1), plan="free")))
    raced: list[bool] = []

    def meanwhile(**_: Any) -> None:
        if not raced:  # between our read and our write, another consumer merges a trait
            raced.append(True)
            other.update_profile("ava", partial(merge, identify("ava", jan(2), locale="fr")))

    client.meta.events.register("before-call.dynamodb.TransactWriteItems", meanwhile)
    results = store.update_profiles(
        updates_of(identify("ava", jan(3), plan="pro"), identify("bob", jan(3), plan="pro"))
    )
    assert raced
    assert results.failed == {}
    assert store.get_profile("ava").traits == {"plan": "pro", "locale": "fr"}  # type: ignore[union-attr]
    assert store.get_profile("bob").traits == {"plan": "pro"}  # type: ignore[union-attr]


def test_an_erasure_between_read_and_write_keeps_the_traits_out(
    client: Any, store: DynamoEventStore
) -> None:
    erased: list[bool] = []

    def meanwhile(**_: Any) -> None:
        if not erased:
            erased.append(True)
            store.delete_user("erin", datetime(2026, 1, 10, tzinfo=UTC))

    client.meta.events.register("before-call.dynamodb.TransactWriteItems", meanwhile)
    results = store.update_profiles(
        updates_of(identify("erin", jan(9), email="e@example.com"), identify("bob", jan(9), a=1))
    )
    assert results.merged["erin"] is None
    assert store.get_profile("erin") is None
    assert store.get_profile("bob") is not None
