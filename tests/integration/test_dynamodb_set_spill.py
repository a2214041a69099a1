"""User sets that outgrow their shard items on DynamoDB (moto): a full shard item spills its
users into cold items, and every set stays exact through redelivery, erasure, links,
first-seen moving earlier and a spill racing a removal. The shard items are made small
(`HOT_SET_BYTES`) so a few hundred users spill; the layout is the production one."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from mysoulmate.analytics.models import QueuedMessage
from mysoulmate.analytics.ports import ANY_EVENT
from mysoulmate.storage.dynamodb import set_spill
from mysoulmate.storage.dynamodb.rollup_keys import (
    COLD_SETS_PER_SHARD,
    USER_SET_SHARDS,
    cold_sk,
    user_cold_set,
    user_shard,
)
from mysoulmate.storage.dynamodb.store import DynamoEventStore

from tests.support.aws import BASE_TIME, REGION, TABLE_NAME, ApiCalls, queued_message

DAY0 = BASE_TIME.date()
DAY1 = DAY0 + timedelta(days=1)
SHARD_BYTES = 200  # a shard item spills at 200 bytes of ids: about 20 ids of 10 bytes
USERS = [f"user-{i:05d}" for i in range(400)]


@pytest.fixture(autouse=True)
def small_shard_items(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(set_spill, "HOT_SET_BYTES", SHARD_BYTES)


@pytest.fixture
def client(events_table: str) -> Any:
    return boto3.client("dynamodb", region_name=REGION)


@pytest.fixture
def store(client: Any) -> DynamoEventStore:
    return DynamoEventStore(TABLE_NAME, client, sleep=lambda _: None)


def played(user: str, *, at_day: int = 0, message_id: str | None = None) -> QueuedMessage:
    at = BASE_TIME + timedelta(days=at_day)
    return queued_message(user, message_id=message_id or f"{user}-{at_day}", at=at)


def insert(store: DynamoEventStore, messages: list[QueuedMessage]) -> None:
    for start in range(0, len(messages), 50):
        result = store.insert_events(messages[start : start + 50])
        assert not result.failed


def set_items(client: Any, prefix: str, day: Any = DAY0) -> list[dict[str, Any]]:
    """Every item (shard and cold) of the day's sets under ``prefix``."""
    items: list[dict[str, Any]] = []
    query: dict[str, Any] = {
        "TableName": TABLE_NAME,
        "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
        "ExpressionAttributeValues": {
            ":pk": {"S": f"ROLLUP#{day.isoformat()}"},
            ":prefix": {"S": prefix},
        },
        "ConsistentRead": True,
    }
    while True:
        page = client.query(**query)
        items += page["Items"]
        if "LastEvaluatedKey" not in page:
            return items
        query["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def memberships(items: list[dict[str, Any]]) -> Counter[str]:
    """How many items of a set hold each user (exactly one, when the set is right)."""
    return Counter(user for item in items for user in item.get("users", {}).get("SS", []))


def is_cold(item: dict[str, Any]) -> bool:
    return "-" in item["sk"]["S"]


def test_full_shard_items_spill_and_every_set_stays_exact(
    store: DynamoEventStore, client: Any
) -> None:
    insert(store, [played(user) for user in USERS])

    for prefix in ("ACTIVE#", "USERS#", "FIRST#"):
        items = set_items(client, prefix)
        cold = [item for item in items if is_cold(item)]
        assert cold, f"{prefix} never spilled"
        assert len(items) - len(cold) == USER_SET_SHARDS
        # Each user in exactly one item: nothing lost, nothing kept twice by a spill.
        assert memberships(items) == Counter(USERS)
        shards_used = {user_shard(u) for u in USERS}
        assert len(shards_used) == USER_SET_SHARDS
        for item in cold:
            for user in item["users"]["SS"]:
                shard_part = f"{user_shard(user):02d}-{user_cold_set(user):03d}"
                assert shard_part in item["sk"]["S"]
        for item in items:
            if not is_cold(item):
                # The byte bound is never below what the item holds.
                held = set_spill.member_bytes(item.get("users", {}).get("SS", []))
                assert int(item["bytes"]["N"]) >= held
                assert held < SHARD_BYTES + 50 * 10
    [active] = store.rollup_users(DAY0, DAY0, by_event=False)
    assert len(active.users) == len(USERS)
    by_event = store.rollup_users(DAY0, DAY0, by_event=True)
    assert {row.event: len(row.users) for row in by_event} == {ANY_EVENT: 400, "Song Played": 400}
    assert len(store.first_seen_users(DAY0, DAY0)[DAY0]) == len(USERS)


def test_a_redelivered_batch_after_spills_adds_nothing(
    store: DynamoEventStore, client: Any
) -> None:
    messages = [played(user) for user in USERS]
    insert(store, messages)
    before = memberships(set_items(client, "ACTIVE#"))
    insert(store, messages)
    assert memberships(set_items(client, "ACTIVE#")) == before == Counter(USERS)


def test_an_erasure_finds_a_user_in_a_cold_item_and_in_a_shard_item(
    store: DynamoEventStore, client: Any
) -> None:
    insert(store, [played(user) for user in USERS])
    active = set_items(client, "ACTIVE#")
    cold_user = next(u for i in active if is_cold(i) for u in i["users"]["SS"])
    late_user = "user-late"
    insert(store, [played(late_user)])
    hot = [i for i in set_items(client, "ACTIVE#") if not is_cold(i)]
    assert any(late_user in i.get("users", {}).get("SS", []) for i in hot)

    for user in (cold_user, late_user):
        store.delete_user(user, BASE_TIME + timedelta(hours=1))

    left = Counter(USERS) - Counter([cold_user])
    for prefix in ("ACTIVE#", "USERS#", "FIRST#"):
        assert memberships(set_items(client, prefix)) == left
    [active] = store.rollup_users(DAY0, DAY0, by_event=False)
    assert len(active.users) == len(USERS) - 1


def test_an_erasure_of_a_set_that_never_spilled_costs_one_transaction(
    store: DynamoEventStore, client: Any
) -> None:
    insert(store, [played("alice")])
    calls = ApiCalls(client, "dynamodb")
    store.delete_user("alice", BASE_TIME + timedelta(hours=1))
    set_writes = [
        params
        for params in calls.of("TransactWriteItems")
        if any("DELETE #users" in a["Update"]["UpdateExpression"] for a in params["TransactItems"])
    ]
    assert len(set_writes) == 1  # the guess "never spilled" held: no second attempt
    assert memberships(set_items(client, "ACTIVE#")) == Counter()


def test_a_link_moves_the_visitor_out_of_spilled_sets(store: DynamoEventStore, client: Any) -> None:
    visitor = "anon:v1"
    messages = [played(user) for user in USERS]
    messages.insert(100, played(visitor).model_copy(update={"anonymousId": "v1"}))
    insert(store, messages)
    active = set_items(client, "ACTIVE#")
    holding = [i for i in active if visitor in i.get("users", {}).get("SS", [])]
    assert [is_cold(i) for i in holding] == [True]

    result = store.link_anonymous("v1", "alice", BASE_TIME + timedelta(hours=2))

    assert result.moved_events == 1
    for prefix in ("ACTIVE#", "USERS#", "FIRST#"):
        assert memberships(set_items(client, prefix)) == Counter([*USERS, "alice"])


def test_first_seen_moving_earlier_leaves_the_spilled_first_seen_set(
    store: DynamoEventStore, client: Any
) -> None:
    insert(store, [played(user, at_day=1) for user in USERS])
    first_items = set_items(client, "FIRST#", DAY1)
    mover = next(u for i in first_items if is_cold(i) for u in i["users"]["SS"])

    insert(store, [played(mover, at_day=0)])  # a late event from the day before

    assert memberships(set_items(client, "FIRST#", DAY1)) == Counter(USERS) - Counter([mover])
    assert memberships(set_items(client, "FIRST#", DAY0)) == Counter([mover])
    seen = store.first_seen_users(DAY0, DAY1)
    assert (len(seen[DAY0]), len(seen[DAY1])) == (1, len(USERS) - 1)


def test_a_spill_that_read_before_a_removal_is_refused_and_brings_nobody_back(
    store: DynamoEventStore, client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(set_spill, "HOT_SET_BYTES", 10**6)  # fill without spilling
    insert(store, [played(user) for user in USERS[:200]])
    victim = USERS[7]
    key = ("ROLLUP#" + DAY0.isoformat(), f"ACTIVE#unknown#{user_shard(victim):02d}")
    monkeypatch.setattr(set_spill, "HOT_SET_BYTES", 60)  # now every shard item is full
    read = client.get_item(
        TableName=TABLE_NAME, Key={"pk": {"S": key[0]}, "sk": {"S": key[1]}}, ConsistentRead=True
    )["Item"]
    assert victim in read["users"]["SS"]
    stale_plan = set_spill.spill_plan(TABLE_NAME, key, read)
    assert stale_plan

    store.delete_user(victim, BASE_TIME + timedelta(hours=1))
    with pytest.raises(ClientError) as refused:
        client.transact_write_items(TransactItems=stale_plan[0])
    assert refused.value.response["Error"]["Code"] == "TransactionCanceledException"

    set_spill.spill(client, TABLE_NAME, key)  # reads again, spills without the victim
    items = set_items(client, "ACTIVE#")
    assert memberships(items) == Counter(USERS[:200]) - Counter([victim])
    assert any(is_cold(item) for item in items)


def test_a_shard_item_written_before_spilling_existed_is_measured_and_spilled(
    store: DynamoEventStore, client: Any
) -> None:
    shard = user_shard(USERS[0])
    old = [u for u in (f"old-{i:04d}" for i in range(2_000)) if user_shard(u) == shard][:30]
    client.put_item(  # as the previous release wrote it: no byte bound
        TableName=TABLE_NAME,
        Item={
            "pk": {"S": f"ROLLUP#{DAY0.isoformat()}"},
            "sk": {"S": f"ACTIVE#unknown#{shard:02d}"},
            "platform": {"S": "unknown"},
            "users": {"SS": old},
        },
    )
    insert(store, [played(USERS[0])])
    items = set_items(client, "ACTIVE#")
    assert memberships(items) == Counter([*old, USERS[0]])
    assert any(is_cold(item) for item in items)
    [active] = store.rollup_users(DAY0, DAY0, by_event=False)
    assert len(active.users) == len(old) + 1


def test_a_spill_of_a_full_shard_item_costs_a_read_and_one_transaction_per_99_cold_items(
    store: DynamoEventStore, client: Any
) -> None:
    calls = ApiCalls(client, "dynamodb")
    insert(store, [played(user) for user in USERS])
    reads = calls.of("GetItem")
    spills = [
        params
        for params in calls.of("TransactWriteItems")
        if any("#spilled" in str(a) for a in params["TransactItems"])
    ]
    # Each spill: one consistent read, then one transaction (a shard item of ~20 users
    # spreads over fewer than 99 cold items).
    assert len(reads) >= USER_SET_SHARDS
    assert len(spills) == len(reads)
    for params in spills:
        assert len(params["TransactItems"]) <= 100


def test_cold_items_keep_event_names_with_separators_whole() -> None:
    hot = "USERS#ios#07#checkout#step 2"
    user = "someone"
    cold = cold_sk(hot, user)
    assert cold == f"USERS#ios#07-{user_cold_set(user):03d}#checkout#step 2"
    assert cold_sk("ACTIVE#ios#07", user) == f"ACTIVE#ios#07-{user_cold_set(user):03d}"
    assert cold_sk("FIRST#07", user) == f"FIRST#07-{user_cold_set(user):03d}"
    spread = Counter(user_cold_set(f"u{i}") for i in range(20_000))
    assert len(spread) == COLD_SETS_PER_SHARD  # every cold item gets users
