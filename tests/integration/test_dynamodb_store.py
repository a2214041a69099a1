"""DynamoEventStore against moto: events and their rollups written together in transactions
within AWS's limits, exact under redelivery, concurrency, reordering and contention; user sets
sharded and left by erased users; filtered newest-first pagination; profile merges that never
lose a trait. Behaviour shared by every backend lives in the contract suite."""

from __future__ import annotations

import base64
import json
import threading
from datetime import UTC, date, datetime, timedelta
from functools import partial
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from mysoulmate.analytics.models import AuditEntry, Profile, QueuedMessage
from mysoulmate.analytics.ports import ErasureResult, StorageUnavailableError
from mysoulmate.analytics.profiles import merge_identify
from mysoulmate.analytics.rollups import rollup_delta
from mysoulmate.core.errors import InvalidRequestError
from mysoulmate.storage.dynamodb.rollups import TRANSACT_LIMIT, USER_SET_SHARDS
from mysoulmate.storage.dynamodb.store import (
    BACKOFF_BASE_SECONDS,
    BACKOFF_CAP_SECONDS,
    MAX_WRITE_ATTEMPTS,
    DynamoEventStore,
)
from mysoulmate.storage.paging import encode_cursor

from tests.support.aws import (
    BASE_TIME,
    REGION,
    TABLE_NAME,
    ApiCalls,
    SerializedClient,
    create_events_table,
    event_items,
    queued_message,
)

DAY0 = BASE_TIME.date()
DAY1 = DAY0 + timedelta(days=1)


class SleepRecorder:
    """Stands in for time.sleep: records each delay and, if told how, how many calls had
    been made when it was asked to sleep."""

    def __init__(self) -> None:
        self.delays: list[float] = []
        self.calls_before: list[int] = []
        self.count_calls: Any = None

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        if self.count_calls is not None:
            self.calls_before.append(self.count_calls())


def backoff_bound(attempt: int) -> float:
    """The largest full-jitter delay allowed after attempt ``attempt`` (0-based)."""
    return min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2**attempt)


@pytest.fixture
def store_client(events_table: str) -> Any:
    """The DynamoDB client the store under test uses (the `dynamodb` fixture is the test's own)."""
    return boto3.client("dynamodb", region_name=REGION)


@pytest.fixture
def sleeps() -> SleepRecorder:
    return SleepRecorder()


@pytest.fixture
def store(store_client: Any, sleeps: SleepRecorder) -> DynamoEventStore:
    return DynamoEventStore(TABLE_NAME, store_client, sleep=sleeps)


@pytest.fixture
def calls(store_client: Any) -> ApiCalls:
    return ApiCalls(store_client, "dynamodb")


def transactions(calls: ApiCalls) -> list[list[dict[str, Any]]]:
    return [list(params["TransactItems"]) for params in calls.of("TransactWriteItems")]


# After every message of these tests was received.
ERASED_AT = datetime(2030, 1, 1, tzinfo=UTC)


def action_key(action: dict[str, Any]) -> tuple[str, str]:
    if "Put" in action:
        item = action["Put"]["Item"]
        return (item["pk"]["S"], item["sk"]["S"])
    kind = "Update" if "Update" in action else "ConditionCheck"  # the erasure tombstone check
    key = action[kind]["Key"]
    return (key["pk"]["S"], key["sk"]["S"])


Snapshot = tuple[Any, ...]


def snapshot(store: DynamoEventStore, start: date = DAY0 - timedelta(days=5)) -> Snapshot:
    """Everything the rollup reads return, in a comparable shape."""
    end = start + timedelta(days=20)
    return (
        sorted(store.rollup_counts(start, end)),
        sorted(store.rollup_revenue(start, end)),
        {
            (r.day, r.platform, r.event): r.users
            for r in store.rollup_users(start, end, by_event=True)
        },
        store.first_seen_users(start, end),
    )


