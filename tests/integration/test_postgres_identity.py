"""PostgreSQL-specific: identity links under real concurrency, bitmaps split across chunks, and
migration 0005.

The contract suite shows what a link does on every backend; these tests force the
interleavings READ COMMITTED alone gets wrong (a link cannot see a consumer's uncommitted
visitor events, a consumer cannot see a link that has not committed) by pausing one side
inside its transaction, and then let consumers and a linker race freely: every event of the
visitor ends up under the user exactly once, and the user is one person in every set.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from typing import Any

import psycopg
import pytest
from mysoulmate.analytics.models import QueuedMessage
from mysoulmate.analytics.ports import ANY_EVENT, EventStore
from mysoulmate.storage.bitmap import UserBitmap
from mysoulmate.storage.postgres import erasures
from mysoulmate.storage.postgres.connection import HEAD_REVISION
from mysoulmate.storage.postgres.migrate import current_revision, migrate
from mysoulmate.storage.postgres.store import PostgresEventStore
from pyroaring import AbstractBitMap

from tests.support.messages import consume, identify_as, jan, track, visit
from tests.support.postgres import alembic, scratch_database

WAIT_SECONDS = 10.0
IDENTITY = "mysoulmate.storage.postgres.identity"  # where the link looks its helpers up
STORE = "mysoulmate.storage.postgres.store"


def message_ids(store: EventStore, user: str) -> list[str]:
    """Every stored message of ``user`` (track and identify), sorted."""
    return sorted(e.messageId for e in store.list_events(user, 1000, None).events)


def active(store: EventStore, day: date) -> UserBitmap:
    union = UserBitmap()
    for row in store.rollup_users(day, day, by_event=False):
        if row.event == ANY_EVENT:
            assert isinstance(row.users, AbstractBitMap)  # Roaring: cached reads are frozen
            union = union | row.users
    return union


def ordinal_of(conninfo: str, user: str) -> int | None:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        row = conn.execute(
            "SELECT ordinal FROM user_ordinals WHERE user_id = %s", (user,)
        ).fetchone()
    return None if row is None else int(row[0])


def wait_for_lock_waiters(conninfo: str, count: int) -> None:
    """Return once ``count`` sessions of the database wait for an advisory (person) lock."""
    deadline = threading.Event()
    timer = threading.Timer(WAIT_SECONDS, deadline.set)
    timer.start()
    try:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            while not deadline.is_set():
                row = conn.execute(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                    "AND database = (SELECT oid FROM pg_database "
                    "WHERE datname = current_database())"
                ).fetchone()
                if row is not None and row[0] >= count:
                    return
                deadline.wait(0.01)
    finally:
        timer.cancel()
    raise AssertionError(f"{count} session(s) never waited for a person lock")


def pause_once(
    original: Callable[..., Any], reached: threading.Event, release: threading.Event
) -> Callable[..., Any]:
    """``original``; its first call then signals ``reached`` and holds the caller's
    transaction open until ``release`` is set."""
    first = threading.Lock()

    def paused(*args: Any) -> Any:
        result = original(*args)
        if first.acquire(blocking=False):
            reached.set()
            if not release.wait(WAIT_SECONDS):
                raise AssertionError("the test never released the paused transaction")
        return result

    return paused


@pytest.fixture
def pooled(
    postgres_store: PostgresEventStore, postgres_database: str
) -> Iterator[PostgresEventStore]:
    """A store over the emptied session database with a connection per concurrent caller."""
    store = PostgresEventStore(postgres_database, pool_size=8)
    yield store
    store.close()


def assert_one_person(store: EventStore, user: str, anonymous_id: str, sent: list[str]) -> None:
    """Every event sent is the user's exactly once, nothing is left under the visitor, and
    the user is counted once, on every day the events fall on."""
    assert message_ids(store, f"anon:{anonymous_id}") == []
    assert store.list_events(f"anon:{anonymous_id}", 10, None).events == []
    assert message_ids(store, user) == sorted(sent)
    assert store.linked_users([anonymous_id]) == {anonymous_id: user}
    assert store.get_profile(f"anon:{anonymous_id}") is None


def test_a_link_waits_for_a_visitors_batch_mid_transaction_and_moves_what_it_stored(
    pooled: PostgresEventStore, postgres_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batch holds the visitor's lock and has not committed: without the lock the link
    would move nothing it can see, and the events would appear under the visitor after."""
    batch = [visit("a-1", jan(3, 9, n)) for n in range(10)]
    locked, release = threading.Event(), threading.Event()
    monkeypatch.setattr(STORE + ".erased_keys", pause_once(erasures.erased_keys, locked, release))
    with ThreadPoolExecutor(max_workers=2) as pool:
        consumer = pool.submit(pooled.insert_events, batch)
        assert locked.wait(WAIT_SECONDS)
        linker = pool.submit(pooled.link_anonymous, "a-1", "ann", jan(3, 10))
        wait_for_lock_waiters(postgres_database, 1)
        assert not linker.done()
        release.set()
        assert consumer.result(timeout=WAIT_SECONDS).written == 10
        link = linker.result(timeout=WAIT_SECONDS)

    assert (link.user_id, link.moved_events) == ("ann", 10)
    assert_one_person(pooled, "ann", "a-1", [m.messageId for m in batch])
    assert len(active(pooled, date(2026, 1, 3))) == 1


