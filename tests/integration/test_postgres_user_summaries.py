"""PostgreSQL-specific: the per-user summaries (`storage.postgres.user_summaries`) against a
real server. The contract suite holds every backend's `user_summary` to the reference; these
tests look at what only this adapter has: migration 0011's backfill of a database at 0010
(in a session time zone far from UTC), the rows kept equal to a GROUP BY over the events
through redelivery, partly redelivered batches, a link that meets the user's own copy of a
message and session, concurrent consumers, and erasure; and the upserts sharing the events'
transaction."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import psycopg
import pytest
from mysoulmate.analytics.date_range import DateRange
from mysoulmate.analytics.models import QueuedMessage
from mysoulmate.analytics.ports import UserSummary
from mysoulmate.analytics.user_summary import summary_from_points
from mysoulmate.storage.postgres.connection import HEAD_REVISION
from mysoulmate.storage.postgres.migrate import migrate
from mysoulmate.storage.postgres.store import PostgresEventStore

from tests.support.messages import consume, identify, identify_as, jan, track, visit
from tests.support.postgres import alembic, insert_from_both_ends, scratch_database

RANGES = (
    None,
    DateRange(date(2026, 1, 1), date(2026, 1, 1)),
    DateRange(date(2026, 1, 2), date(2026, 1, 3)),
    DateRange(date(2026, 2, 1), date(2026, 2, 2)),
)
# What the summary tables must hold: the events grouped, as migration 0011 fills them.
DERIVED_COUNTS = (
    "SELECT user_id, (ts AT TIME ZONE 'UTC')::date, event, count(*), min(ts), max(ts) "
    "FROM events WHERE event IS NOT NULL GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
)
DERIVED_SESSIONS = (
    "SELECT user_id, session_id, min(ts), max(ts), count(*) FROM events "
    "WHERE event IS NOT NULL AND session_id IS NOT NULL GROUP BY 1, 2 ORDER BY 1, 2"
)
STORED_COUNTS = "SELECT * FROM user_day_counts ORDER BY 1, 2, 3"
STORED_SESSIONS = "SELECT * FROM user_sessions ORDER BY 1, 2"


@pytest.fixture
def store(postgres_store: PostgresEventStore) -> PostgresEventStore:
    """The emptied store (`truncate_all` empties the summary tables too)."""
    return postgres_store


def in_session(message: QueuedMessage, session_id: str | None) -> QueuedMessage:
    """``message`` as the consumer hands it to the store, in the given session."""
    return message.model_copy(update={"sessionId": session_id})


def assert_rows_derive_from_events(conninfo: str) -> None:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        assert conn.execute(STORED_COUNTS).fetchall() == conn.execute(DERIVED_COUNTS).fetchall()
        assert conn.execute(STORED_SESSIONS).fetchall() == conn.execute(DERIVED_SESSIONS).fetchall()


def assert_matches_reference(store: PostgresEventStore, users: list[str]) -> None:
    for user in users:
        for days in RANGES:
            for most in (1, 100):
                expected = summary_from_points(store.user_event_points(user), days, most)
                assert store.user_summary(user, days, most) == expected, (user, days, most)


# -- migration 0010 → 0011 --------------------------------------------------------------------


def store_as_release_0010(info: str) -> None:
    """Events as the previous release left them: with and without session ids, identifies,
    and events on either side of midnight UTC."""
    rows = [
        ("ann", "a1", "track", "open", jan(1, 23, 50), None),  # before session ids
        ("ann", "a2", "track", "open", jan(2, 0, 10), None),
        ("ann", "a3", "track", "view", jan(2, 9), "s-1"),
        ("ann", "a4", "track", "view", jan(2, 9, 20), "s-1"),
        ("ann", "a5", "identify", None, jan(2, 9, 25), "s-1"),
        ("ann", "a6", "track", "buy", jan(2, 23, 59, 59), "s-2"),
        ("ann", "a7", "track", "buy", jan(3, 0, 5), "s-2"),
        ("bob", "b1", "track", "open", jan(1, 0, 0), "s-9"),
        ("bob", "b2", "identify", None, jan(1, 0, 1), None),
    ]
    with psycopg.connect(info) as conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO events (user_id, message_id, type, event, ts, received_at, "
            "properties, context, session_id) VALUES (%s, %s, %s, %s, %s, %s, '{}', '{}', %s)",
            [(u, m, t, e, ts, ts, s) for u, m, t, e, ts, s in rows],
        )


def test_migration_0011_fills_the_summaries_from_the_stored_events() -> None:
    with scratch_database() as info:
        alembic(info, "upgrade", "0010")
        store_as_release_0010(info)
        # Far from UTC: a day taken from the session's time zone would be the wrong one.
        with psycopg.connect(info, autocommit=True) as conn:
            database = conn.info.dbname
            conn.execute(f"ALTER DATABASE \"{database}\" SET timezone = 'Pacific/Kiritimati'")
        assert migrate(info) == HEAD_REVISION
        assert_rows_derive_from_events(info)
        with psycopg.connect(info, autocommit=True) as conn:
            days = conn.execute(
                "SELECT day::text, event, events FROM user_day_counts WHERE user_id = 'ann' "
                "ORDER BY 1, 2"
            ).fetchall()
        assert days == [
            ("2026-01-01", "open", 1),
            ("2026-01-02", "buy", 1),
            ("2026-01-02", "open", 1),
            ("2026-01-02", "view", 2),
            ("2026-01-03", "buy", 1),
        ]
        store = PostgresEventStore(info)
        try:
            assert_matches_reference(store, ["ann", "bob"])
            summary = store.user_summary("ann", None, 100)
            assert (summary.first_seen, summary.last_seen) == (
                "2026-01-01T23:50:00.000000Z",
                "2026-01-03T00:05:00.000000Z",
            )
            assert [s.session_id for s in summary.recent_sessions] == ["s-2", "s-1", None]
            # New events add to the backfilled rows.
            store.insert_events([in_session(track("ann", "buy", jan(3, 0, 20)), "s-2")])
            assert_rows_derive_from_events(info)
            assert_matches_reference(store, ["ann"])
            # The previous release, still serving during a deploy, knows nothing of the
            # summaries: its plain INSERT is counted all the same (the events trigger), and
            # a row it sends again (ON CONFLICT DO NOTHING) is not.
            with psycopg.connect(info) as conn:
                for _ in range(2):
                    conn.execute(
                        "INSERT INTO events (user_id, message_id, type, event, ts, received_at, "
                        "properties, context, session_id) VALUES ('ann', 'old-1', 'track', "
                        "'buy', %s, %s, '{}', '{}', 's-2') ON CONFLICT DO NOTHING",
                        (jan(3, 0, 30), jan(3, 0, 30)),
                    )
            assert_rows_derive_from_events(info)
            assert store.user_summary("ann", None, 100).event_counts["buy"] == 4
        finally:
            store.close()
        alembic(info, "downgrade", "0010")
        with psycopg.connect(info, autocommit=True) as conn:
            gone = conn.execute(
                "SELECT to_regclass('user_day_counts'), to_regclass('user_sessions'), "
                "to_regclass('events_without_session')"
            ).fetchone()
        assert gone == (None, None, None)
        with psycopg.connect(info, autocommit=True) as conn:
            triggers = conn.execute(
                "SELECT count(*) FROM pg_trigger WHERE tgname = 'user_summaries_add'"
            ).fetchone()
        assert triggers == (0,)


# -- the write paths --------------------------------------------------------------------------


def test_rows_follow_inserts_redelivery_links_and_erasure(
    store: PostgresEventStore, postgres_database: str
) -> None:
    first = [
        in_session(track("ann", "open", jan(1, 23, 55)), "s-1"),
        in_session(track("ann", "view", jan(2, 0, 5)), "s-1"),  # the session crosses midnight
        in_session(track("bob", "open", jan(1, 9)), "s-3"),
        in_session(identify("bob", jan(1, 9, 1)), "s-3"),  # no event: no summary
        track("bob", "open", jan(1, 8)),  # no session id
    ]
    assert store.insert_events(first).written == 5
    assert store.insert_events(first).written == 0  # redelivered: nothing added
    later = in_session(track("ann", "buy", jan(2, 0, 20)), "s-1")
    # Partly redelivered: only the new message counts.
    assert store.insert_events([first[0], later, first[2]]).written == 1
    assert_rows_derive_from_events(postgres_database)
    assert_matches_reference(store, ["ann", "bob"])
    cut = store.user_summary("ann", DateRange(date(2026, 1, 2), date(2026, 1, 2)), 100)
    assert [(s.session_id, s.events) for s in cut.recent_sessions] == [("s-1", 2)]

    # A visitor whose history shares a message and a session with ann's.
    shared = track("ann", "open", jan(1, 23, 55), message_id="m-shared")
    store.insert_events([in_session(shared, "s-1")])
    store.insert_events(
        [
            in_session(
                visit("v-1", jan(1, 23, 55)).model_copy(update={"messageId": "m-shared"}), "s-1"
            ),
            in_session(visit("v-1", jan(1, 23, 40)), "s-1"),
            in_session(visit("v-1", jan(1, 7), event="open"), "s-0"),
        ]
    )
    assert store.link_anonymous("v-1", "ann", jan(3)).user_id == "ann"
    assert_rows_derive_from_events(postgres_database)
    assert_matches_reference(store, ["ann", "anon:v-1"])
    summary = store.user_summary("ann", None, 100)
    assert summary.first_seen == "2026-01-01T07:00:00.000000Z"
    assert [(s.session_id, s.events) for s in summary.recent_sessions] == [("s-1", 5), ("s-0", 1)]

    store.delete_user("ann", jan(4))
    assert_rows_derive_from_events(postgres_database)
    assert store.user_summary("ann", None, 100) == UserSummary(None, None, {}, 0, [])
    assert_matches_reference(store, ["bob"])


def test_a_link_through_the_consumer_moves_the_visitors_figures(
    store: PostgresEventStore, postgres_database: str
) -> None:
    consume(store, visit("v-1", jan(1, 9)), visit("v-1", jan(1, 9, 10), event="open"))
    consume(store, track("ann", "buy", jan(1, 8)))
    consume(store, identify_as("ann", "v-1", jan(1, 9, 15)), track("ann", "buy", jan(1, 9, 20)))
    assert_rows_derive_from_events(postgres_database)
    with psycopg.connect(postgres_database, autocommit=True) as conn:
        users = conn.execute("SELECT DISTINCT user_id FROM user_day_counts").fetchall()
    assert users == [("ann",)]


def test_the_summaries_are_written_in_the_events_transaction(
    store: PostgresEventStore, postgres_database: str
) -> None:
    batch = [in_session(track("ann", "open", jan(1, 9)), "s-1")]
    with psycopg.connect(postgres_database, autocommit=True) as conn:
        conn.execute(
            "CREATE FUNCTION refuse_sessions() RETURNS trigger LANGUAGE plpgsql "
            "AS $$ BEGIN RAISE EXCEPTION 'sessions refused'; END $$"
        )
        conn.execute(
            "CREATE TRIGGER refuse_sessions BEFORE INSERT ON user_sessions "
            "FOR EACH ROW EXECUTE FUNCTION refuse_sessions()"
        )
    try:
        result = store.insert_events(batch)
    finally:
        with psycopg.connect(postgres_database, autocommit=True) as conn:
            conn.execute("DROP TRIGGER refuse_sessions ON user_sessions")
            conn.execute("DROP FUNCTION refuse_sessions()")
    assert "sessions refused" in result.failed[batch[0].key]
    assert store.user_event_points("ann") == []
    assert_rows_derive_from_events(postgres_database)  # nothing, in either table
    assert store.insert_events(batch).written == 1
    assert_rows_derive_from_events(postgres_database)


def test_concurrent_consumers_add_each_event_once(
    store: PostgresEventStore, postgres_database: str
) -> None:
    messages = [
        in_session(
            track(f"user-{i % 7}", f"event-{i % 3}", jan(1 + i % 4, 8) + timedelta(minutes=i)),
            f"s-{i % 5}",
        )
        for i in range(300)
    ]
    pooled = PostgresEventStore(postgres_database, pool_size=4)
    try:
        insert_from_both_ends(pooled, messages, 25)
    finally:
        pooled.close()
    assert_rows_derive_from_events(postgres_database)
    assert_matches_reference(store, ["user-0", "user-6"])


def test_summary_reads_leave_pooled_connections_idle_and_writable(
    store: PostgresEventStore,
) -> None:
    store.insert_events([in_session(track("ann", "open", jan(1, 9)), "s-1")])
    days = DateRange(date(2026, 1, 1), date(2026, 1, 1))
    for _ in range(8):  # past psycopg's prepare threshold: prepared plans answer the same
        assert store.user_summary("ann", days, 10).event_counts == {"open": 1}
    with store._conn() as conn:  # the same pooled connections: no transaction left open
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        assert conn.execute("SHOW transaction_read_only").fetchone() == ("off",)


def test_an_unstorable_user_id_has_an_empty_summary(store: PostgresEventStore) -> None:
    summary: Any = store.user_summary("a\x00b", None, 10)
    assert summary == UserSummary(None, None, {}, 0, [])
