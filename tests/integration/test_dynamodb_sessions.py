"""DynamoEventStore against moto: automatic sessions. Events carry their session id (item
attribute and document); the person's current session (`SessionMark`) lives on their SEEN
item and moves in the same transaction as the events, only ever forward; session figures are
count items that the transaction planner counts like any other, so a full batch still packs
within 100 actions, and sessions add no read: the consumer's mark read is the store's state
read for the insert that follows. Behaviour
shared by every backend is in tests/contract/test_session_contract.py."""

from __future__ import annotations

from collections import Counter
from datetime import date, timedelta
from typing import Any

import boto3
import pytest
from mysoulmate.analytics.ingest import IngestBatch
from mysoulmate.analytics.models import QueuedMessage, SessionMark
from mysoulmate.analytics.ports import CountRow, SessionRow
from mysoulmate.analytics.rollups import SESSION_EVENTS, rollup_delta, split_session_rows
from mysoulmate.analytics.sessions import assign_sessions
from mysoulmate.storage.dynamodb.erasure import plan_erasure
from mysoulmate.storage.dynamodb.keys import seen_key
from mysoulmate.storage.dynamodb.rollups import TRANSACT_LIMIT
from mysoulmate.storage.dynamodb.store import DynamoEventStore

from tests.support.aws import (
    REGION,
    TABLE_NAME,
    ApiCalls,
    create_events_table,
    event_items,
)
from tests.support.messages import identify_as, jan, track, visit

MARK_ATTRIBUTES = {"sid", "sstart", "slast"}
JAN1, JAN2 = date(2026, 1, 1), date(2026, 1, 2)


@pytest.fixture
def store_client(events_table: str) -> Any:
    return boto3.client("dynamodb", region_name=REGION)


@pytest.fixture
def store(store_client: Any) -> DynamoEventStore:
    return DynamoEventStore(TABLE_NAME, store_client, sleep=lambda _: None)


def consume(store: DynamoEventStore, *messages: QueuedMessage) -> None:
    """One delivery through the consumer's batch (which assigns the sessions)."""
    batch = IngestBatch(store)
    for index, message in enumerate(messages):
        batch.add(f"r{index}", message.model_dump_json())
    outcome = batch.flush()
    assert not outcome.failed_records, outcome.failed_records


def transactions(calls: ApiCalls) -> list[list[dict[str, Any]]]:
    return [list(params["TransactItems"]) for params in calls.of("TransactWriteItems")]


def seen_actions(actions: list[dict[str, Any]], user: str) -> list[dict[str, Any]]:
    """The actions of a transaction on ``user``'s SEEN item."""
    key = seen_key(user)
    return [a for a in actions if next(iter(a.values())).get("Key") == key]


def seen_item(dynamodb: Any, user: str) -> dict[str, Any]:
    response = dynamodb.get_item(TableName=TABLE_NAME, Key=seen_key(user), ConsistentRead=True)
    item: dict[str, Any] = response.get("Item", {})
    return item


def session_ids(store: DynamoEventStore, user: str) -> list[str | None]:
    return [p.session_id for p in store.user_event_points(user)]


# -- events carry their session ---------------------------------------------------------------


def test_events_are_stored_and_read_back_with_their_session_id(
    store: DynamoEventStore, dynamodb: Any
) -> None:
    consume(
        store,
        track("ann", "open", jan(1, 9), message_id="a1"),
        track("ann", "view", jan(1, 9, 10), message_id="a2"),
        track("ann", "open", jan(1, 11), message_id="a3"),  # 110 quiet minutes: a new session
    )

    items = {i["sk"]["S"].removeprefix("EVENT#"): i for i in event_items(dynamodb)}
    stored = {message_id: item["sid"]["S"] for message_id, item in items.items()}
    assert stored["a1"] == stored["a2"] != stored["a3"]
    assert session_ids(store, "ann") == [stored["a1"], stored["a2"], stored["a3"]]
    listed = store.list_events("ann", 10, None).events
    assert [(e.messageId, e.sessionId) for e in listed] == [
        ("a3", stored["a3"]),
        ("a2", stored["a2"]),
        ("a1", stored["a1"]),
    ]


def test_an_event_item_without_a_session_id_reads_back_as_none(
    store: DynamoEventStore, dynamodb: Any
) -> None:
    """Events stored before sessions (no assignment) have neither the attribute nor the
    field; reading them must not fail."""
    store.insert_events([track("ann", "open", jan(1, 9), message_id="old")])

    (item,) = event_items(dynamodb)
    assert "sid" not in item
    assert session_ids(store, "ann") == [None]
    assert store.list_events("ann", 10, None).events[0].sessionId is None