def expected(messages: list[QueuedMessage]) -> Snapshot:
    """The snapshot the shared pure rollup code gives for these messages stored once."""
    unique = list({m.key: m for m in messages}.values())
    delta = rollup_delta(unique)
    first_seen: dict[date, set[str]] = {}
    for user, day in delta.first_seen.items():
        first_seen.setdefault(day, set()).add(user)
    return (
        sorted((day, p, e, n) for (day, p, e), n in delta.counts.items()),
        sorted((day, p, c, n) for (day, p, c), n in delta.revenue.items()),
        {key: frozenset(users) for key, users in delta.users.items()},
        {day: frozenset(users) for day, users in sorted(first_seen.items())},
    )


def message_ids(dynamodb: Any) -> list[str]:
    return sorted(item["sk"]["S"].removeprefix("EVENT#") for item in event_items(dynamodb))


# -- idempotent bulk writes ----------------------------------------------------------------


# What a store reports and lists for duplicates is in tests/contract/test_storage_contract.py;
# these check the items in the table.


def test_same_message_in_separate_calls_is_one_item(store: DynamoEventStore, dynamodb: Any) -> None:
    message = queued_message("alice", message_id="m-1")

    store.insert_events([message])
    store.insert_events([message])

    assert message_ids(dynamodb) == ["m-1"]


def test_same_message_twice_in_one_call_is_one_item_and_once_per_transaction(
    store: DynamoEventStore, dynamodb: Any, calls: ApiCalls
) -> None:
    message = queued_message("alice", message_id="m-1")
    other = queued_message("alice", message_id="m-2")

    store.insert_events([message, other, message])

    assert message_ids(dynamodb) == ["m-1", "m-2"]
    # AWS rejects a transaction naming one item twice; the store must not send one.
    for actions in transactions(calls):
        keys = [action_key(a) for a in actions]
        assert len(keys) == len(set(keys))


def test_same_message_id_for_two_users_is_two_items(store: DynamoEventStore, dynamodb: Any) -> None:
    store.insert_events(
        [queued_message("alice", message_id="m-1"), queued_message("bob", message_id="m-1")]
    )

    assert len(event_items(dynamodb)) == 2


def mixed_batch(
    count: int, users: int = 40, prefix: str = "m", days: int = 2
) -> list[QueuedMessage]:
    """Track events over several users, days, platforms and names (some with revenue), and
    a few identifies: enough distinct rollup items to need several transactions."""
    messages = []
    for i in range(count):
        at = BASE_TIME + timedelta(days=i % days, minutes=i)
        if i % 17 == 16:
            messages.append(
                queued_message(
                    f"u{i % users:03d}", message_id=f"{prefix}-{i}", type="identify", at=at
                )
            )
            continue
        properties = {"revenue": 1.25, "currency": "EUR"} if i % 5 == 0 else {}
        messages.append(
            queued_message(
                f"u{i % users:03d}",
                message_id=f"{prefix}-{i}",
                event=["Song Played", "Message Sent", "Session Started"][i % 3],
                platform=["ios", "android"][i % 2],
                at=at,
                properties=properties,
            )
        )
    return messages


def test_events_and_rollups_go_in_transactions_of_at_most_100_actions(
    store: DynamoEventStore, dynamodb: Any, calls: ApiCalls
) -> None:
    messages = mixed_batch(250)

    result = store.insert_events(messages)

    assert result.failed == {}
    assert result.written == 250
    sizes = [len(actions) for actions in transactions(calls)]
    assert len(sizes) >= 3
    assert max(sizes) <= TRANSACT_LIMIT
    for actions in transactions(calls):
        keys = [action_key(a) for a in actions]
        assert len(keys) == len(set(keys))
        for action in actions:
            if "Put" in action:
                assert action["Put"]["ConditionExpression"] == "attribute_not_exists(pk)"
    assert calls.of("BatchWriteItem") == []
    assert message_ids(dynamodb) == sorted(m.messageId for m in messages)
    assert snapshot(store) == expected(messages)


