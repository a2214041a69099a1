"""The local durable queue behaves like SQS: visibility, receive counts, dead letters."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from mysoulmate.analytics.ports import QueueError
from mysoulmate.queue.limits import MAX_MESSAGE_BYTES
from mysoulmate.queue.local import LocalQueue


@pytest.fixture
def queue(tmp_path: Path) -> LocalQueue:
    return LocalQueue(tmp_path / "q.db", visibility_timeout=30, max_receive_count=3)


def test_received_messages_are_hidden_until_deleted_or_timed_out(queue: LocalQueue) -> None:
    queue.send_batch(["a", "b", "c"])
    first = queue.receive(2)
    assert [m.body for m in first] == ["a", "b"]
    assert [m.body for m in queue.receive(10)] == ["c"]
    assert queue.receive(10) == []
    queue.delete([m.receipt for m in first])
    assert queue.depth() == (1, 0)


def test_undeleted_message_comes_back_after_visibility_timeout(queue: LocalQueue) -> None:
    queue.send("a")
    (first,) = queue.receive(1, visibility_timeout=0.05)
    time.sleep(0.1)
    (again,) = queue.receive(1)
    assert again.id == first.id
    assert again.receive_count == 2
    # The first receipt is stale: deleting with it must not remove the re-received message.
    queue.delete([first.receipt])
    assert queue.depth() == (1, 0)
    queue.delete([again.receipt])
    assert queue.depth() == (0, 0)


def test_message_is_dead_lettered_after_max_receive_count(queue: LocalQueue) -> None:
    queue.send("poison")
    for expected_count in (1, 2, 3):
        (message,) = queue.receive(1, visibility_timeout=0)
        assert message.receive_count == expected_count
    assert queue.receive(1, visibility_timeout=0) == []
    assert queue.depth() == (0, 1)
    (dead,) = queue.dead_letters()
    assert dead.body == "poison"
    assert dead.receive_count == 3


def test_messages_survive_reopening_the_file(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    LocalQueue(path).send_batch([f"m{i}" for i in range(5)])
    reopened = LocalQueue(path)
    assert sorted(m.body for m in reopened.receive(10)) == [f"m{i}" for i in range(5)]


def test_oversized_message_is_refused_and_nothing_is_queued(queue: LocalQueue) -> None:
    with pytest.raises(QueueError):
        queue.send_batch(["ok", "x" * (MAX_MESSAGE_BYTES + 1)])
    assert queue.depth() == (0, 0)


def test_batches_within_sqs_limits() -> None:
    from mysoulmate.queue.limits import batches_within_limits

    calls = batches_within_limits(["x"] * 25)
    assert [len(c) for c in calls] == [10, 10, 5]
    big = "y" * (60 * 1024)
    calls = batches_within_limits([big] * 10)
    assert all(sum(len(b) for b in c) <= 256 * 1024 for c in calls)
    assert sum(len(c) for c in calls) == 10


def test_concurrent_senders_share_commits_and_every_message_is_stored(tmp_path: Path) -> None:
    """Group commit: requests arriving together are stored by one durable commit; each
    sender returns only once its own message is committed, and nothing is lost."""
    import threading

    queue = LocalQueue(tmp_path / "queue.db")
    senders, each = 16, 25
    start = threading.Barrier(senders)
    sent: list[str] = []
    guard = threading.Lock()

    def send_many(n: int) -> None:
        start.wait()
        for i in range(each):
            body = f"m-{n}-{i}"
            queue.send(body)
            # Returned: committed already, so another connection sees it at once.
            with guard:
                sent.append(body)

    threads = [threading.Thread(target=send_many, args=(n,)) for n in range(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stored = sorted(m.body for m in LocalQueue(tmp_path / "queue.db").receive(senders * each))
    assert stored == sorted(sent)
    assert len(stored) == senders * each
    assert queue.commits < senders * each  # commits were shared


def test_a_failed_group_commit_fails_every_sender_of_the_group(tmp_path: Path) -> None:
    import threading

    queue = LocalQueue(tmp_path / "queue.db")
    queue._conn.execute(
        "CREATE TRIGGER refuse BEFORE INSERT ON messages "
        "BEGIN SELECT RAISE(ABORT, 'disk full'); END"
    )
    errors: list[BaseException] = []

    def send(n: int) -> None:
        try:
            queue.send(f"m-{n}")
        except QueueError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(errors) == 8
    assert all("disk full" in str(e) for e in errors)
    assert queue.depth() == (0, 0)


def test_receipts_are_looked_up_by_index_in_queues_made_before_it(tmp_path: Path) -> None:
    """Deleting a stored message by its receipt reads one index entry, not the whole queue
    (a scan per message made the worker's deletes grow with the queue's depth)."""
    import sqlite3

    LocalQueue(tmp_path / "q.db").close()
    older = sqlite3.connect(tmp_path / "q.db")
    older.execute("DROP INDEX messages_receipt")  # as a queue file of an earlier release
    older.close()
    LocalQueue(tmp_path / "q.db").close()
    with sqlite3.connect(tmp_path / "q.db") as conn:
        plan = conn.execute("EXPLAIN QUERY PLAN DELETE FROM messages WHERE receipt = ?", ("r",))
        details = " ".join(row[-1] for row in plan)
    assert "USING INDEX messages_receipt" in details


def test_a_batch_is_filled_past_messages_that_go_to_the_dead_letters(
    queue: LocalQueue,
) -> None:
    queue.send_batch(["poison-1", "poison-2"])
    for _ in range(3):  # both exhaust their receives (max_receive_count=3)
        assert len(queue.receive(2, visibility_timeout=0)) == 2
    queue.send_batch(["a", "b", "c"])
    # Due first, the two go to the dead letters; the batch still holds two live messages.
    assert [m.body for m in queue.receive(2, visibility_timeout=0)] == ["a", "b"]
    assert sorted(d.body for d in queue.dead_letters()) == ["poison-1", "poison-2"]
    assert queue.depth() == (3, 2)


def test_a_receive_costs_its_batch_not_the_depth_of_the_queue(tmp_path: Path) -> None:
    """Counted in SQLite's virtual-machine steps: a receive at a depth of 20,000 does about
    what it does at 1,000 (it sorted every visible message, 49 ms at 100,000)."""

    def steps_of_a_receive(depth: int) -> int:
        queue = LocalQueue(tmp_path / f"depth-{depth}.db")
        for start in range(0, depth, 5_000):
            queue.send_batch(["m"] * min(5_000, depth - start))
        steps = 0

        def count() -> int:
            nonlocal steps
            steps += 1
            return 0

        queue._conn.set_progress_handler(count, 100)
        assert len(queue.receive(100)) == 100
        queue._conn.set_progress_handler(None, 0)
        queue.close()
        return steps

    shallow, deep = steps_of_a_receive(1_000), steps_of_a_receive(20_000)
    assert deep < 1.5 * shallow, (shallow, deep)


def test_a_receive_with_a_byte_budget_reads_no_more_than_it_takes(queue: LocalQueue) -> None:
    queue.send_batch(["s1", "s2", "L" * 3_000, "s3", "L" * 3_000])
    # Small bodies first, then one that would pass the budget: the receive stops before it.
    assert [m.body for m in queue.receive(10, max_bytes=2_000)] == ["s1", "s2"]
    # Alone, an oversized body still comes (a batch is never empty while messages wait).
    assert [len(m.body) for m in queue.receive(10, max_bytes=2_000)] == [3_000]
    assert [m.body for m in queue.receive(10)] == ["s3", "L" * 3_000]
