"""PostgreSQL-specific: automatic sessions in the adapter, against a real server.

The contract suite shows what every backend does with sessions; these tests look at what
only this adapter has: migration 0006 on a database at 0005, the session id through the
COPY stage and the identity move, and the session marks upserted inside the ingest
transaction (atomic with the events, never moved back by an older mark, even when two
consumers race, and gone with an erasure).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta
from typing import Any

import psycopg
import pytest
from mysoulmate.analytics.models import QueuedMessage, SessionMark
from mysoulmate.analytics.ports import SessionRow
from mysoulmate.analytics.rollups import SESSION_EVENTS, SESSION_MS_EVENT, SESSIONS_EVENT
from mysoulmate.analytics.sessions import assign_sessions
from mysoulmate.storage.postgres.connection import HEAD_REVISION
from mysoulmate.storage.postgres.migrate import current_revision, migrate
from mysoulmate.storage.postgres.store import PostgresEventStore

from tests.support.messages import consume, identify, identify_as, jan, track, visit
from tests.support.postgres import alembic, insert_from_both_ends, scratch_database

JAN = (date(2026, 1, 1), date(2026, 1, 31))
MINUTE_MS = 60_000


@pytest.fixture
def store(postgres_store: PostgresEventStore, postgres_database: str) -> PostgresEventStore:
    """The emptied store, session marks included (`truncate_all` predates them)."""
    with psycopg.connect(postgres_database, autocommit=True) as conn:
        conn.execute("TRUNCATE session_marks")
    return postgres_store


def assigned(store: PostgresEventStore, *messages: QueuedMessage) -> list[QueuedMessage]:
    """``messages`` with their sessions, as the consumer assigns them before storing."""
    people = {m.userId for m in messages if m.event is not None}
    return assign_sessions(list(messages), store.session_marks(people))


def stored_marks(conninfo: str) -> list[tuple[Any, ...]]:
    """The session_marks table as it is (user, session id, start, last)."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        return conn.execute(
            "SELECT user_id, session_id, start, last FROM session_marks ORDER BY user_id"
        ).fetchall()


def session_ids(store: PostgresEventStore, user: str) -> list[str | None]:
    return [p.session_id for p in store.user_event_points(user)]


def session_state(store: PostgresEventStore, conninfo: str, users: Sequence[str]) -> Any:
    """Everything sessions leave behind: ids, marks, figures, and the counts beside them."""
    return (
        {user: session_ids(store, user) for user in users},
        stored_marks(conninfo),
        store.rollup_sessions(*JAN),
        store.rollup_counts(*JAN),
    )


def upgrade_to(info: str, revision: str) -> None:
    alembic(info, "upgrade", revision)


# -- migration 0005 → 0006 --------------------------------------------------------------------


def test_migration_0006_adds_session_ids_and_marks_to_a_database_at_0005() -> None:
    with scratch_database() as info:
        upgrade_to(info, "0005")
        assert current_revision(info) == "0005"
        with psycopg.connect(info) as conn:  # an event stored by the previous release
            conn.execute(
                "INSERT INTO events (user_id, message_id, type, event, ts, received_at, "
                "properties, context) VALUES ('ann', 'old-1', 'track', 'open', %s, %s, "
                "'{}', '{}')",
                (jan(1, 8), jan(1, 8)),
            )
        assert migrate(info) == HEAD_REVISION  # 0006 and any later revision
        with psycopg.connect(info) as conn:
            column = conn.execute(
                "SELECT data_type, is_nullable, collation_name FROM information_schema.columns "
                "WHERE table_name = 'events' AND column_name = 'session_id'"
            ).fetchall()
            marks = conn.execute(
                "SELECT column_name, data_type, is_nullable FROM information_schema.columns "
                "WHERE table_name = 'session_marks' ORDER BY ordinal_position"
            ).fetchall()
            key = conn.execute(
                "SELECT a.attname FROM pg_index i JOIN pg_attribute a "
                "ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
                "WHERE i.indrelid = 'session_marks'::regclass AND i.indisprimary"
            ).fetchall()
        assert column == [("text", "YES", "C")]
        assert marks == [
            ("user_id", "text", "NO"),
            ("session_id", "text", "NO"),
            ("start", "timestamp with time zone", "NO"),
            ("last", "timestamp with time zone", "NO"),
        ]
        assert key == [("user_id",)]
        store = PostgresEventStore(info)
        try:
            consume(store, track("ann", "view", jan(1, 9)))
            old, new = store.list_events("ann", 10, None).events[::-1]
            assert (old.messageId, old.sessionId) == ("old-1", None)
            assert new.sessionId is not None
            assert set(store.session_marks(["ann"])) == {"ann"}
        finally:
            store.close()


# -- session ids ------------------------------------------------------------------------------