def test_the_same_batch_twice_leaves_the_rollups_unchanged(store: DynamoEventStore) -> None:
    messages = mixed_batch(120)
    store.insert_events(messages)
    before = snapshot(store)

    again = store.insert_events(messages)

    assert again.failed == {}
    assert (again.written, again.duplicates) == (0, 120)
    assert snapshot(store) == before == expected(messages)


def test_stored_events_among_new_ones_count_only_the_new_ones(
    store: DynamoEventStore,
) -> None:
    messages = mixed_batch(90)
    store.insert_events(messages[::2])

    result = store.insert_events(messages)

    assert result.failed == {}
    assert (result.written, result.duplicates) == (45, 45)
    assert snapshot(store) == expected(messages)


def test_batches_out_of_order_give_the_same_rollups_as_in_order(
    store_client: Any, sleeps: SleepRecorder
) -> None:
    early = mixed_batch(60, users=10, prefix="early")
    late = [
        m.model_copy(update={"timestamp": m.timestamp + timedelta(days=3)})
        for m in mixed_batch(60, users=10, prefix="late")
    ]
    in_order = DynamoEventStore(TABLE_NAME, store_client, sleep=sleeps)
    other = create_events_table("mysoulmate-test-other")
    reversed_order = DynamoEventStore(other, store_client, sleep=sleeps)

    in_order.insert_events(early)
    in_order.insert_events(late)
    reversed_order.insert_events(late)
    reversed_order.insert_events(early)

    assert snapshot(reversed_order) == snapshot(in_order) == expected(early + late)
    # Each user is first seen once, on the day of their earliest event.
    first_seen = reversed_order.first_seen_users(DAY0, DAY0 + timedelta(days=10))
    assert set(first_seen) == {DAY0, DAY0 + timedelta(days=1)}
    assert sum(len(users) for users in first_seen.values()) == 10


def test_a_batch_processed_concurrently_twice_is_counted_once(events_table: str) -> None:
    store = DynamoEventStore(
        TABLE_NAME,
        SerializedClient(boto3.client("dynamodb", region_name=REGION)),
        sleep=lambda seconds: None,
    )
    messages = mixed_batch(150)
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(store.insert_events(messages)))
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert all(r.failed == {} for r in results)
    assert sum(r.written for r in results) == 150
    assert sum(r.duplicates for r in results) == 150
    assert snapshot(store) == expected(messages)


def test_first_seen_moved_by_another_writer_meanwhile_is_reread(
    store_client: Any, store: DynamoEventStore, sleeps: SleepRecorder
) -> None:
    """Our transaction was planned on a first-seen day another consumer has since moved:
    its condition fails, the store re-reads and plans again, and the user ends up in
    exactly one first-seen set, the earliest day's."""
    other = DynamoEventStore(TABLE_NAME, boto3.client("dynamodb", region_name=REGION), sleep=sleeps)
    store.insert_events(
        [queued_message("alice", message_id="a-3", at=BASE_TIME + timedelta(days=3))]
    )
    interfered: list[bool] = []

    def meanwhile(**_: Any) -> None:
        if not interfered:
            interfered.append(True)
            other.insert_events([queued_message("alice", message_id="a-0", at=BASE_TIME)])

    store_client.meta.events.register("before-call.dynamodb.TransactWriteItems", meanwhile)
    result = store.insert_events(
        [queued_message("alice", message_id="a-1", at=BASE_TIME + timedelta(days=1))]
    )

    assert result.failed == {}
    assert result.written == 1
    first_seen = store.first_seen_users(DAY0, DAY0 + timedelta(days=5))
    assert first_seen == {DAY0: frozenset({"alice"})}


def test_repeat_activity_on_a_day_writes_no_user_set(
    store: DynamoEventStore, calls: ApiCalls
) -> None:
    """A set ADD rewrites the whole set item (its size in WCUs): once a user is in a day's
    sets, their SEEN item says so and later events of that day only count."""
    store.insert_events([queued_message(f"u{i}", message_id=f"a-{i}") for i in range(20)])
    calls.calls.clear()

    store.insert_events(
        [
            queued_message(f"u{i}", message_id=f"b-{i}", at=BASE_TIME + timedelta(hours=1))
            for i in range(20)
        ]
    )

    updated = [
        action_key(a)[1] for actions in transactions(calls) for a in actions if "Update" in a
    ]
    assert updated
    assert all(sk.startswith("COUNT#") for sk in updated)
    assert store.rollup_counts(DAY0, DAY0)[0].events == 40
    assert len(store.rollup_users(DAY0, DAY0, by_event=False)[0].users) == 20


