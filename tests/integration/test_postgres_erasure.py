"""PostgreSQL-specific: an erasure sticks under real concurrency, and migration 0002 adds the
tombstones to a database at 0001.

The contract suite shows the outcome on every backend; these tests force the interleavings
that READ COMMITTED alone gets wrong (an eraser cannot see a consumer's uncommitted rows,
a consumer cannot see an eraser's uncommitted tombstone) by pausing one side inside its
transaction while the other runs on a second connection, and check that the user's lock
makes the other side wait and that nothing of the user comes back.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from functools import partial
from typing import Any

import psycopg
import pytest
from mysoulmate.analytics.models import Profile, QueuedMessage
from mysoulmate.analytics.ports import EventStore
from mysoulmate.analytics.profiles import merge_identify
from mysoulmate.storage.postgres import erasures
from mysoulmate.storage.postgres.connection import HEAD_REVISION, DatabaseNotMigratedError
from mysoulmate.storage.postgres.migrate import alembic_config, current_revision, migrate
from mysoulmate.storage.postgres.store import PostgresEventStore

from tests.support.messages import identify, track
from tests.support.postgres import scratch_database

RECEIVED = datetime(2026, 1, 9, 12, 0, tzinfo=UTC)
DAY = RECEIVED.date()
ERASED_AT = datetime(2026, 1, 10, tzinfo=UTC)
WAIT_SECONDS = 10.0
STORE = "mysoulmate.storage.postgres.store"  # where the store looks its helpers up


def unique_user() -> str:
    # The store fixture empties the data tables, not necessarily the tombstones.
    return f"user-{uuid.uuid4().hex[:12]}"


def batch_of(user: str, size: int) -> list[QueuedMessage]:
    """Track events received before ERASED_AT."""
    return [track(user, "tick", RECEIVED + timedelta(seconds=n)) for n in range(size)]


def users_on(store: EventStore, day: date) -> int:
    union = store.empty_user_set()
    for row in store.rollup_users(day, day, by_event=True):
        union = union | row.users
    return len(union)


def wait_for_lock_waiters(conninfo: str, count: int) -> None:
    """Return once ``count`` sessions of the database wait for an advisory (user) lock."""
    deadline = time.monotonic() + WAIT_SECONDS
    with psycopg.connect(conninfo, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            ).fetchone()
            if row is not None and row[0] >= count:
                return
            time.sleep(0.01)
    raise AssertionError(f"{count} session(s) never waited for a user lock")


def pause_after(
    original: Callable[..., Any], reached: threading.Event, release: threading.Event
) -> Callable[..., Any]:
    """``original``, then signal ``reached`` and hold the caller's transaction open until
    ``release`` is set."""

    def paused(*args: Any) -> Any:
        result = original(*args)
        reached.set()
        if not release.wait(WAIT_SECONDS):
            raise AssertionError("the test never released the paused transaction")
        return result

    return paused


def test_an_erasure_waits_for_a_consumer_mid_transaction_and_deletes_what_it_wrote(
    postgres_store: PostgresEventStore, postgres_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The consumer has read the (absent) tombstone and not committed yet: without the lock
    the erasure would delete nothing it can see, commit, and the rows would appear after."""
    user = unique_user()
    batch = batch_of(user, 20)
    read, release = threading.Event(), threading.Event()
    # Between the tombstone read and the commit: the user's lock is held, nothing is written.
    monkeypatch.setattr(STORE + ".erased_keys", pause_after(erasures.erased_keys, read, release))
    with ThreadPoolExecutor(max_workers=2) as pool:
        consumer = pool.submit(postgres_store.insert_events, batch)
        assert read.wait(WAIT_SECONDS)
        eraser = pool.submit(postgres_store.delete_user, user, ERASED_AT)
        wait_for_lock_waiters(postgres_database, 1)
        assert not eraser.done()  # it waits for the consumer's transaction
        release.set()
        stored = consumer.result(timeout=WAIT_SECONDS)
        erasure = eraser.result(timeout=WAIT_SECONDS)

    assert (stored.written, stored.erased) == (20, set())
    assert erasure.events == 20  # the erasure ran after the commit and saw every row
    assert postgres_store.list_events(user, 50, None).events == []
    assert users_on(postgres_store, DAY) == 0
    assert all(len(u) == 0 for u in postgres_store.first_seen_users(DAY, DAY).values())
    # The same batch redelivered (the queue's at-least-once retry) stays out.
    again = postgres_store.insert_events(batch)
    assert (again.written, again.duplicates, again.erased) == (0, 0, {m.key for m in batch})
    assert postgres_store.list_events(user, 50, None).events == []


@pytest.fixture
def three_connections(
    postgres_store: PostgresEventStore, postgres_database: str
) -> Iterator[PostgresEventStore]:
    """A store over the emptied session database with a connection per concurrent caller."""
    store = PostgresEventStore(postgres_database, pool_size=3)
    yield store
    store.close()