def test_events_are_stored_and_read_with_their_session_ids(
    store: PostgresEventStore, postgres_database: str
) -> None:
    messages = assigned(
        store,
        track("ann", "open", jan(1, 9), message_id="a1"),
        track("ann", "view", jan(1, 9, 20), message_id="a2"),
        track("ann", "open", jan(1, 11), message_id="a3", session_id="tab-2"),
        identify_as("ann", "v-9", jan(1, 11, 5)),  # joins the session it falls in
        identify("bob", jan(1, 9)),  # no session at all
    )
    sent = {m.messageId: m.sessionId for m in messages}
    auto = sent["a1"]
    assert auto is not None
    assert [sent["a2"], sent["a3"], sent[messages[4].messageId]] == [auto, "tab-2", None]
    assert store.insert_events(messages).written == 5
    with psycopg.connect(postgres_database) as conn:
        stored = dict(conn.execute("SELECT message_id, session_id FROM events").fetchall())
    assert stored == sent
    listed = store.list_events("ann", 10, None).events + store.list_events("bob", 10, None).events
    assert {e.messageId: e.sessionId for e in listed} == sent
    points = store.user_event_points("ann")
    assert [(p.message_id, p.session_id) for p in points] == [
        ("a1", auto),
        ("a2", auto),
        ("a3", "tab-2"),
    ]


def test_a_linked_visitors_events_keep_their_sessions_and_leave_no_mark(
    store: PostgresEventStore, postgres_database: str
) -> None:
    consume(store, visit("v-1", jan(1, 9)), visit("v-1", jan(1, 9, 10)))
    before = {p.message_id: p.session_id for p in store.user_event_points("anon:v-1")}
    assert None not in before.values()
    assert set(store.session_marks(["anon:v-1"])) == {"anon:v-1"}
    consume(store, identify_as("ann", "v-1", jan(1, 9, 15)))
    after = {p.message_id: p.session_id for p in store.user_event_points("ann")}
    assert after == before
    assert store.session_marks(["anon:v-1", "ann"]) == {}
    consume(store, track("ann", "buy", jan(1, 12)))
    store.delete_user("ann", jan(2))
    assert stored_marks(postgres_database) == []


# -- session marks ----------------------------------------------------------------------------


def test_marks_are_stored_in_the_events_transaction(
    store: PostgresEventStore, postgres_database: str
) -> None:
    batch = assigned(store, track("ann", "open", jan(1, 9)), track("bob", "open", jan(1, 10)))
    with psycopg.connect(postgres_database, autocommit=True) as conn:
        conn.execute(
            "CREATE FUNCTION refuse_marks() RETURNS trigger LANGUAGE plpgsql "
            "AS $$ BEGIN RAISE EXCEPTION 'marks refused'; END $$"
        )
        conn.execute(
            "CREATE TRIGGER refuse_marks BEFORE INSERT ON session_marks "
            "FOR EACH ROW EXECUTE FUNCTION refuse_marks()"
        )
    try:
        result = store.insert_events(batch)
    finally:
        with psycopg.connect(postgres_database, autocommit=True) as conn:
            conn.execute("DROP TRIGGER refuse_marks ON session_marks")
            conn.execute("DROP FUNCTION refuse_marks()")
    assert set(result.failed) == {m.key for m in batch}
    assert "marks refused" in next(iter(result.failed.values()))
    assert store.list_events("ann", 10, None).events == []
    assert store.rollup_counts(*JAN) == store.rollup_sessions(*JAN) == []
    assert stored_marks(postgres_database) == []

    assert store.insert_events(batch).written == 2  # the redelivery stores both together
    marks = store.session_marks(["ann", "bob"])
    assert {u: (m.start, m.last) for u, m in marks.items()} == {
        "ann": (jan(1, 9), jan(1, 9)),
        "bob": (jan(1, 10), jan(1, 10)),
    }
    assert marks["ann"].session_id == session_ids(store, "ann")[0]
    assert all(m.start.utcoffset() == timedelta(0) for m in marks.values())


@pytest.mark.parametrize("order", ["newer first", "older first"])
def test_an_older_mark_never_replaces_a_newer_one(
    store: PostgresEventStore, postgres_database: str, order: str
) -> None:
    # Two consumers read ann's (missing) mark before either stores: each batch carries a
    # mark of its own, and whichever commits last must not move ann's session back.
    newer = assigned(store, track("ann", "open", jan(1, 11)))
    older = assigned(store, track("ann", "open", jan(1, 9)), track("ann", "view", jan(1, 9, 5)))
    for batch in [newer, older] if order == "newer first" else [older, newer]:
        assert store.insert_events(batch).written == len(batch)
    (mark,) = store.session_marks(["ann"]).values()
    assert mark == SessionMark(newer[0].sessionId or "", jan(1, 11), jan(1, 11))
    assert len(stored_marks(postgres_database)) == 1


def test_a_mark_as_late_as_the_stored_one_replaces_it(store: PostgresEventStore) -> None:
    first = assigned(store, track("ann", "open", jan(1, 9), session_id="tab-1"))
    second = assigned(store, track("ann", "open", jan(1, 9), session_id="tab-2"))
    store.insert_events(first)
    store.insert_events(second)
    assert store.session_marks(["ann"])["ann"].session_id == "tab-2"


