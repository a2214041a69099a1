"""The embedded store: exactly-once writes under concurrency, pagination, profiles."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from mysoulmate.analytics.ingest import IngestBatch, PoisonMessageError
from mysoulmate.analytics.models import QueuedMessage
from mysoulmate.core.errors import InvalidRequestError
from mysoulmate.storage.sqlite.store import SqliteEventStore

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def track(message_id: str, user: str = "alice", minutes: int = 0) -> QueuedMessage:
    at = T0 + timedelta(minutes=minutes)
    return QueuedMessage(
        type="track", messageId=message_id, userId=user, event="e", timestamp=at, receivedAt=at
    )


@pytest.fixture
def store(tmp_path: Path) -> SqliteEventStore:
    return SqliteEventStore(tmp_path / "a.db")


def test_same_message_twice_is_stored_once(store: SqliteEventStore) -> None:
    first = store.insert_events([track("m1"), track("m1")])
    second = store.insert_events([track("m1")])
    assert (first.written, first.duplicates) == (1, 1)
    assert (second.written, second.duplicates) == (0, 1)
    assert [e.messageId for e in store.list_events("alice", 10, None).events] == ["m1"]


def test_message_ids_are_scoped_per_user(store: SqliteEventStore) -> None:
    store.insert_events([track("m1", "alice"), track("m1", "bob")])
    assert len(store.list_events("alice", 10, None).events) == 1
    assert len(store.list_events("bob", 10, None).events) == 1


def test_concurrent_writers_of_the_same_ids_store_each_once(store: SqliteEventStore) -> None:
    messages = [track(f"m{i}", minutes=i) for i in range(50)]
    threads = [threading.Thread(target=store.insert_events, args=(messages,)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    events = store.list_events("alice", 200, None).events
    assert len(events) == 50
    assert len({e.messageId for e in events}) == 50


def test_pages_are_newest_first_without_gaps(store: SqliteEventStore) -> None:
    store.insert_events([track(f"m{i:03d}", minutes=i // 2) for i in range(120)])
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


def test_tampered_cursor_is_a_client_error(store: SqliteEventStore) -> None:
    with pytest.raises(InvalidRequestError):
        store.list_events("alice", 10, "bm90LWEtY3Vyc29y")


def test_ingest_batch_isolates_poison_records(store: SqliteEventStore) -> None:
    batch = IngestBatch(store)
    batch.add("r1", track("m1").model_dump_json())
    with pytest.raises(PoisonMessageError):
        batch.add("r2", '{"type": "track"}')
    batch.add("r3", track("m1").model_dump_json())  # duplicate within the batch
    outcome = batch.flush()
    assert outcome.failed_records == {}
    assert outcome.stored == 1
    assert len(store.list_events("alice", 10, None).events) == 1


def test_identify_merges_profile_through_the_batch(store: SqliteEventStore) -> None:
    at = T0
    message = QueuedMessage(
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
        batch.add("r1", message.model_dump_json())
        batch.flush()
    profile = store.get_profile("alice")
    assert profile is not None
    assert profile.traits == {"plan": "pro", "signupSource": "ad"}