def test_user_sets_are_sharded_so_no_item_grows_with_all_users(
    store: DynamoEventStore, dynamodb: Any
) -> None:
    users = 320
    for start in range(0, users, 80):
        store.insert_events(
            [queued_message(f"user-{i:05d}", message_id=f"m-{i}") for i in range(start, start + 80)]
        )

    items = dynamodb.query(
        TableName=TABLE_NAME,
        KeyConditionExpression="pk = :pk AND begins_with(sk, :active)",
        ExpressionAttributeValues={":pk": {"S": "ROLLUP#2026-01-31"}, ":active": {"S": "ACTIVE#"}},
    )["Items"]
    sizes = [len(item["users"]["SS"]) for item in items]
    assert len(items) == USER_SET_SHARDS
    assert sum(sizes) == users
    # crc32 spreads ids evenly: no shard holds much more than its share.
    assert max(sizes) <= 2 * users / USER_SET_SHARDS
    [row] = store.rollup_users(DAY0, DAY0, by_event=False)
    assert len(row.users) == users


# -- contention and throttling -----------------------------------------------------------------


class Cancel:
    """Makes TransactWriteItems fail as DynamoDB does under contention (TransactionConflict
    cancellation reasons) on the calls ``should_fail`` picks, without reaching moto."""

    def __init__(self, client: Any, should_fail: Any, reason: str = "TransactionConflict") -> None:
        self.calls = 0
        self._should_fail = should_fail
        self._reason = reason
        client.meta.events.register("before-call.dynamodb.TransactWriteItems", self._before)

    def _before(self, params: dict[str, Any], **_: Any) -> Any:
        call = self.calls
        self.calls += 1
        if not self._should_fail(call):
            return None
        actions = json.loads(params["body"])["TransactItems"]
        reasons = [{"Code": self._reason}] + [{"Code": "None"}] * (len(actions) - 1)
        error = {"Code": "TransactionCanceledException", "Message": "Transaction cancelled"}
        return SimpleNamespace(status_code=400, headers={}), {
            "Error": error,
            "CancellationReasons": reasons,
            "ResponseMetadata": {"HTTPStatusCode": 400},
        }


def test_a_conflicting_transaction_is_retried_after_a_backoff(
    store_client: Any, store: DynamoEventStore, sleeps: SleepRecorder
) -> None:
    cancel = Cancel(store_client, lambda call: call == 0)
    messages = [queued_message("alice", message_id=f"m-{i}") for i in range(10)]

    result = store.insert_events(messages)

    assert cancel.calls == 2
    assert result.failed == {}
    assert result.written == 10
    assert len(sleeps.delays) == 1
    assert 0 <= sleeps.delays[0] <= backoff_bound(0)
    assert snapshot(store) == expected(messages)


@pytest.mark.parametrize("reason", ["TransactionConflict", "ThrottlingError"])
def test_events_cancelled_on_every_attempt_are_reported_failed_not_raised(
    store_client: Any, store: DynamoEventStore, sleeps: SleepRecorder, dynamodb: Any, reason: str
) -> None:
    cancel = Cancel(store_client, lambda call: True, reason)
    messages = [queued_message("alice", message_id=f"m-{i}") for i in range(3)]

    result = store.insert_events(messages)

    assert set(result.failed) == {m.key for m in messages}
    assert all("after retries" in why for why in result.failed.values())
    assert result.written == 0
    assert message_ids(dynamodb) == []
    assert store.rollup_counts(DAY0, DAY0) == []
    assert cancel.calls == MAX_WRITE_ATTEMPTS
    # A sleep is only worth taking before another attempt.
    assert len(sleeps.delays) == MAX_WRITE_ATTEMPTS - 1
    for attempt, delay in enumerate(sleeps.delays):
        assert 0 <= delay <= backoff_bound(attempt)


