"""DynamoEventStore against moto: idempotent bulk writes within AWS's limits, retries of
UnprocessedItems, newest-first pagination, and profile merges that never lose a trait."""

from __future__ import annotations

import base64
import json
import threading
from datetime import timedelta
from functools import partial
from typing import Any

import boto3
import pytest
from mysoulmate.analytics.models import Profile, QueuedMessage
from mysoulmate.analytics.profiles import merge_identify
from mysoulmate.errors import InvalidRequestError
from mysoulmate.storage.base import encode_cursor
from mysoulmate.storage.dynamodb import (
    BACKOFF_BASE_SECONDS,
    BACKOFF_CAP_SECONDS,
    MAX_WRITE_ATTEMPTS,
    DynamoEventStore,
)

from tests.integration.conftest import (
    BASE_TIME,
    REGION,
    TABLE_NAME,
    ApiCalls,
    SerializedClient,
    event_items,
    queued_message,
)


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
def client(events_table: str) -> Any:
    return boto3.client("dynamodb", region_name=REGION)


@pytest.fixture
def sleeps() -> SleepRecorder:
    return SleepRecorder()


@pytest.fixture
def store(client: Any, sleeps: SleepRecorder) -> DynamoEventStore:
    return DynamoEventStore(TABLE_NAME, client, sleep=sleeps)


@pytest.fixture
def calls(client: Any) -> ApiCalls:
    return ApiCalls(client, "dynamodb")


def batch_items(params: dict[str, Any]) -> list[dict[str, Any]]:
    return list(params["RequestItems"][TABLE_NAME])


def item_key(request: dict[str, Any]) -> tuple[str, str]:
    item = request["PutRequest"]["Item"]
    return (item["pk"]["S"], item["sk"]["S"])


def message_ids(dynamodb: Any) -> list[str]:
    return sorted(item["sk"]["S"].removeprefix("EVENT#") for item in event_items(dynamodb))


# -- idempotent bulk writes ----------------------------------------------------------------


def test_same_message_in_separate_calls_is_stored_once(
    store: DynamoEventStore, dynamodb: Any
) -> None:
    message = queued_message("alice", message_id="m-1")

    first = store.insert_events([message])
    again = store.insert_events([message])

    assert first.failed == {}
    assert again.failed == {}
    assert message_ids(dynamodb) == ["m-1"]
    page = store.list_events("alice", 10, None)
    assert [e.messageId for e in page.events] == ["m-1"]


def test_same_message_twice_in_one_call_is_written_once_and_counted_as_duplicate(
    store: DynamoEventStore, dynamodb: Any, calls: ApiCalls
) -> None:
    message = queued_message("alice", message_id="m-1")
    other = queued_message("alice", message_id="m-2")

    result = store.insert_events([message, other, message])

    assert result.failed == {}
    assert result.written == 2
    assert result.duplicates == 1
    assert message_ids(dynamodb) == ["m-1", "m-2"]
    # AWS rejects a BatchWriteItem naming one key twice; the store must not send one.
    for params in calls.of("BatchWriteItem"):
        keys = [item_key(r) for r in batch_items(params)]
        assert len(keys) == len(set(keys))


def test_same_message_id_for_two_users_is_two_events(
    store: DynamoEventStore, dynamodb: Any
) -> None:
    result = store.insert_events(
        [queued_message("alice", message_id="m-1"), queued_message("bob", message_id="m-1")]
    )

    assert result.written == 2
    assert result.duplicates == 0
    assert len(event_items(dynamodb)) == 2
    assert [e.messageId for e in store.list_events("bob", 10, None).events] == ["m-1"]


def test_sixty_events_are_written_in_calls_of_at_most_25_items(
    store: DynamoEventStore, dynamodb: Any, calls: ApiCalls
) -> None:
    messages = [queued_message("alice", message_id=f"m-{i:03d}") for i in range(60)]

    result = store.insert_events(messages)

    sizes = [len(batch_items(p)) for p in calls.of("BatchWriteItem")]
    assert sizes == [25, 25, 10]
    assert result.written == 60
    assert result.failed == {}
    assert message_ids(dynamodb) == sorted(m.messageId for m in messages)


# -- UnprocessedItems ------------------------------------------------------------------------


class Throttle:
    """Makes BatchWriteItem leave items unwritten and report them as UnprocessedItems, as
    DynamoDB does under throttling: the chosen items are removed from the request before it
    is sent, and handed back in the parsed response."""

    def __init__(self, client: Any, should_drop: Any) -> None:
        self.requests: list[list[dict[str, Any]]] = []
        self._should_drop = should_drop
        self._dropped: list[dict[str, Any]] = []
        events = client.meta.events
        events.register("provide-client-params.dynamodb.BatchWriteItem", self._before)
        events.register("after-call.dynamodb.BatchWriteItem", self._after)

    def _before(self, params: dict[str, Any], **_: Any) -> None:
        requests = list(params["RequestItems"][TABLE_NAME])
        call_index = len(self.requests)
        self.requests.append(requests)
        self._dropped = [r for r in requests if self._should_drop(call_index, r)]
        kept = [r for r in requests if not self._should_drop(call_index, r)]
        params["RequestItems"] = {TABLE_NAME: kept} if kept else {}

    def _after(self, parsed: dict[str, Any], **_: Any) -> None:
        if self._dropped:
            parsed["UnprocessedItems"] = {TABLE_NAME: self._dropped}