def test_a_consumer_waits_for_an_erasure_mid_transaction_then_stores_nothing(
    three_connections: PostgresEventStore, postgres_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The erasure has written its tombstone and not committed yet: without the lock the
    consumer and the profile update would not see it and would write the user back."""
    postgres_store = three_connections
    user = unique_user()
    postgres_store.insert_events([track(user, "signup", RECEIVED - timedelta(days=1))])
    batch = [*batch_of(user, 10), identify(user, RECEIVED, plan="pro")]
    locked, release = threading.Event(), threading.Event()
    # After the lock and the tombstone, before the deletions and the commit.
    monkeypatch.setattr(
        STORE + ".lock_for_erasure", pause_after(erasures.lock_for_erasure, locked, release)
    )
    update = partial(_merge_one, batch[-1])
    with ThreadPoolExecutor(max_workers=3) as pool:
        eraser = pool.submit(postgres_store.delete_user, user, ERASED_AT)
        assert locked.wait(WAIT_SECONDS)
        consumer = pool.submit(postgres_store.insert_events, batch)
        profile: Future[Profile | None] = pool.submit(
            postgres_store.update_profile, user, update, received_at=RECEIVED
        )
        wait_for_lock_waiters(postgres_database, 2)
        assert not consumer.done()
        assert not profile.done()
        release.set()
        erasure = eraser.result(timeout=WAIT_SECONDS)
        stored = consumer.result(timeout=WAIT_SECONDS)
        merged = profile.result(timeout=WAIT_SECONDS)

    assert erasure.events == 1
    assert (stored.written, stored.duplicates, stored.failed) == (0, 0, {})
    assert stored.erased == {m.key for m in batch}
    assert merged is None
    assert postgres_store.get_profile(user) is None
    assert postgres_store.list_events(user, 50, None).events == []
    # Erased messages count nowhere, not even in the anonymous counts.
    assert postgres_store.rollup_counts(DAY, DAY) == []
    assert users_on(postgres_store, DAY) == 0


def test_a_batch_drops_only_the_erased_users_messages(
    postgres_store: PostgresEventStore,
) -> None:
    erased, other = unique_user(), unique_user()
    postgres_store.delete_user(erased, ERASED_AT)
    gone, kept = batch_of(erased, 3), batch_of(other, 2)
    late = track(erased, "tick", ERASED_AT + timedelta(seconds=1))  # received after: new data
    result = postgres_store.insert_events([*gone, *kept, late])
    assert (result.written, result.duplicates) == (3, 0)
    assert result.erased == {m.key for m in gone}
    assert result.new_keys == {m.key for m in (*kept, late)}
    counts = {(row.day, row.event): row.events for row in postgres_store.rollup_counts(DAY, DAY)}
    assert counts == {(DAY, "tick"): 2}
    assert users_on(postgres_store, DAY) == 1


def _key_order(conninfo: str, people: list[str]) -> list[str]:
    """``people`` in the order their advisory locks are taken (by lock key)."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT u FROM unnest(%s::text[]) AS u ORDER BY hashtextextended(u, %s::bigint)",
            (people, erasures.LOCK_SEED),
        ).fetchall()
    return [u for (u,) in rows]


def test_an_erasure_and_a_batch_of_the_user_and_their_visitor_never_deadlock(
    three_connections: PostgresEventStore, postgres_database: str
) -> None:
    """A batch share-locks its people in key order. An erasure that took the user's lock
    first, then their visitor's, deadlocked with a batch holding the visitor's (lower key)
    and waiting for the user's: PostgreSQL aborted one of them after `deadlock_timeout`."""
    store = three_connections
    user = unique_user()
    while True:  # a visitor whose lock comes before the user's
        anonymous_id = f"v-{uuid.uuid4().hex[:12]}"
        visitor = "anon:" + anonymous_id
        if _key_order(postgres_database, [user, visitor]) == [visitor, user]:
            break
    store.insert_events([track(user, "signup", RECEIVED)])
    store.link_anonymous(anonymous_id, user, RECEIVED)
    with psycopg.connect(postgres_database) as batch, ThreadPoolExecutor(1) as pool:
        erasures.lock_and_read(batch, [visitor])  # a batch mid-way through its locks
        eraser = pool.submit(store.delete_user, user, ERASED_AT)
        wait_for_lock_waiters(postgres_database, 1)  # the erasure waits, for the visitor
        # The batch's next lock: granted at once, as the erasure holds none of them yet.
        tombstones = erasures.lock_and_read(batch, [user])
        batch.commit()
        erasure = eraser.result(timeout=WAIT_SECONDS)
    assert tombstones == {}  # the batch ran first, before the tombstone
    assert erasure.events == 1
    assert store.list_events(user, 50, None).events == []


def _merge_one(message: QueuedMessage, profile: Profile | None) -> Profile:
    return merge_identify(profile, message)


# -- migration 0001 → 0002 --------------------------------------------------------------------


def upgrade_to(conninfo: str, revision: str) -> None:
    """Alembic's upgrade to ``revision`` only (migrate() always goes to head)."""
    from alembic import command
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    engine = create_engine(
        "postgresql+psycopg://", creator=lambda: psycopg.connect(conninfo), poolclass=NullPool
    )
    try:
        config = alembic_config()
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    finally:
        engine.dispose()


def test_migration_0002_adds_tombstones_to_a_database_at_0001_and_keeps_its_data() -> None:
    with scratch_database() as info:
        upgrade_to(info, "0001")
        assert current_revision(info) == "0001"
        with pytest.raises(DatabaseNotMigratedError, match="at revision 0001"):
            PostgresEventStore(info)
        with psycopg.connect(info, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO events (user_id, message_id, type, event, ts, received_at, "
                "properties, context) VALUES ('kept', 'm-1', 'track', 'signup', %s, %s, "
                "'{}', '{}')",
                (RECEIVED, RECEIVED),
            )
            row = conn.execute("SELECT to_regclass('erasures') IS NULL").fetchone()
            assert row == (True,)

        assert migrate(info) == HEAD_REVISION

        store = PostgresEventStore(info)
        try:
            assert [e.messageId for e in store.list_events("kept", 10, None).events] == ["m-1"]
            assert store.delete_user("kept", ERASED_AT).events == 1
            late = track("kept", "tick", RECEIVED)
            assert store.insert_events([late]).erased == {late.key}
        finally:
            store.close()
        with psycopg.connect(info, autocommit=True) as conn:
            assert conn.execute("SELECT user_id, erased_at FROM erasures").fetchall() == [
                ("kept", ERASED_AT)
            ]