def test_a_batch_after_a_failed_one_is_counted_once(
    store_client: Any, store: DynamoEventStore, sleeps: SleepRecorder
) -> None:
    """Redelivery after a failure (the queue retries the records) stores and counts once."""
    messages = mixed_batch(50)
    failing = Cancel(store_client, lambda call: call >= 1)
    first = store.insert_events(messages)
    assert first.failed
    assert first.written
    failing._should_fail = lambda call: False

    second = store.insert_events(messages)

    assert second.failed == {}
    assert (first.written + second.written) == 50
    assert snapshot(store) == expected(messages)


# -- reads -----------------------------------------------------------------------------------


def test_events_filtered_by_time_and_name_page_without_short_pages(
    store: DynamoEventStore,
) -> None:
    messages = [
        queued_message(
            "alice",
            message_id=f"m-{i:02d}",
            event="Song Played" if i % 3 == 0 else "Other",
            at=BASE_TIME + timedelta(minutes=i),
        )
        for i in range(60)
    ]
    messages.append(queued_message("alice", message_id="id-1", type="identify", at=BASE_TIME))
    store.insert_events(messages)
    start, end = BASE_TIME + timedelta(minutes=3), BASE_TIME + timedelta(minutes=45)

    pages, cursor = [], None
    while True:
        page = store.list_events("alice", 4, cursor, start=start, end=end, event="Song Played")
        pages.append([e.messageId for e in page.events])
        cursor = page.next_cursor
        if cursor is None:
            break
        assert len(pages) < 10

    wanted = [f"m-{i:02d}" for i in range(45, 2, -1) if i % 3 == 0]  # 45 and 3 inclusive
    assert [m for page in pages for m in page] == wanted
    assert [len(p) for p in pages] == [4, 4, 4, 3]
    with pytest.raises(InvalidRequestError):
        store.list_events(
            "alice", 4, store.list_events("alice", 4, None).next_cursor, event="Other"
        )


def test_event_points_are_track_events_oldest_first_ties_by_message_id(
    store: DynamoEventStore,
) -> None:
    store.insert_events(
        [
            queued_message("alice", message_id="b", at=BASE_TIME),
            queued_message("alice", message_id="a", at=BASE_TIME, event="Other"),
            queued_message("alice", message_id="c", at=BASE_TIME - timedelta(seconds=1)),
            queued_message("alice", message_id="i", type="identify", at=BASE_TIME),
        ]
    )

    points = store.user_event_points("alice")

    assert [(p.message_id, p.event) for p in points] == [
        ("c", "Song Played"),
        ("a", "Other"),
        ("b", "Song Played"),
    ]
    assert points[1].ts == "2026-01-31T12:00:00.000000Z"


def test_funnel_candidates_use_exact_times_not_just_days(store: DynamoEventStore) -> None:
    start = BASE_TIME
    store.insert_events(
        [
            # same day as the window but before it: not a candidate
            queued_message("early", event="Signup", at=start - timedelta(hours=1)),
            queued_message("early", event="Pay", at=start + timedelta(hours=1)),
            queued_message("ok", message_id="s", event="Signup", at=start + timedelta(minutes=5)),
            queued_message("ok", message_id="p", event="Pay", at=start + timedelta(hours=2)),
            queued_message("ok", message_id="x", event="Noise", at=start + timedelta(hours=3)),
            queued_message("ok", message_id="late", event="Pay", at=start + timedelta(days=9)),
            queued_message("other", event="Pay", at=start + timedelta(minutes=5)),
        ]
    )

    found = dict(
        store.funnel_candidates(
            "Signup",
            start,
            start + timedelta(hours=6),
            start + timedelta(days=7),
            frozenset({"Signup", "Pay"}),
        )
    )

    assert list(found) == ["ok"]
    assert [p.message_id for p in found["ok"]] == ["s", "p"]