# -- the mark on the SEEN item ---------------------------------------------------------------


def test_the_mark_is_written_by_the_events_transaction_and_read_back(
    store: DynamoEventStore, store_client: Any, dynamodb: Any
) -> None:
    calls = ApiCalls(store_client, "dynamodb")

    consume(store, track("ann", "open", jan(1, 9)), track("ann", "view", jan(1, 9, 20)))

    # The consumer's mark read (which the insert reuses), one transaction: the mark is in it.
    assert [name for name, _ in calls.calls] == ["BatchGetItem", "TransactWriteItems"]
    (actions,) = transactions(calls)
    (seen,) = seen_actions(actions, "ann")
    assert {"#sid", "#sstart", "#slast"} <= set(seen["Update"]["ExpressionAttributeNames"])
    (session_id,) = set(session_ids(store, "ann"))
    assert session_id is not None
    mark = SessionMark(session_id, jan(1, 9), jan(1, 9, 20))
    assert store.session_marks({"ann", "bob"}) == {"ann": mark}
    assert store.session_marks(set()) == {}


def test_a_user_whose_memberships_do_not_change_gets_the_mark_in_the_same_one_action(
    store: DynamoEventStore, store_client: Any
) -> None:
    """Same day, same event and platform: the SEEN action was a tombstone ConditionCheck;
    with a new mark it is an Update under the same tombstone condition, never two actions."""
    consume(store, track("ann", "open", jan(1, 9)))
    calls = ApiCalls(store_client, "dynamodb")

    consume(store, track("ann", "open", jan(1, 9, 10)), track("ann", "open", jan(1, 9, 25)))

    (actions,) = transactions(calls)
    (seen,) = seen_actions(actions, "ann")
    update = seen["Update"]
    assert update["UpdateExpression"].startswith("SET #sid = :sid")
    assert "#erased < :received" in update["ConditionExpression"]
    assert len(actions) == 2 + 2 + 1  # 2 Puts, the event and session-length counters, SEEN
    (session_id,) = set(session_ids(store, "ann"))
    assert session_id is not None
    assert store.session_marks({"ann"}) == {
        "ann": SessionMark(session_id, jan(1, 9), jan(1, 9, 25))
    }


def test_an_older_mark_never_replaces_a_later_one(store: DynamoEventStore) -> None:
    consume(store, track("ann", "open", jan(1, 10)))
    later = store.session_marks({"ann"})

    # A batch assigned without the stored mark (as a consumer that read it before the
    # first batch committed would): its mark ends at 08:00, before the stored one.
    early = assign_sessions([track("ann", "open", jan(1, 8))], {})
    store.insert_events(early)

    assert store.session_marks({"ann"}) == later
    assert len(store.user_event_points("ann")) == 2


