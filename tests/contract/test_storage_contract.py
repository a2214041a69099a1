"""The store's own writes and reads: exactly-once writes, per-user pages and cursors, and
identifies through a consumer batch. Same answers on every backend.

These were per-backend copies in tests/integration/test_sqlite_store.py and
test_dynamodb_store.py; what only one adapter has (DynamoDB items and transactions, cursor
key formats) stays there.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest
from mysoulmate.analytics.ingest import IngestBatch, PoisonMessageError
from mysoulmate.analytics.models import QueuedMessage
from mysoulmate.analytics.ports import EventStore
from mysoulmate.core.errors import InvalidRequestError

from tests.support.contract import track

T0 = datetime(2026, 1, 1, tzinfo=UTC)
BASE_TIME = datetime(2026, 1, 31, 12, 0, 0, tzinfo=UTC)


def event(message_id: str, user: str = "alice", minutes: int = 0) -> QueuedMessage:
    return track(user, "e", T0 + timedelta(minutes=minutes), message_id=message_id)


def message(user: str, message_id: str, at: datetime = BASE_TIME) -> QueuedMessage:
    return track(user, "Song Played", at, message_id=message_id)


# -- exactly once ---------------------------------------------------------------------------


def test_same_message_twice_is_stored_once(store: EventStore) -> None:
    first = store.insert_events([event("m1"), event("m1")])
    second = store.insert_events([event("m1")])
    assert (first.written, first.duplicates) == (1, 1)
    assert (second.written, second.duplicates) == (0, 1)
    assert [e.messageId for e in store.list_events("alice", 10, None).events] == ["m1"]


def test_same_message_in_separate_calls_is_stored_once(store: EventStore) -> None:
    one = message("alice", "m-1")

    first = store.insert_events([one])
    again = store.insert_events([one])

    assert first.failed == {}
    assert again.failed == {}
    page = store.list_events("alice", 10, None)
    assert [e.messageId for e in page.events] == ["m-1"]


def test_same_message_twice_in_one_call_is_written_once_and_counted_as_duplicate(
    store: EventStore,
) -> None:
    one = message("alice", "m-1")
    other = message("alice", "m-2")

    result = store.insert_events([one, other, one])

    assert result.failed == {}
    assert result.written == 2
    assert result.duplicates == 1


def test_message_ids_are_scoped_per_user(store: EventStore) -> None:
    store.insert_events([event("m1", "alice"), event("m1", "bob")])
    assert len(store.list_events("alice", 10, None).events) == 1
    assert len(store.list_events("bob", 10, None).events) == 1


def test_same_message_id_for_two_users_is_two_events(store: EventStore) -> None:
    result = store.insert_events([message("alice", "m-1"), message("bob", "m-1")])

    assert result.written == 2
    assert result.duplicates == 0
    assert [e.messageId for e in store.list_events("bob", 10, None).events] == ["m-1"]


# -- pages and cursors ----------------------------------------------------------------------


def test_pages_are_newest_first_without_gaps(store: EventStore) -> None:
    store.insert_events([event(f"m{i:03d}", minutes=i // 2) for i in range(120)])
    seen: list[str] = []
    cursor = None
    sizes = []
    while True:
        page = store.list_events("alice", 50, cursor)
        sizes.append(len(page.events))
        seen += [e.messageId for e in page.events]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert sizes == [50, 50, 20]
    assert len(set(seen)) == 120
    times = [e.timestamp for e in store.list_events("alice", 200, None).events]
    assert times == sorted(times, reverse=True)


def test_pages_newest_first_without_gaps_or_duplicates(store: EventStore) -> None:
    messages = [
        message("alice", f"m-{i:03d}", at=BASE_TIME + timedelta(minutes=i)) for i in range(120)
    ]
    # Another user's events must never show up in alice's pages.
    others = [message("bob", f"b-{i}") for i in range(5)]
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


def test_tampered_cursor_is_a_client_error(store: EventStore) -> None:
    with pytest.raises(InvalidRequestError):
        store.list_events("alice", 10, "bm90LWEtY3Vyc29y")


def _cursor_of_page(store: EventStore, user: str) -> str:
    store.insert_events(
        [message(user, f"{user}-{i}", at=BASE_TIME + timedelta(seconds=i)) for i in range(3)]
    )
    cursor = store.list_events(user, 1, None).next_cursor
    assert cursor is not None
    return cursor


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage!!",
        "bm90IGpzb24",  # base64 of "not json"
        base64.urlsafe_b64encode(b"[1, 2]").decode(),
        base64.urlsafe_b64encode(b"\xff\xfe\xfd").decode(),
    ],
    ids=["not-base64", "not-json", "not-object", "not-utf8"],
)
def test_a_garbage_cursor_is_rejected(store: EventStore, cursor: str) -> None:
    _cursor_of_page(store, "alice")

    with pytest.raises(InvalidRequestError) as caught:
        store.list_events("alice", 1, cursor)

    assert caught.value.status_code == 422
    assert caught.value.code == "invalid_cursor"


# -- a consumer batch -----------------------------------------------------------------------


def test_ingest_batch_isolates_poison_records(store: EventStore) -> None:
    batch = IngestBatch(store)
    batch.add("r1", event("m1").model_dump_json())
    with pytest.raises(PoisonMessageError):
        batch.add("r2", '{"type": "track"}')
    batch.add("r3", event("m1").model_dump_json())  # duplicate within the batch
    outcome = batch.flush()
    assert outcome.failed_records == {}
    assert outcome.stored == 1
    assert len(store.list_events("alice", 10, None).events) == 1


def test_identify_merges_profile_through_the_batch(store: EventStore) -> None:
    at = T0
    identify = QueuedMessage(
        type="identify",
        messageId="i1",
        userId="alice",
        traits={"plan": "pro"},
        traitsOnce={"signupSource": "ad"},
        timestamp=at,
        receivedAt=at,
    )
    for _ in range(2):  # redelivery changes nothing
        batch = IngestBatch(store)
        batch.add("r1", identify.model_dump_json())
        batch.flush()
    profile = store.get_profile("alice")
    assert profile is not None
    assert profile.traits == {"plan": "pro", "signupSource": "ad"}