def test_revenue_is_exact_integer_micros(store: DynamoEventStore) -> None:
    store.insert_events(
        [
            queued_message("alice", properties={"revenue": 0.1}),
            queued_message("bob", properties={"revenue": 0.2}),
            queued_message("bob", properties={"revenue": 2, "currency": "eur"}),
        ]
    )

    rows = store.rollup_revenue(DAY0, DAY0)

    assert [(r.currency, r.micros) for r in rows] == [("EUR", 2_000_000), ("USD", 300_000)]
    assert all(type(r.micros) is int for r in rows)


def test_read_errors_are_storage_unavailable(store_client: Any) -> None:
    store = DynamoEventStore("no-such-table", store_client)

    for read in (
        lambda: store.rollup_counts(DAY0, DAY0),
        lambda: store.user_event_points("alice"),
        lambda: store.list_events("alice", 5, None, event="x"),
        lambda: store.list_audit(5, None),
    ):
        with pytest.raises(StorageUnavailableError):
            read()


# -- GDPR erasure and audit -------------------------------------------------------------------


def test_delete_removes_the_user_from_every_set_and_keeps_counts(
    store: DynamoEventStore, calls: ApiCalls, dynamodb: Any
) -> None:
    messages = mixed_batch(200, users=4)
    store.insert_events(messages)
    apply(store, identify("u001", 1, {"plan": "pro"}))
    counts, revenue = store.rollup_counts(DAY0, DAY1), store.rollup_revenue(DAY0, DAY1)
    calls.calls.clear()

    erased = store.delete_user("u001", ERASED_AT)

    assert erased == ErasureResult(
        events=sum(1 for m in messages if m.userId == "u001"), profile=True
    )
    assert all(len(p["RequestItems"][TABLE_NAME]) <= 25 for p in calls.of("BatchWriteItem"))
    assert all(len(p["TransactItems"]) <= TRANSACT_LIMIT for p in calls.of("TransactWriteItems"))
    rows = store.rollup_users(DAY0, DAY1, by_event=True)
    assert rows
    assert all("u001" not in row.users for row in rows)
    assert all("u000" in r.users for r in rows if r.platform == "ios" and r.event == "")
    first_seen = store.first_seen_users(DAY0, DAY1)
    assert "u001" not in set().union(*first_seen.values())
    assert store.rollup_counts(DAY0, DAY1) == counts
    assert store.rollup_revenue(DAY0, DAY1) == revenue
    assert store.get_profile("u001") is None
    assert store.user_event_points("u001") == []
    left = dynamodb.query(
        TableName=TABLE_NAME,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": "USER#u001"}},
    )["Items"]
    # Only the tombstone stays: the SEEN item with the erasure time and nothing else.
    assert [(item["sk"]["S"], sorted(item)) for item in left] == [("SEEN", ["erased", "pk", "sk"])]
    assert store.delete_user("u001", ERASED_AT) == ErasureResult(events=0, profile=False)


def test_a_user_erased_then_active_again_is_counted_anew(store: DynamoEventStore) -> None:
    store.insert_events([queued_message("alice", message_id="m-1")])
    store.delete_user("alice", BASE_TIME + timedelta(hours=1))  # m-2 arrives after it

    store.insert_events(
        [queued_message("alice", message_id="m-2", at=BASE_TIME + timedelta(days=1))]
    )

    assert store.first_seen_users(DAY0, DAY1) == {DAY1: frozenset({"alice"})}
    users = {(r.day, r.event): r.users for r in store.rollup_users(DAY0, DAY1, by_event=True)}
    assert users == {(DAY1, ""): {"alice"}, (DAY1, "Song Played"): {"alice"}}


def audit(n: int, subject: str, minutes: int) -> AuditEntry:
    return AuditEntry(
        id=f"a-{n:02d}",
        at=BASE_TIME + timedelta(minutes=minutes),
        actor="ops",
        action="export",
        subject=subject,
    )