def test_a_later_mark_committed_meanwhile_wins_over_the_mark_being_written(
    store: DynamoEventStore, store_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another consumer stores a later event of the same person between our read of the
    SEEN item and our commit: the mark's condition cancels our transaction, we read again,
    and store our events without moving the mark back."""
    consume(store, track("ann", "open", jan(1, 8)))  # first-seen and memberships settled
    other = DynamoEventStore(TABLE_NAME, boto3.client("dynamodb", region_name=REGION))
    real = store_client.transact_write_items
    sent: list[int] = []

    def transact_write_items(**kwargs: Any) -> Any:
        sent.append(len(kwargs["TransactItems"]))
        if len(sent) == 1:
            consume(other, track("ann", "open", jan(1, 9, 30), message_id="theirs"))
        return real(**kwargs)

    monkeypatch.setattr(store_client, "transact_write_items", transact_write_items)

    consume(store, track("ann", "open", jan(1, 9), message_id="ours"))

    assert len(sent) == 2  # cancelled by the mark's condition, then committed
    points = {p.message_id: p.session_id for p in store.user_event_points("ann")}
    assert set(points) >= {"ours", "theirs"}
    (mark,) = store.session_marks({"ann"}).values()
    assert (mark.session_id, mark.last) == (points["theirs"], jan(1, 9, 30))


def test_an_erasure_removes_the_mark_and_keeps_the_tombstone(
    store: DynamoEventStore, dynamodb: Any
) -> None:
    consume(store, track("ann", "open", jan(1, 9)))
    assert set(seen_item(dynamodb, "ann")) >= MARK_ATTRIBUTES

    store.delete_user("ann", jan(2))

    item = seen_item(dynamodb, "ann")
    assert "erased" in item
    assert not MARK_ATTRIBUTES & set(item)
    assert store.session_marks({"ann"}) == {}
    # Activity received after the erasure starts afresh.
    consume(store, track("ann", "open", jan(3, 9)))
    (mark,) = store.session_marks({"ann"}).values()
    assert (mark.start, mark.last) == (jan(3, 9), jan(3, 9))


def test_erased_users_reads_the_tombstones_of_the_seen_items(store: DynamoEventStore) -> None:
    consume(store, track("ann", "open", jan(1, 9)), track("bob", "open", jan(1, 9)))
    store.delete_user("ann", jan(2, 8, 30))

    assert store.erased_users({"ann", "bob", "nobody"}) == {"ann": jan(2, 8, 30)}
    assert store.erased_users(set()) == {}


@pytest.mark.parametrize("erased_before", [False, True], ids=["visitor", "erased-visitor"])
def test_a_move_keeps_the_events_sessions_and_takes_the_visitors_mark_away(
    store: DynamoEventStore, erased_before: bool
) -> None:
    """Moved event items are copied whole (session id included); the visitor's SEEN item
    goes, or keeps only its tombstone when the visitor was erased before."""
    if erased_before:
        consume(store, visit("v-1", jan(1, 8)))
        store.delete_user("anon:v-1", jan(1, 8, 30))
    consume(store, visit("v-1", jan(1, 9)), visit("v-1", jan(1, 9, 10)))
    (visitor_session,) = set(session_ids(store, "anon:v-1"))
    assert set(store.session_marks({"anon:v-1"})) == {"anon:v-1"}

    consume(store, identify_as("ann", "v-1", jan(1, 9, 15)))

    assert session_ids(store, "ann") == [visitor_session, visitor_session]
    assert store.session_marks({"anon:v-1"}) == {}
    assert (store.erased_users({"anon:v-1"}) != {}) is erased_before


def test_a_seen_item_holding_only_a_mark_is_cleared_by_an_erasure() -> None:
    item = {"pk": {"S": "USER#ann"}, "sk": {"S": "SEEN"}, "sid": {"S": "s"}}

    assert plan_erasure("ann", [item]).seen


# -- session figures -------------------------------------------------------------------------


def test_rollup_sessions_counts_each_session_once_on_the_day_it_started(
    store: DynamoEventStore,
) -> None:
    consume(
        store,
        track("ann", "open", jan(1, 9)),
        track("ann", "view", jan(1, 9, 10)),
        track("bob", "open", jan(1, 9), platform="ios"),
        track("bob", "open", jan(1, 9, 5), platform="ios"),
        track("cy", "open", jan(1, 23, 50)),
    )
    consume(
        store,
        track("ann", "buy", jan(1, 9, 25)),  # continues ann's session from the first delivery
        track("ann", "open", jan(1, 11)),  # a new one
        track("cy", "open", jan(2, 0, 10)),  # across midnight: counted on Jan 1
    )

    minute = 60_000
    assert store.rollup_sessions(JAN1, JAN2) == [
        SessionRow(JAN1, "ios", 1, 5 * minute),
        SessionRow(JAN1, "web", 3, (25 + 20) * minute),
    ]
    assert store.rollup_sessions(JAN2, JAN2) == []
    counts = store.rollup_counts(JAN1, JAN2)
    assert not any(row.event in SESSION_EVENTS for row in counts)
    assert sum(row.events for row in counts) == 8


def test_a_redelivered_batch_changes_nothing(store: DynamoEventStore) -> None:
    batch = [
        track("ann", "open", jan(1, 9), message_id="a1"),
        track("ann", "view", jan(1, 9, 20), message_id="a2"),
        track("bob", "open", jan(1, 9), message_id="b1"),
    ]
    consume(store, *batch)
    consume(store, track("ann", "buy", jan(1, 9, 40), message_id="a3"))

    def state() -> tuple[Any, ...]:
        return (
            store.rollup_sessions(JAN1, JAN2),
            store.rollup_counts(JAN1, JAN2),
            store.session_marks({"ann", "bob"}),
            [store.user_event_points(u) for u in ("ann", "bob")],
        )

    before = state()
    consume(store, *batch)
    consume(store, track("ann", "buy", jan(1, 9, 40), message_id="a3"))

    assert state() == before
    assert [row.sessions for row in before[0]] == [2]


# -- packing and the call budget -------------------------------------------------------------


def thousand_events() -> list[QueuedMessage]:
    """1,000 track events of 100 users, 10 each: each run of 100 has every user once.
    Gaps of 25, 50 or 75 minutes per user (sessions continue, or restart every event), two
    platforms, over two days: many session counter items besides the event counters."""
    start = jan(1, 18)
    messages = []
    for i in range(1_000):
        user, k = i % 100, i // 100
        at = start + timedelta(minutes=25 * (1 + user % 3) * k, seconds=user)
        messages.append(
            track(
                f"u{user:03d}",
                ["open", "view", "buy"][(user + k) % 3],
                at,
                platform=["ios", "android"][(user + k) % 2],
                message_id=f"e{i:04d}",
            )
        )
    return messages


def expected_sessions(assigned: list[QueuedMessage]) -> list[SessionRow]:
    delta = rollup_delta(assigned)
    rows = [CountRow(d, p, e, n) for (d, p, e), n in delta.counts.items()]
    return split_session_rows(rows)[1]


def test_a_batch_of_1000_events_of_100_users_packs_within_100_actions(
    store: DynamoEventStore, store_client: Any
) -> None:
    messages = thousand_events()
    # assign_sessions sets ids in place: on copies, so the consumer gets the messages bare.
    assigned = assign_sessions([m.model_copy() for m in messages], {})
    calls = ApiCalls(store_client, "dynamodb")

    consume(store, *messages)

    sizes = [len(actions) for actions in transactions(calls)]
    assert max(sizes) <= TRANSACT_LIMIT
    assert sizes.count(TRANSACT_LIMIT) >= 5  # transactions are packed full
    session_counters = [
        a
        for actions in transactions(calls)
        for a in actions
        if "Update" in a
        and a["Update"]["ExpressionAttributeValues"].get(":e", {}).get("S") in SESSION_EVENTS
    ]
    assert session_counters  # session counters share transactions with the events
    assert store.rollup_sessions(JAN1, JAN2) == expected_sessions(assigned)
    assert len(store.rollup_sessions(JAN1, JAN2)) == 4  # 2 days x 2 platforms


def by_operation(calls: ApiCalls) -> Counter[str]:
    return Counter(name for name, _ in calls.calls)


def test_sessions_add_no_read_and_at_most_one_transaction_per_batch(
    store: DynamoEventStore, store_client: Any
) -> None:
    """1,000 events in consumer batches of 100 (100 users each), through the consumer with
    sessions, against the same batches stored as before sessions (no assignment, no mark
    read) in a table of their own. The consumer's mark read stands in for the store's own
    state read, so the reads stay one BatchGetItem per 100 users; the few session counter
    updates per transaction (≤ 2 per day and platform) need one more transaction in one
    batch of ten in this workload (TransactWriteItems 32 → 33 for the 1,000 events)."""
    messages = thousand_events()
    create_events_table("before-sessions")
    plain_client = boto3.client("dynamodb", region_name=REGION)
    plain = DynamoEventStore("before-sessions", plain_client, sleep=lambda _: None)
    totals: dict[str, Counter[str]] = {"with": Counter(), "without": Counter()}

    for offset in range(0, 1_000, 100):
        batch = messages[offset : offset + 100]
        with_sessions = ApiCalls(store_client, "dynamodb")
        without = ApiCalls(plain_client, "dynamodb")
        consume(store, *batch)
        assert not plain.insert_events(batch).failed
        keys = [
            len(p["RequestItems"][TABLE_NAME]["Keys"]) for p in with_sessions.of("BatchGetItem")
        ]
        assert keys == [100]  # the consumer's mark read, reused by the insert
        added = by_operation(with_sessions) - by_operation(without)
        assert added["BatchGetItem"] == 0
        assert added["TransactWriteItems"] <= 1
        assert set(by_operation(with_sessions)) == {"BatchGetItem", "TransactWriteItems"}
        totals["with"] += by_operation(with_sessions)
        totals["without"] += by_operation(without)
        for calls, client in ((with_sessions, store_client), (without, plain_client)):
            client.meta.events.unregister("provide-client-params.dynamodb", calls._record)

    assert totals["with"]["BatchGetItem"] == totals["without"]["BatchGetItem"]
    assert totals["with"]["TransactWriteItems"] <= totals["without"]["TransactWriteItems"] + 1
    assert sum(row.sessions for row in store.rollup_sessions(JAN1, JAN2)) > 0


def test_a_stale_or_partial_mark_read_is_not_reused(
    store: DynamoEventStore, store_client: Any
) -> None:
    """The insert reuses the consumer's read only for the same thread, users it covered,
    and within seconds; otherwise it reads again."""
    store.session_marks({"ann"})
    calls = ApiCalls(store_client, "dynamodb")
    assert not store.insert_events([track("bob", "open", jan(1, 9))]).failed  # not covered
    assert by_operation(calls)["BatchGetItem"] == 1
    calls.calls.clear()
    assert not store.insert_events([track("ann", "open", jan(1, 9))]).failed  # read is used up
    assert by_operation(calls)["BatchGetItem"] == 1