def test_a_visitors_batch_waits_for_a_link_mid_transaction_and_the_recheck_moves_it(
    pooled: PostgresEventStore, postgres_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The link holds the visitor's lock and has not committed: the consumer found no link
    before its batch, stores it under the visitor once the link commits, then finds the
    link on its re-check and links again, which moves the batch."""
    consume(pooled, visit("a-2", jan(4, 8)))  # something for the link to move
    batch = [visit("a-2", jan(4, 9, n)) for n in range(10)]
    locked, release = threading.Event(), threading.Event()
    monkeypatch.setattr(
        IDENTITY + ".lock_exclusive", pause_once(erasures.lock_exclusive, locked, release)
    )
    with ThreadPoolExecutor(max_workers=2) as pool:
        linker = pool.submit(pooled.link_anonymous, "a-2", "bo", jan(4, 10))
        assert locked.wait(WAIT_SECONDS)
        consumer = pool.submit(consume, pooled, *batch)
        wait_for_lock_waiters(postgres_database, 1)
        assert not consumer.done()
        release.set()
        assert linker.result(timeout=WAIT_SECONDS).moved_events == 1
        consumer.result(timeout=WAIT_SECONDS)

    first = [m for m in message_ids(pooled, "bo") if m not in {b.messageId for b in batch}]
    assert len(first) == 1
    assert_one_person(pooled, "bo", "a-2", [*first, *(m.messageId for m in batch)])
    assert len(active(pooled, date(2026, 1, 4))) == 1
    counts = {r.event: r.events for r in pooled.rollup_counts(date(2026, 1, 4), date(2026, 1, 4))}
    assert counts == {"tick": 11}


def test_consumers_and_a_linker_racing_leave_one_person_with_every_event_once(
    pooled: PostgresEventStore, postgres_database: str
) -> None:
    """Rounds of four consumers storing a visitor's events (mixed with the user's own and
    two other visitors') while a fifth thread sends the identify that links the visitor."""
    rng = random.Random(20260114)
    for round_ in range(8):
        day = jan(10 + round_, 9)
        anonymous_id, user = f"race-{round_}", f"user-{round_}"
        batches = [
            [
                *(visit(anonymous_id, day + timedelta(seconds=10 * b + n)) for n in range(5)),
                track(user, "own", day + timedelta(minutes=5, seconds=b)),
                visit(f"other-{round_}-{b % 2}", day + timedelta(seconds=b)),
            ]
            for b in range(12)
        ]
        linking = identify_as(user, anonymous_id, day + timedelta(minutes=1))
        with ThreadPoolExecutor(max_workers=5) as pool:
            linker = pool.submit(_consume_later, pooled, rng.uniform(0.0, 0.05), linking)
            consumers = [pool.submit(_consume_all, pooled, batches[k::4]) for k in range(4)]
            for future in [linker, *consumers]:
                future.result(timeout=60)

        persons = {f"anon:{anonymous_id}", user}
        mine = [m.messageId for b in batches for m in b if m.userId in persons]
        assert_one_person(pooled, user, anonymous_id, [*mine, linking.messageId])
        users = active(pooled, day.date())
        assert len(users) == 3  # the user (and so the visitor) and the two other visitors
        assert ordinal_of(postgres_database, user) in users
        assert _counts(pooled, day.date()) == {"tick": 12 * 5 + 12, "own": 12}
        seen = pooled.first_seen_users(day.date(), day.date())
        assert {d: len(u) for d, u in seen.items()} == {day.date(): 3}


def _consume_later(store: EventStore, delay: float, *messages: QueuedMessage) -> None:
    threading.Event().wait(delay)
    consume(store, *messages)


def _consume_all(store: EventStore, batches: list[list[QueuedMessage]]) -> None:
    for batch in batches:
        consume(store, *batch)


def _counts(store: EventStore, day: date) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in store.rollup_counts(day, day):
        counts[row.event] = counts.get(row.event, 0) + row.events
    return counts


def test_a_user_and_visitor_in_different_bitmap_chunks_become_one_person(
    postgres_store: PostgresEventStore, postgres_database: str
) -> None:
    """The user's ordinal is in chunk 0, the visitor's in chunk 1 (2^16 ordinals later):
    the move sets a bit in one chunk row and clears one in another, which may not exist."""
    consume(postgres_store, track("cy", "open", jan(20, 9)))
    with psycopg.connect(postgres_database, autocommit=True) as conn:
        conn.execute("ALTER TABLE user_ordinals ALTER COLUMN ordinal RESTART WITH 70000")
    consume(postgres_store, visit("a-3", jan(19, 9), "open"), visit("a-3", jan(20, 10), "buy"))
    assert ordinal_of(postgres_database, "anon:a-3") == 70000

    link = postgres_store.link_anonymous("a-3", "cy", jan(21))

    assert (link.user_id, link.moved_events) == ("cy", 2)
    mine = ordinal_of(postgres_database, "cy")
    assert mine == 0
    for day in (date(2026, 1, 19), date(2026, 1, 20)):
        assert active(postgres_store, day) == UserBitmap([0])
    by_event = postgres_store.rollup_users(date(2026, 1, 19), date(2026, 1, 20), by_event=True)
    assert {(r.day.day, r.event): r.users for r in by_event} == {
        (19, ANY_EVENT): UserBitmap([0]),
        (19, "open"): UserBitmap([0]),
        (20, ANY_EVENT): UserBitmap([0]),
        (20, "open"): UserBitmap([0]),
        (20, "buy"): UserBitmap([0]),
    }
    seen = postgres_store.first_seen_users(date(2026, 1, 19), date(2026, 1, 20))
    assert seen == {date(2026, 1, 19): UserBitmap([0])}
    with psycopg.connect(postgres_database, autocommit=True) as conn:
        tombstone = conn.execute(
            "SELECT user_id FROM user_ordinals WHERE ordinal = 70000"
        ).fetchone()
    assert tombstone == (None,)  # the visitor's ordinal is never handed out again


def test_a_new_user_takes_over_the_visitors_ordinal(
    postgres_store: PostgresEventStore, postgres_database: str
) -> None:
    consume(postgres_store, visit("a-4", jan(22, 9)))
    visitor = ordinal_of(postgres_database, "anon:a-4")
    assert postgres_store.link_anonymous("a-4", "dee", jan(22, 10)).moved_events == 1
    assert ordinal_of(postgres_database, "dee") == visitor
    assert ordinal_of(postgres_database, "anon:a-4") is None
    assert active(postgres_store, date(2026, 1, 22)) == UserBitmap([visitor or 0])
    # The visitor comes back before the consumer knows of the link: a new ordinal, moved.
    postgres_store.insert_events([visit("a-4", jan(22, 11))])
    assert ordinal_of(postgres_database, "anon:a-4") not in (None, visitor)
    assert postgres_store.link_anonymous("a-4", "dee", jan(22, 12)).moved_events == 1
    assert active(postgres_store, date(2026, 1, 22)) == UserBitmap([visitor or 0])


def test_a_link_to_a_visitor_is_refused(postgres_store: PostgresEventStore) -> None:
    consume(postgres_store, visit("a-5", jan(23, 9)))
    assert postgres_store.link_anonymous("a-5", "anon:a-5", jan(23, 10)).user_id is None
    assert postgres_store.link_anonymous("a-5", "anon:a-6", jan(23, 10)).user_id is None
    assert len(message_ids(postgres_store, "anon:a-5")) == 1
    assert postgres_store.linked_users(["a-5"]) == {}


# -- migration 0004 → 0005 --------------------------------------------------------------------


def test_migration_0005_adds_identity_links_to_a_database_at_0004() -> None:
    with scratch_database() as info:
        alembic(info, "upgrade", "0004")
        assert current_revision(info) == "0004"
        assert migrate(info) == HEAD_REVISION
        store = PostgresEventStore(info)
        try:
            store.insert_events([visit("a-7", jan(24, 9))])
            assert store.link_anonymous("a-7", "eve", jan(24, 10)).moved_events == 1
            assert store.linked_users(["a-7", "a-8"]) == {"a-7": "eve"}
            store.delete_user("eve", jan(25))
            assert store.linked_users(["a-7"]) == {}
        finally:
            store.close()