def test_audit_pages_newest_first_optionally_by_subject(store: DynamoEventStore) -> None:
    entries = [audit(i, "alice" if i % 3 == 0 else "bob", minutes=i // 2) for i in range(20)]
    for entry in entries:
        store.append_audit(entry)

    def all_pages(subject: str | None) -> list[str]:
        seen, cursor = [], None
        while True:
            page = store.list_audit(3, cursor, subject)
            assert page.entries or cursor is None
            seen += [e.id for e in page.entries]
            cursor = page.next_cursor
            if cursor is None:
                return seen

    newest_first = [e.id for e in sorted(entries, key=lambda e: (e.at, e.id), reverse=True)]
    assert all_pages(None) == newest_first
    alice = [
        e.id
        for e in sorted(entries, key=lambda e: (e.at, e.id), reverse=True)
        if e.subject == "alice"
    ]
    assert all_pages("alice") == alice
    bobs_cursor = store.list_audit(3, None, "bob").next_cursor
    with pytest.raises(InvalidRequestError):
        store.list_audit(3, bobs_cursor, "alice")


# -- pagination (what every backend shares: tests/contract/test_storage_contract.py) ----------


def test_pages_over_events_with_equal_timestamps_lose_and_repeat_nothing(
    store: DynamoEventStore,
) -> None:
    messages = [queued_message("alice", message_id=f"m-{i:03d}", at=BASE_TIME) for i in range(45)]
    store.insert_events(messages)

    seen: list[str] = []
    cursor = None
    for _ in range(10):
        page = store.list_events("alice", 10, cursor)
        seen.extend(e.messageId for e in page.events)
        cursor = page.next_cursor
        if cursor is None:
            break

    assert cursor is None
    assert sorted(seen) == sorted(m.messageId for m in messages)
    assert len(seen) == len(set(seen))


def test_a_page_exactly_at_the_end_has_no_cursor(store: DynamoEventStore) -> None:
    store.insert_events(
        [
            queued_message("alice", message_id=f"m-{i}", at=BASE_TIME + timedelta(seconds=i))
            for i in range(4)
        ]
    )

    first = store.list_events("alice", 2, None)
    second = store.list_events("alice", 2, first.next_cursor)

    assert [e.messageId for e in first.events] == ["m-3", "m-2"]
    assert [e.messageId for e in second.events] == ["m-1", "m-0"]
    assert second.next_cursor is None


def _cursor_of_page(store: DynamoEventStore, user: str) -> str:
    store.insert_events(
        [
            queued_message(user, message_id=f"{user}-{i}", at=BASE_TIME + timedelta(seconds=i))
            for i in range(3)
        ]
    )
    cursor = store.list_events(user, 1, None).next_cursor
    assert cursor is not None
    return cursor


def test_a_cursor_from_another_user_is_rejected(store: DynamoEventStore) -> None:
    bobs_cursor = _cursor_of_page(store, "bob")
    _cursor_of_page(store, "alice")

    with pytest.raises(InvalidRequestError) as caught:
        store.list_events("alice", 1, bobs_cursor)

    assert caught.value.status_code == 422
    assert caught.value.code == "invalid_cursor"


@pytest.mark.parametrize(
    "cursor",
    [
        encode_cursor({"pk": "USER#alice", "sk": "EVENT#x"}),  # keys missing
        encode_cursor({"pk": "USER#alice", "sk": 1, "gsi1pk": "USER#alice", "gsi1sk": "x"}),
    ],
    ids=["missing-keys", "non-string"],
)
def test_a_cursor_not_of_this_table_is_rejected(store: DynamoEventStore, cursor: str) -> None:
    _cursor_of_page(store, "alice")

    with pytest.raises(InvalidRequestError) as caught:
        store.list_events("alice", 1, cursor)

    assert caught.value.status_code == 422
    assert caught.value.code == "invalid_cursor"


def test_cursor_is_opaque_json_of_the_last_key(store: DynamoEventStore) -> None:
    """The cursor round-trips through URLs: URL-safe base64 with no padding."""
    cursor = _cursor_of_page(store, "alice")

    assert set(cursor) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    position = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    assert position["pk"] == "USER#alice"


# -- profiles -------------------------------------------------------------------------------


def identify(
    user: str, seconds: int, traits: dict[str, Any] | None = None, **fields: Any
) -> QueuedMessage:
    return queued_message(
        user,
        type="identify",
        at=BASE_TIME + timedelta(seconds=seconds),
        traits=traits or {},
        **fields,
    )


def apply(store: DynamoEventStore, message: QueuedMessage) -> Profile:
    return store.update_profile(message.userId, partial(merge_identify_for, message))


def merge_identify_for(message: QueuedMessage, profile: Profile | None) -> Profile:
    return merge_identify(profile, message)


def test_later_identify_wins(store: DynamoEventStore) -> None:
    apply(store, identify("alice", 10, {"plan": "free", "name": "Al"}))
    apply(store, identify("alice", 20, {"plan": "pro"}))

    profile = store.get_profile("alice")
    assert profile is not None
    assert profile.traits == {"plan": "pro", "name": "Al"}
    assert profile.updatedAt == BASE_TIME + timedelta(seconds=20)


def test_an_older_identify_arriving_late_does_not_overwrite(store: DynamoEventStore) -> None:
    apply(store, identify("alice", 20, {"plan": "pro"}))
    apply(store, identify("alice", 10, {"plan": "free", "name": "Al"}))

    profile = store.get_profile("alice")
    assert profile is not None
    assert profile.traits == {"plan": "pro", "name": "Al"}
    assert profile.updatedAt == BASE_TIME + timedelta(seconds=20)


def test_traits_once_only_fills_missing_traits(store: DynamoEventStore) -> None:
    apply(store, identify("alice", 10, {"plan": "pro"}))
    apply(
        store,
        identify("alice", 20, traitsOnce={"plan": "free", "firstSeen": "2026-01-31"}),
    )
    apply(store, identify("alice", 30, traitsOnce={"firstSeen": "2027-01-01"}))

    profile = store.get_profile("alice")
    assert profile is not None
    assert profile.traits == {"plan": "pro", "firstSeen": "2026-01-31"}


def test_profile_is_stored_under_the_user_profile_key(
    store: DynamoEventStore, dynamodb: Any
) -> None:
    apply(store, identify("alice", 10, {"plan": "pro"}, anonymousId="anon-1"))

    item = dynamodb.get_item(
        TableName=TABLE_NAME, Key={"pk": {"S": "USER#alice"}, "sk": {"S": "PROFILE"}}
    )["Item"]
    doc = json.loads(item["doc"]["S"])
    assert doc["traits"] == {"plan": "pro"}
    assert doc["anonymousIds"] == ["anon-1"]


def test_concurrent_updates_do_not_lose_traits(events_table: str, sleeps: SleepRecorder) -> None:
    """Writers that read the same version all try to write; the conditional put lets one
    win and the others merge again, so every trait survives."""
    writers = 4
    store = DynamoEventStore(
        TABLE_NAME, SerializedClient(boto3.client("dynamodb", region_name=REGION)), sleep=sleeps
    )
    all_read = threading.Barrier(writers, timeout=30)
    first_merge_done: set[int] = set()
    merges = 0
    merges_lock = threading.Lock()
    errors: list[BaseException] = []

    def writer(index: int) -> None:
        message = identify("alice", index, {f"trait{index}": index})

        def update(profile: Profile | None) -> Profile:
            nonlocal merges
            with merges_lock:
                merges += 1
            if index not in first_merge_done:
                first_merge_done.add(index)
                all_read.wait()  # everyone has read the same (empty) profile
            return merge_identify(profile, message)

        try:
            store.update_profile("alice", update)
        except BaseException as exc:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    profile = store.get_profile("alice")
    assert profile is not None
    assert profile.traits == {f"trait{i}": i for i in range(writers)}
    assert profile.version == writers
    # The race really happened: every writer but the first had to merge again.
    assert merges >= 2 * writers - 1
