"""The in-process worker under a backlog: its receives grow up to WORKER_MAX_BATCH_SIZE, and
shrink back once it has caught up; every message is stored exactly once either way."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

from mysoulmate.queue.local import LocalQueue, ReceivedMessage
from mysoulmate.runtime.worker import GROWTH_BYTES, LocalWorker
from mysoulmate.storage.sqlite.store import SqliteEventStore

from tests.support.messages import track

AT = datetime(2026, 1, 5, 12, tzinfo=UTC)


def bodies(first: int, count: int) -> list[str]:
    return [
        track(f"user-{n % 7}", "open", AT, message_id=f"w-{n}").model_dump_json()
        for n in range(first, first + count)
    ]


def stored(store: SqliteEventStore) -> int:
    return sum(row.events for row in store.rollup_counts(AT.date(), AT.date()))


class RecordedQueue(LocalQueue):
    """The local queue, noting how many messages each receive asked for, and the characters
    of bodies it returned."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.sizes: list[int] = []
        self.taken: list[int] = []

    def receive(
        self,
        max_messages: int,
        visibility_timeout: float | None = None,
        max_bytes: int | None = None,
    ) -> list[ReceivedMessage]:
        self.sizes.append(max_messages)
        received = super().receive(max_messages, visibility_timeout, max_bytes)
        self.taken.append(sum(len(message.body) for message in received))
        return received


def wait_until_stored(store: SqliteEventStore, count: int, within: float = 30) -> None:
    deadline = time.monotonic() + within
    while stored(store) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    assert stored(store) == count


def drain(queue: LocalQueue, store: SqliteEventStore, count: int, batch: int, most: int) -> None:
    """Run the in-process worker until ``count`` events are stored."""
    worker = LocalWorker(queue, store, batch_size=batch, max_batch_size=most, poll_interval=0.05)
    worker.start()
    try:
        wait_until_stored(store, count)
    finally:
        worker.stop()


def large_bodies(prefix: str, count: int) -> list[str]:
    """Bodies of about 250 KB, as Segment batches can be."""
    padding = "x" * 250_000
    return [
        track(
            f"user-{n % 7}", "open", AT, message_id=f"{prefix}-{n}", blob=padding
        ).model_dump_json()
        for n in range(count)
    ]


def test_receives_grow_under_a_backlog_and_shrink_once_caught_up(tmp_path: Path) -> None:
    queue = RecordedQueue(tmp_path / "queue.db")
    store = SqliteEventStore(tmp_path / "events.db")
    queue.send_batch(bodies(0, 1_500))  # the backlog a burst leaves
    worker = LocalWorker(queue, store, batch_size=100, max_batch_size=500, poll_interval=0.05)
    worker.start()
    try:
        wait_until_stored(store, 1_500)
        # Full batches double the next receive, up to the maximum; 100 + 200 + 400 + 500
        # leave 300, a partial batch: caught up.
        assert queue.sizes[:5] == [100, 200, 400, 500, 500]
        queue.send_batch(bodies(1_500, 30))
        wait_until_stored(store, 1_530)
        assert queue.sizes[-1] == 100  # back to WORKER_BATCH_SIZE
    finally:
        worker.stop()
    assert queue.depth() == (0, 0)
    events = store.list_events("user-0", 1_000, None).events
    assert len(events) == len({e.messageId for e in events}) == len(range(0, 1_530, 7))


def test_a_maximum_below_the_batch_size_means_no_growth(tmp_path: Path) -> None:
    queue = RecordedQueue(tmp_path / "queue.db")
    store = SqliteEventStore(tmp_path / "events.db")
    queue.send_batch(bodies(0, 250))
    drain(queue, store, 250, batch=50, most=1)
    assert set(queue.sizes) == {50}


def test_large_bodies_keep_the_batch_size(tmp_path: Path) -> None:
    """Segment batches of up to 256 KiB per body: a grown receive would hold far more memory,
    so the receive stays at WORKER_BATCH_SIZE (here 10 bodies of ~250 KB: 2.5 MB)."""
    queue = RecordedQueue(tmp_path / "queue.db")
    store = SqliteEventStore(tmp_path / "events.db")
    queue.send_batch(large_bodies("w", 40))
    drain(queue, store, 40, batch=10, most=500)
    assert set(queue.sizes) == {10}


def test_a_grown_receive_stops_at_its_byte_budget(tmp_path: Path) -> None:
    """Small bodies grow the receive; large ones behind them are taken no more than the
    budget allows per batch (bodies vary: the memory of a grown batch stays bounded)."""
    queue = RecordedQueue(tmp_path / "queue.db")
    store = SqliteEventStore(tmp_path / "events.db")
    queue.send_batch(bodies(0, 300))
    queue.send_batch(large_bodies("big", 60))
    drain(queue, store, 360, batch=100, most=500)
    assert queue.sizes[:3] == [100, 200, 400]  # grown on the small ones
    grown = [taken for size, taken in zip(queue.sizes, queue.taken, strict=False) if size > 100]
    assert len(grown) >= 3  # the big bodies are taken grown, a budget's worth at a time
    assert max(grown) <= GROWTH_BYTES
