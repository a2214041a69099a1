"""The embedded store: exactly-once writes under concurrency.

Behaviour every backend shares (duplicates, pages, cursors, batches, profiles) is covered
by the contract suite, tests/contract/test_storage_contract.py.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from mysoulmate.analytics.models import QueuedMessage
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