def test_unprocessed_items_are_retried_after_a_backoff_until_stored(
    client: Any, store: DynamoEventStore, sleeps: SleepRecorder, dynamodb: Any
) -> None:
    messages = [queued_message("alice", message_id=f"m-{i}") for i in range(10)]
    unlucky = {("USER#alice", f"EVENT#m-{i}") for i in (2, 5, 7)}
    throttle = Throttle(client, lambda call, r: call == 0 and item_key(r) in unlucky)

    result = store.insert_events(messages)

    assert len(throttle.requests) == 2
    assert len(throttle.requests[0]) == 10
    assert sorted(item_key(r) for r in throttle.requests[1]) == sorted(unlucky)
    assert result.failed == {}
    assert result.written == 10
    assert message_ids(dynamodb) == sorted(m.messageId for m in messages)
    assert len(sleeps.delays) == 1
    assert 0 <= sleeps.delays[0] <= backoff_bound(0)


def test_items_unprocessed_on_every_attempt_are_reported_failed_not_raised(
    client: Any, store: DynamoEventStore, sleeps: SleepRecorder, dynamodb: Any
) -> None:
    messages = [queued_message("alice", message_id=f"m-{i}") for i in range(30)]
    # m-3 sits in the first chunk of 25, m-27 in the second.
    stuck = {("USER#alice", "EVENT#m-3"), ("USER#alice", "EVENT#m-27")}
    throttle = Throttle(client, lambda call, r: item_key(r) in stuck)
    sleeps.count_calls = lambda: len(throttle.requests)

    result = store.insert_events(messages)

    assert set(result.failed) == {("alice", "m-3"), ("alice", "m-27")}
    assert all("unprocessed" in reason for reason in result.failed.values())
    assert result.written == 28
    assert message_ids(dynamodb) == sorted(
        m.messageId for m in messages if m.messageId not in ("m-3", "m-27")
    )
    # Each chunk: one full call, then retries of just the stuck item up to the limit.
    assert len(throttle.requests) == 2 * MAX_WRITE_ATTEMPTS
    assert [len(r) for r in throttle.requests] == [25, *[1] * 7, 5, *[1] * 7]
    # Every delay stays within the full-jitter bound of the attempt it follows.
    assert len(sleeps.delays) >= 2 * (MAX_WRITE_ATTEMPTS - 1)
    for delay, calls_so_far in zip(sleeps.delays, sleeps.calls_before, strict=True):
        attempt = (calls_so_far - 1) % MAX_WRITE_ATTEMPTS
        assert 0 <= delay <= backoff_bound(attempt)


def test_no_backoff_sleep_after_the_last_attempt(
    client: Any, store: DynamoEventStore, sleeps: SleepRecorder
) -> None:
    """A sleep is only worth taking before another attempt: sleeping after the final one
    delays the consumer (up to BACKOFF_CAP_SECONDS per chunk) and changes nothing."""
    stuck = ("USER#alice", "EVENT#m-0")
    throttle = Throttle(client, lambda call, r: item_key(r) == stuck)

    result = store.insert_events([queued_message("alice", message_id="m-0")])

    assert set(result.failed) == {("alice", "m-0")}
    assert len(throttle.requests) == MAX_WRITE_ATTEMPTS
    assert len(sleeps.delays) == MAX_WRITE_ATTEMPTS - 1


# -- pagination ---------------------------------------------------------------------------------


def test_pages_newest_first_without_gaps_or_duplicates(store: DynamoEventStore) -> None:
    messages = [
        queued_message("alice", message_id=f"m-{i:03d}", at=BASE_TIME + timedelta(minutes=i))
        for i in range(120)
    ]
    # Another user's events must never show up in alice's pages.
    others = [queued_message("bob", message_id=f"b-{i}") for i in range(5)]
    assert store.insert_events([*messages, *others]).failed == {}

    pages = []
    cursor = None
    while True:
        page = store.list_events("alice", 50, cursor)
        pages.append(page)
        cursor = page.next_cursor
        if cursor is None:
            break
        assert len(pages) < 10, "pagination does not terminate"

    assert [len(p.events) for p in pages] == [50, 50, 20]
    assert [p.next_cursor is None for p in pages] == [False, False, True]
    seen = [e.messageId for p in pages for e in p.events]
    assert seen == [f"m-{i:03d}" for i in reversed(range(120))]


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
        "garbage!!",
        "bm90IGpzb24",  # base64 of "not json"
        base64.urlsafe_b64encode(b"[1, 2]").decode(),
        encode_cursor({"pk": "USER#alice", "sk": "EVENT#x"}),  # keys missing
        encode_cursor({"pk": "USER#alice", "sk": 1, "gsi1pk": "USER#alice", "gsi1sk": "x"}),
        base64.urlsafe_b64encode(b"\xff\xfe\xfd").decode(),
    ],
    ids=["not-base64", "not-json", "not-object", "missing-keys", "non-string", "not-utf8"],
)
def test_a_garbage_cursor_is_rejected(store: DynamoEventStore, cursor: str) -> None:
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
