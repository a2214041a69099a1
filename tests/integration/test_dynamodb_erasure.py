"""DynamoEventStore against moto: an erasure sticks when it races the consumer. The
tombstone (the `erased` attribute of the user's SEEN item) is named by every transaction
that writes the user's data, so an erasure landing between the consumer's read of the
user's state and its commit cancels the write; a profile write is refused the same way.
The check rides on calls the store makes anyway. Behaviour shared by every backend
(stopped worker, latest erasure wins, live race) is in tests/contract/test_erasure_contract.py.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any

import boto3
import pytest
from mysoulmate.analytics.models import Profile, QueuedMessage
from mysoulmate.analytics.profiles import merge_identify
from mysoulmate.storage.dynamodb.store import DynamoEventStore

from tests.support.aws import (
    BASE_TIME,
    REGION,
    TABLE_NAME,
    ApiCalls,
    event_items,
    queued_message,
)

DAY0 = BASE_TIME.date()
ERASED_AT = BASE_TIME + timedelta(hours=6)  # after every message received on DAY0


@pytest.fixture
def store_client(events_table: str) -> Any:
    return boto3.client("dynamodb", region_name=REGION)


@pytest.fixture
def store(store_client: Any) -> DynamoEventStore:
    return DynamoEventStore(TABLE_NAME, store_client, sleep=lambda _: None)


@pytest.fixture
def eraser(events_table: str) -> DynamoEventStore:
    """Another process on the same table (its own client, not intercepted)."""
    return DynamoEventStore(
        TABLE_NAME, boto3.client("dynamodb", region_name=REGION), sleep=lambda _: None
    )


def on_transaction(
    monkeypatch: pytest.MonkeyPatch, client: Any, *, before: Callable[[], None] | None = None
) -> list[int]:
    """Run ``before`` once, just before the client's first TransactWriteItems goes out
    (after the store read the users' state); returns the list of calls seen."""
    real = client.transact_write_items
    seen: list[int] = []

    def transact_write_items(**kwargs: Any) -> Any:
        seen.append(len(kwargs["TransactItems"]))
        if len(seen) == 1 and before is not None:
            before()
        return real(**kwargs)

    monkeypatch.setattr(client, "transact_write_items", transact_write_items)
    return seen


def users_on(store: DynamoEventStore, day: date) -> set[str]:
    rows = store.rollup_users(day, day, by_event=True)
    return {user for row in rows for user in row.users}  # type: ignore[attr-defined]


def track_at(user: str, index: int, *, received: datetime, day: date = DAY0) -> QueuedMessage:
    at = datetime.combine(day, BASE_TIME.timetz()) + timedelta(seconds=index)
    message = queued_message(user, message_id=f"{user}-{day}-{index}", at=at, platform="ios")
    return message.model_copy(update={"receivedAt": received})


# -- the consumer racing an erasure ------------------------------------------------------


def test_an_erasure_landing_between_the_state_read_and_the_commit_cancels_the_write(
    store: DynamoEventStore,
    eraser: DynamoEventStore,
    store_client: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Enough users for several transactions; the erasure lands before the first.
    before = [track_at("gus", i, received=BASE_TIME) for i in range(3)]
    others = [track_at(f"u{n:03d}", i, received=BASE_TIME) for n in range(60) for i in range(2)]
    later_day = DAY0 + timedelta(days=1)
    after = track_at("gus", 0, received=ERASED_AT + timedelta(seconds=1), day=later_day)
    sent = on_transaction(
        monkeypatch, store_client, before=lambda: eraser.delete_user("gus", ERASED_AT)
    )

    result = store.insert_events([*before, *others, after])

    assert len(sent) > 1  # a batch of several transactions
    assert result.erased == {m.key for m in before}
    assert result.written == len(others) + 1
    assert result.new_keys == {m.key for m in [*others, after]}
    assert not result.failed
    stored = {item["sk"]["S"].removeprefix("EVENT#") for item in event_items(store_client)}
    assert stored == {m.messageId for m in [*others, after]}
    # Nothing of the erased messages in the rollups: not counted, not a member of any set.
    counts = store.rollup_counts(DAY0, DAY0)
    assert sum(row.events for row in counts) == len(others)
    assert "gus" not in users_on(store, DAY0)
    assert users_on(store, later_day) == {"gus"}
    first_seen = store.first_seen_users(DAY0, later_day)
    assert "gus" not in first_seen.get(DAY0, frozenset())  # type: ignore[operator]
    assert "gus" in first_seen[later_day]  # type: ignore[operator]


def test_an_erasure_right_after_the_commit_finds_and_removes_what_it_wrote(
    store: DynamoEventStore,
    eraser: DynamoEventStore,
    store_client: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    messages = [track_at("gus", i, received=BASE_TIME) for i in range(3)]
    real = store_client.transact_write_items

    def commit_then_erase(**kwargs: Any) -> Any:
        response = real(**kwargs)
        eraser.delete_user("gus", ERASED_AT)
        return response

    monkeypatch.setattr(store_client, "transact_write_items", commit_then_erase)

    result = store.insert_events(messages)

    assert result.written == 3  # stored before the erasure, then erased by it
    assert store.list_events("gus", 50, None).events == []
    assert "gus" not in users_on(store, DAY0)
    assert not any(
        "gus" in users
        for users in store.first_seen_users(DAY0, DAY0).values()  # type: ignore[attr-defined]
    )
    # A redelivery of the same messages now stays out.
    again = store.insert_events(messages)
    assert again.erased == {m.key for m in messages}
    assert store.list_events("gus", 50, None).events == []


def test_an_erasure_leaves_other_users_and_anonymous_counts_alone(
    store: DynamoEventStore, eraser: DynamoEventStore
) -> None:
    store.insert_events(
        [track_at("gus", 0, received=BASE_TIME), track_at("ann", 1, received=BASE_TIME)]
    )

    result = eraser.delete_user("gus", ERASED_AT)

    assert (result.events, result.profile) == (1, False)
    assert users_on(store, DAY0) == {"ann"}
    assert sum(row.events for row in store.rollup_counts(DAY0, DAY0)) == 2
    assert store.list_events("ann", 50, None).events != []


# -- the call budget ------------------------------------------------------------------------


def test_a_repeat_batch_costs_one_state_read_and_one_transaction(
    store: DynamoEventStore, store_client: Any
) -> None:
    """The tombstone check adds no call: it rides on the SEEN BatchGetItem and on one
    action per user in the transaction (60 Puts + 30 checks + 1 counter = 91 ≤ 100)."""
    users = [f"u{n:02d}" for n in range(30)]
    store.insert_events([track_at(u, i, received=BASE_TIME) for u in users for i in range(2)])
    calls = ApiCalls(store_client, "dynamodb")

    result = store.insert_events(
        [track_at(u, i, received=BASE_TIME) for u in users for i in range(2, 4)]
    )

    assert result.written == 60
    assert [name for name, _ in calls.calls] == ["BatchGetItem", "TransactWriteItems"]
    (batch_get,) = calls.of("BatchGetItem")
    assert len(batch_get["RequestItems"][TABLE_NAME]["Keys"]) == 30


def test_every_user_of_a_batch_is_read_in_batch_gets_of_at_most_100_keys(
    store: DynamoEventStore, store_client: Any
) -> None:
    calls = ApiCalls(store_client, "dynamodb")
    messages = [track_at(f"u{n:03d}", 0, received=BASE_TIME) for n in range(140)]
    messages += [queued_message(f"id{n}", type="identify", message_id=f"i{n}") for n in range(10)]

    store.insert_events(messages)

    keys = [len(p["RequestItems"][TABLE_NAME]["Keys"]) for p in calls.of("BatchGetItem")]
    assert keys == [100, 50]  # identify-only users are checked too
    assert {name for name, _ in calls.calls} == {"BatchGetItem", "TransactWriteItems"}
    assert all(len(p["TransactItems"]) <= 100 for p in calls.of("TransactWriteItems"))


# -- profiles ---------------------------------------------------------------------------------


def merge(message: QueuedMessage) -> Callable[[Profile | None], Profile]:
    return lambda profile: merge_identify(profile, message)


def identify_received(user: str, received: datetime, **traits: Any) -> QueuedMessage:
    message = queued_message(user, type="identify", traits=traits)
    return message.model_copy(update={"receivedAt": received})


def test_a_profile_update_received_before_an_erasure_writes_nothing(
    store: DynamoEventStore, eraser: DynamoEventStore
) -> None:
    eraser.delete_user("erin", ERASED_AT)
    old = identify_received("erin", ERASED_AT, email="erin@example.com")  # the same instant

    assert store.update_profile("erin", merge(old), received_at=old.receivedAt) is None
    assert store.get_profile("erin") is None

    new = identify_received("erin", ERASED_AT + timedelta(microseconds=1), plan="pro")
    merged = store.update_profile("erin", merge(new), received_at=new.receivedAt)
    assert merged is not None
    stored = store.get_profile("erin")
    assert stored is not None
    assert stored.traits == {"plan": "pro"}


def test_an_erasure_landing_between_the_profile_read_and_its_write_wins(
    store: DynamoEventStore,
    eraser: DynamoEventStore,
    store_client: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = identify_received("erin", BASE_TIME, plan="free")
    store.update_profile("erin", merge(first), received_at=first.receivedAt)
    on_transaction(monkeypatch, store_client, before=lambda: eraser.delete_user("erin", ERASED_AT))
    old = identify_received("erin", BASE_TIME + timedelta(hours=1), email="erin@example.com")

    assert store.update_profile("erin", merge(old), received_at=old.receivedAt) is None
    assert store.get_profile("erin") is None


def test_a_concurrent_profile_writer_is_still_merged_in_with_the_tombstone_check(
    store: DynamoEventStore,
    eraser: DynamoEventStore,
    store_client: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    other = identify_received("fay", BASE_TIME, locale="fr")
    sent = on_transaction(
        monkeypatch,
        store_client,
        before=lambda: eraser.update_profile("fay", merge(other), received_at=BASE_TIME),
    )
    mine = identify_received("fay", BASE_TIME, plan="pro")

    merged = store.update_profile("fay", merge(mine), received_at=mine.receivedAt)

    assert len(sent) == 2  # the version condition failed once, then the merge was redone
    assert merged is not None
    stored = store.get_profile("fay")
    assert stored is not None
    assert stored.traits == {"locale": "fr", "plan": "pro"}


# -- reads ------------------------------------------------------------------------------------


def test_points_of_an_old_row_with_a_short_time_prefix_stay_readable(
    store: DynamoEventStore, dynamodb: Any
) -> None:
    """Rows written before time keys were fixed-width have a shorter prefix (year 999)."""
    dynamodb.put_item(
        TableName=TABLE_NAME,
        Item={
            "pk": {"S": "USER#old"},
            "sk": {"S": "EVENT#m#1"},
            "gsi1pk": {"S": "USER#old"},
            "gsi1sk": {"S": "999-01-01T00:00:00.000000Z#m#1"},
            "type": {"S": "track"},
            "event": {"S": "signup"},
        },
    )

    (point,) = store.user_event_points("old")

    assert (point.ts, point.event, point.message_id) == (
        "999-01-01T00:00:00.000000Z",
        "signup",
        "m#1",
    )


def test_a_write_between_the_read_and_the_tombstones_move_is_erased_too(
    store: DynamoEventStore, eraser: DynamoEventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The erasure finds an event received after its time (sent while it was requested) and
    moves its tombstone up to that receipt. A write received before the new time and
    committed between the erasure's read and that move is found by reading again."""
    stored = [
        track_at("ivy", 0, received=BASE_TIME),
        track_at("ivy", 1, received=ERASED_AT + timedelta(hours=2)),
    ]
    store.insert_events(stored)
    slipped_in = track_at("ivy", 2, received=ERASED_AT + timedelta(hours=1))
    real_plan = eraser._plan_erasure
    reads: list[str] = []

    def plan_then_write(person: str) -> Any:
        plan = real_plan(person)
        if not reads:  # the old tombstone lets it through
            assert store.insert_events([slipped_in]).written == 1
        reads.append(person)
        return plan

    monkeypatch.setattr(eraser, "_plan_erasure", plan_then_write)
    assert eraser.delete_user("ivy", ERASED_AT).events == 3
    assert reads == ["ivy", "ivy"]
    assert store.erased_users(["ivy"]) == {"ivy": ERASED_AT + timedelta(hours=2)}
    assert store.list_events("ivy", 50, None).events == []
    again = store.insert_events([*stored, slipped_in])
    assert again.erased == {m.key for m in [*stored, slipped_in]}