def test_concurrent_consumers_leave_each_person_at_their_latest_session(
    postgres_database: str, store: PostgresEventStore
) -> None:
    messages = assigned(
        store,
        *(
            track(f"user-{i % 12}", f"event-{i % 3}", jan(1 + i % 5, 8) + timedelta(minutes=i))
            for i in range(360)
        ),
    )
    latest: dict[str, Any] = {}
    for m in messages:
        latest[m.userId] = max(latest.get(m.userId, m.timestamp), m.timestamp)
    pooled = PostgresEventStore(postgres_database, pool_size=4)
    try:
        insert_from_both_ends(pooled, messages, 30)
        marks = pooled.session_marks(latest)
        assert {user: mark.last for user, mark in marks.items()} == latest
        started = sum(1 for m in messages if m.session_tally and m.session_tally.started)
        assert sum(r.sessions for r in pooled.rollup_sessions(*JAN)) == started
    finally:
        pooled.close()


def test_an_erasure_deletes_the_persons_mark_and_no_one_elses(
    store: PostgresEventStore, postgres_database: str
) -> None:
    consume(store, track("ann", "open", jan(1, 9)), track("bob", "open", jan(1, 9)))
    assert [row[0] for row in stored_marks(postgres_database)] == ["ann", "bob"]
    store.delete_user("ann", jan(2))
    assert [row[0] for row in stored_marks(postgres_database)] == ["bob"]
    assert set(store.session_marks(["ann", "bob"])) == {"bob"}


# -- session figures --------------------------------------------------------------------------


def test_session_figures_per_start_day_and_platform(
    store: PostgresEventStore, postgres_database: str
) -> None:
    consume(
        store,
        track("ann", "open", jan(1, 9)),
        track("ann", "view", jan(1, 9, 10)),
        track("bob", "open", jan(2, 23, 50), platform="ios"),
    )
    consume(store, track("ann", "buy", jan(1, 9, 25)))  # a later delivery grows the session
    consume(
        store,
        track("ann", "open", jan(1, 11)),  # 95 quiet minutes: a session of its own
        track("bob", "buy", jan(3, 0, 5), platform="ios"),  # past midnight, same session
    )
    expected = [
        SessionRow(date(2026, 1, 1), "web", 2, 25 * MINUTE_MS),
        SessionRow(date(2026, 1, 2), "ios", 1, 15 * MINUTE_MS),  # counted on its start day
    ]
    assert store.rollup_sessions(*JAN) == expected
    assert store.rollup_sessions(date(2026, 1, 2), date(2026, 1, 3)) == expected[1:]
    assert store.rollup_sessions(date(2026, 1, 3), date(2026, 1, 3)) == []
    counts = store.rollup_counts(*JAN)
    assert sum(r.events for r in counts) == 6
    assert not {r.event for r in counts} & SESSION_EVENTS
    with psycopg.connect(postgres_database) as conn:  # stored beside the daily counts
        stored = conn.execute(
            "SELECT day, platform, event, events FROM daily_counts "
            "WHERE event = ANY(%s) ORDER BY day, event",
            ([SESSIONS_EVENT, SESSION_MS_EVENT],),
        ).fetchall()
    assert stored == [
        (date(2026, 1, 1), "web", SESSION_MS_EVENT, 25 * MINUTE_MS),
        (date(2026, 1, 1), "web", SESSIONS_EVENT, 2),
        (date(2026, 1, 2), "ios", SESSION_MS_EVENT, 15 * MINUTE_MS),
        (date(2026, 1, 2), "ios", SESSIONS_EVENT, 1),
    ]


def test_a_redelivered_batch_changes_neither_marks_nor_figures(
    store: PostgresEventStore, postgres_database: str
) -> None:
    first = [
        track("ann", "open", jan(1, 9), message_id="a1"),
        track("ann", "view", jan(1, 9, 10), message_id="a2"),
        track("bob", "open", jan(1, 9), message_id="b1"),
    ]
    consume(store, *first)
    later = track("ann", "buy", jan(1, 9, 40), message_id="a3")
    consume(store, later)
    before = session_state(store, postgres_database, ["ann", "bob"])
    consume(store, *first)  # assigned again against the stored marks, then stored again
    consume(store, later)
    assert store.insert_events(assigned(store, *first)).written == 0
    assert session_state(store, postgres_database, ["ann", "bob"]) == before
    assert store.rollup_sessions(*JAN) == [SessionRow(date(2026, 1, 1), "web", 2, 40 * MINUTE_MS)]

    # Redelivered with one new event: only the new one adds to the figures and the mark.
    consume(store, *first, later, track("ann", "buy", jan(1, 9, 50), message_id="a4"))
    assert store.rollup_sessions(*JAN) == [SessionRow(date(2026, 1, 1), "web", 2, 50 * MINUTE_MS)]
    assert store.session_marks(["ann"])["ann"].last == jan(1, 9, 50)
    assert len(set(session_ids(store, "ann"))) == 1
