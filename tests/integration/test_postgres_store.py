"""PostgreSQL-specific behaviour of the storage adapter, against a real server.

Behaviour every backend shares is covered by the contract suite; these tests cover what
only this adapter has: migrations and the schema check, the bulk ingest transaction and
its rollups, Secrets Manager credentials, connection handling and the migrate command.
"""

from __future__ import annotations

import json
import random
import threading
import uuid
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import boto3
import psycopg
import pytest
from moto import mock_aws
from mysoulmate.analytics.models import QueuedMessage
from mysoulmate.analytics.ports import StorageUnavailableError
from mysoulmate.analytics.rollups import ANY_EVENT, rollup_delta
from mysoulmate.core.errors import InvalidRequestError
from mysoulmate.core.settings import get_settings
from mysoulmate.runtime.backends import event_store, reset_backends
from mysoulmate.runtime.cli import main
from mysoulmate.storage.postgres import user_sets
from mysoulmate.storage.postgres.connection import (
    HEAD_REVISION,
    DatabaseNotMigratedError,
    conninfo,
)
from mysoulmate.storage.postgres.migrate import current_revision, head_revision, migrate
from mysoulmate.storage.postgres.store import PostgresEventStore
from pyroaring import AbstractBitMap

from tests.support.postgres import scratch_database, truncate_all

BASE = datetime(2026, 1, 31, 12, 0, 0, tzinfo=UTC)
WHOLE_RANGE = (date(2025, 1, 1), date(2027, 1, 1))
NOT_MIGRATED = (
    "PostgreSQL database {db} on 127.0.0.1 is not migrated (at revision none, this release "
    "needs {head}): run `mysoulmate migrate`"
)


def track(
    user: str,
    event: str = "message_sent",
    at: datetime = BASE,
    *,
    message_id: str | None = None,
    **fields: Any,
) -> QueuedMessage:
    return QueuedMessage(
        type="track",
        messageId=message_id or str(uuid.uuid4()),
        userId=user,
        event=event,
        timestamp=at,
        receivedAt=at + timedelta(seconds=1),
        **fields,
    )


def identify(user: str, traits: dict[str, Any], at: datetime = BASE) -> QueuedMessage:
    return QueuedMessage(
        type="identify",
        messageId=str(uuid.uuid4()),
        userId=user,
        traits=traits,
        timestamp=at,
        receivedAt=at,
    )


def dbname(info: str) -> str:
    return psycopg.conninfo.conninfo_to_dict(info)["dbname"]  # type: ignore[return-value]


def ordinals_of(info: str) -> dict[str, int]:
    with psycopg.connect(info) as conn:
        rows = conn.execute("SELECT user_id, ordinal FROM user_ordinals WHERE user_id IS NOT NULL")
        return {user: ordinal for user, ordinal in rows}


def rollup_snapshot(store: PostgresEventStore, info: str) -> dict[str, Any]:
    """Every rollup in plain values: counts, revenue, user sets as user ids, first seen."""
    names = {ordinal: user for user, ordinal in ordinals_of(info).items()}

    def users_of(bitmap: Any) -> frozenset[str]:
        assert isinstance(bitmap, AbstractBitMap)  # Roaring: cached reads are frozen ones
        return frozenset(names[o] for o in bitmap)

    return {
        "counts": sorted(store.rollup_counts(*WHOLE_RANGE)),
        "revenue": sorted(store.rollup_revenue(*WHOLE_RANGE)),
        "users": sorted(
            (r.day, r.platform, r.event, users_of(r.users))
            for r in store.rollup_users(*WHOLE_RANGE, by_event=True)
        ),
        "first_seen": {
            day: users_of(users) for day, users in store.first_seen_users(*WHOLE_RANGE).items()
        },
    }


def expected_snapshot(messages: list[QueuedMessage]) -> dict[str, Any]:
    """The rollups of ``messages`` stored once each, computed in one go."""
    unique = list({m.key: m for m in messages}.values())
    delta = rollup_delta(unique)
    first_seen: dict[date, set[str]] = defaultdict(set)
    for user, day in delta.first_seen.items():
        first_seen[day].add(user)
    return {
        "counts": sorted((d, p, e, n) for (d, p, e), n in delta.counts.items()),
        "revenue": sorted((d, p, c, n) for (d, p, c), n in delta.revenue.items()),
        "users": sorted((d, p, e, frozenset(u)) for (d, p, e), u in delta.users.items()),
        "first_seen": {day: frozenset(users) for day, users in first_seen.items()},
    }


@pytest.fixture
def scratch() -> Iterator[str]:
    with scratch_database() as info:
        yield info


@pytest.fixture
def postgres_env(monkeypatch: pytest.MonkeyPatch, postgres_database: str) -> str:
    """The process configured for PostgreSQL via DATABASE_URL (the session database)."""
    monkeypatch.setenv("STORAGE_BACKEND", "postgres")
    monkeypatch.setenv("DATABASE_URL", postgres_database)
    reset_backends()
    return postgres_database


# -- migrations and the schema check ----------------------------------------------------------


def test_head_revision_constant_is_alembics_head() -> None:
    assert head_revision() == HEAD_REVISION


def test_migrate_twice_is_a_no_op(scratch: str) -> None:
    assert current_revision(scratch) is None
    assert migrate(scratch) == HEAD_REVISION

    def schema() -> list[tuple[Any, ...]]:
        with psycopg.connect(scratch) as conn:
            return conn.execute(
                "SELECT c.relname, c.relkind, pg_get_indexdef(c.oid) FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = 'public' ORDER BY c.relname"
            ).fetchall()

    before = schema()
    assert migrate(scratch) == HEAD_REVISION
    assert schema() == before
    with psycopg.connect(scratch) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [
            (HEAD_REVISION,)
        ]


def test_unmigrated_database_is_refused_with_a_clear_message(scratch: str) -> None:
    with pytest.raises(DatabaseNotMigratedError) as caught:
        PostgresEventStore(scratch)
    assert str(caught.value) == NOT_MIGRATED.format(db=dbname(scratch), head=HEAD_REVISION)


def test_database_from_an_unknown_release_is_refused(scratch: str) -> None:
    migrate(scratch)
    with psycopg.connect(scratch) as conn:
        conn.execute("UPDATE alembic_version SET version_num = 'f00dfeed'")
    with pytest.raises(DatabaseNotMigratedError, match="at revision f00dfeed, which this release"):
        PostgresEventStore(scratch)


def test_server_and_consumer_refuse_to_start_on_an_unmigrated_database(
    scratch: str, monkeypatch: pytest.MonkeyPatch, load_function: Any
) -> None:
    from fastapi.testclient import TestClient
    from mysoulmate.runtime.server import create_server_app

    monkeypatch.setenv("STORAGE_BACKEND", "postgres")
    monkeypatch.setenv("DATABASE_URL", scratch)
    reset_backends()
    with (
        pytest.raises(DatabaseNotMigratedError, match="run `mysoulmate migrate`"),
        TestClient(create_server_app()),
    ):
        pass
    reset_backends()
    with pytest.raises(DatabaseNotMigratedError, match="run `mysoulmate migrate`"):
        load_function("consumer")


def test_event_store_builds_the_postgres_adapter(postgres_env: str) -> None:
    store = event_store()
    assert isinstance(store, PostgresEventStore)
    store.ping()
    store.close()


# -- ingest ------------------------------------------------------------------------------------


def test_same_batch_twice_is_stored_once_and_rollups_do_not_change(
    postgres_store: PostgresEventStore, postgres_database: str
) -> None:
    batch = [
        track("alice", "signup", platform="ios"),
        track("alice", "purchase", properties={"revenue": 4.99, "currency": "eur"}),
        track("bob", "message_sent", BASE - timedelta(days=1), platform="web"),
        identify("alice", {"plan": "pro"}),
    ]
    first = postgres_store.insert_events(batch)
    assert (first.written, first.duplicates, first.failed) == (4, 0, {})
    after_first = rollup_snapshot(postgres_store, postgres_database)

    again = postgres_store.insert_events(batch)
    assert (again.written, again.duplicates, again.failed) == (0, 4, {})
    assert rollup_snapshot(postgres_store, postgres_database) == after_first
    assert after_first == expected_snapshot(batch)
    with psycopg.connect(postgres_database) as conn:
        assert conn.execute("SELECT count(*) FROM events").fetchone() == (4,)


def test_duplicates_within_a_batch_collapse_before_staging(
    postgres_store: PostgresEventStore,
) -> None:
    message = track("alice", message_id="m-1")
    result = postgres_store.insert_events([message, message, message])
    assert (result.written, result.duplicates) == (1, 2)
    (row,) = postgres_store.rollup_counts(*WHOLE_RANGE)
    assert row.events == 1


def test_rollups_are_exact_when_batches_arrive_out_of_order_and_twice(
    postgres_store: PostgresEventStore, postgres_database: str
) -> None:
    rng = random.Random(7)
    messages = [
        track(
            f"user-{rng.randrange(40)}",
            rng.choice(["signup", "message_sent", "purchase"]),
            BASE - timedelta(days=rng.randrange(5), seconds=rng.randrange(86400)),
            platform=rng.choice(["ios", "android", None]),
            properties={"revenue": rng.choice([0.99, 9.99, "n/a"])},
        )
        for _ in range(600)
    ]
    batches = [messages[i : i + 50] for i in range(0, len(messages), 50)]
    rng.shuffle(batches)
    # Newest days first (so first-seen days must move back), with redelivered batches.
    batches.sort(key=lambda b: -max(m.timestamp for m in b).timestamp())
    for batch in [*batches, batches[3], batches[0] + batches[5][:10]]:
        assert not postgres_store.insert_events(batch).failed
    assert rollup_snapshot(postgres_store, postgres_database) == expected_snapshot(messages)


def test_concurrent_overlapping_batches_neither_deadlock_nor_double_count(
    postgres_store: PostgresEventStore, postgres_database: str
) -> None:
    messages = [
        track(f"user-{i % 30}", f"event-{i % 4}", BASE - timedelta(hours=i % 50))
        for i in range(400)
    ]
    errors: list[BaseException] = []

    def consume(order: list[QueuedMessage]) -> None:
        try:
            for start in range(0, len(order), 40):
                assert not postgres_store.insert_events(order[start : start + 40]).failed
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    threads = [
        threading.Thread(target=consume, args=(messages,)),
        threading.Thread(target=consume, args=(messages[::-1],)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert rollup_snapshot(postgres_store, postgres_database) == expected_snapshot(messages)


def test_a_message_postgres_cannot_hold_fails_alone(postgres_store: PostgresEventStore) -> None:
    good = track("alice")
    # Validation refuses both today; messages queued by an older release may still hold them.
    nul = track("alice").model_copy(update={"properties": {"note": "a\x00b"}})
    nan = track("bob").model_copy(update={"properties": {"score": float("nan")}})
    result = postgres_store.insert_events([good, nul, nan])
    assert result.written == 1
    assert set(result.failed) == {nul.key, nan.key}
    assert [e.messageId for e in postgres_store.list_events("alice", 10, None).events] == [
        good.messageId
    ]


def test_database_error_fails_the_whole_batch_and_stores_nothing(
    postgres_store: PostgresEventStore, monkeypatch: pytest.MonkeyPatch, postgres_database: str
) -> None:
    batch = [track("alice"), track("bob", "purchase", properties={"revenue": 1})]

    def broken(*_: Any) -> None:
        raise psycopg.errors.SerializationFailure("simulated")

    monkeypatch.setattr(user_sets, "merge_daily", broken)
    result = postgres_store.insert_events(batch)
    assert set(result.failed) == {m.key for m in batch}
    assert result.written == 0
    with psycopg.connect(postgres_database) as conn:
        assert conn.execute("SELECT count(*) FROM events").fetchone() == (0,)
    assert postgres_store.rollup_counts(*WHOLE_RANGE) == []
    monkeypatch.undo()
    assert postgres_store.insert_events(batch).written == 2  # a redelivery then succeeds


# -- reads -------------------------------------------------------------------------------------


def test_timestamps_round_trip_to_the_microsecond_in_utc(
    postgres_store: PostgresEventStore,
) -> None:
    at = datetime(2026, 3, 29, 1, 59, 59, 999_999, tzinfo=UTC)
    postgres_store.insert_events([track("alice", at=at)])
    (stored,) = postgres_store.list_events("alice", 10, None).events
    assert stored.timestamp == at
    assert stored.timestamp.utcoffset() == timedelta(0)
    assert stored.receivedAt == at + timedelta(seconds=1)


def test_message_ids_order_bytewise_whatever_the_database_locale(
    postgres_store: PostgresEventStore,
) -> None:
    ids = ["B", "a", "_x", "Z9", "é"]
    postgres_store.insert_events([track("alice", message_id=i) for i in ids])
    points = postgres_store.user_event_points("alice")
    assert [p.message_id for p in points] == sorted(ids)  # Python str order = byte order


def test_cursor_with_a_forged_time_is_rejected(postgres_store: PostgresEventStore) -> None:
    from mysoulmate.storage.paging import encode_cursor

    forged = encode_cursor({"ts": "yesterday", "id": "m"})
    with pytest.raises(InvalidRequestError):
        postgres_store.list_events("alice", 10, forged)


def test_abandoned_funnel_stream_leaves_the_lambda_connection_usable(
    postgres_database: str,
) -> None:
    truncate_all(postgres_database)
    store = PostgresEventStore(postgres_database, pool_size=None)  # the Lambda mode
    try:
        store.insert_events(
            [track(f"user-{i}", "signup") for i in range(50)]
            + [track(f"user-{i}", "purchase", BASE + timedelta(hours=1)) for i in range(50)]
        )
        stream = store.funnel_candidates(  # a generator: closing it abandons the query
            "signup", BASE, BASE, BASE + timedelta(days=1), frozenset({"signup", "purchase"})
        )
        user, points = next(stream)
        # Another call while the stream holds the connection, as a report might make.
        assert len(store.user_event_points(user)) == 2
        assert [p.event for p in points] == ["signup", "purchase"]
        stream.close()  # type: ignore[attr-defined]
        assert len(list(store.funnel_candidates("signup", BASE, BASE, BASE, None))) == 50
    finally:
        store.close()


def test_funnel_reads_turn_jit_off_for_their_own_transaction_only(
    postgres_database: str,
) -> None:
    # JIT compiling cost more than it saved on every funnel read measured (performance.md);
    # a read that set it for the session would change every later query on the connection.
    truncate_all(postgres_database)
    store = PostgresEventStore(postgres_database, pool_size=None)  # one connection, reused
    try:
        store.insert_events(
            [track(f"user-{i}", "signup") for i in range(5)]
            + [track(f"user-{i}", "purchase", BASE + timedelta(hours=1)) for i in range(5)]
        )
        with store._conn() as conn:
            server_default = conn.execute("SELECT current_setting('jit')").fetchone()
        steps = ("signup", "purchase")
        rows = list(store.funnel_next_times(steps, True, BASE, BASE))
        assert sorted(user for user, _, _ in rows) == [f"user-{i}" for i in range(5)]
        stream = store.funnel_step_times("signup", BASE, BASE, BASE, frozenset(steps))
        next(stream)
        stream.close()  # type: ignore[attr-defined]
        assert len(list(store.funnel_candidates("signup", BASE, BASE, BASE, None))) == 5
        with store._conn() as conn:  # SET LOCAL: nothing left on the reused connection
            assert conn.execute("SELECT current_setting('jit')").fetchone() == server_default
    finally:
        store.close()


def test_lambda_connection_cut_while_frozen_is_replaced(
    postgres_store: PostgresEventStore, postgres_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = PostgresEventStore(postgres_database, pool_size=None)
    try:
        store.ping()
        with psycopg.connect(postgres_database, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        monkeypatch.setattr("mysoulmate.storage.postgres.pooling.IDLE_CHECK_SECONDS", 0.0)
        store.insert_events([track("alice")])
        assert len(store.user_event_points("alice")) == 1
    finally:
        store.close()


def test_unreachable_database_is_storage_unavailable(postgres_store: PostgresEventStore) -> None:
    with pytest.raises(StorageUnavailableError, match="cannot reach PostgreSQL database"):
        PostgresEventStore("host=127.0.0.1 port=1 dbname=nowhere user=x connect_timeout=2")


# -- erasure -----------------------------------------------------------------------------------


def test_erasure_clears_bits_and_never_reuses_the_ordinal(
    postgres_store: PostgresEventStore, postgres_database: str
) -> None:
    postgres_store.insert_events(
        [
            track("alice", "signup", platform="ios"),
            track("alice", "purchase", BASE - timedelta(days=2)),
            track("bob", "signup", platform="ios"),
        ]
    )
    alice = ordinals_of(postgres_database)["alice"]
    result = postgres_store.delete_user("alice", BASE + timedelta(seconds=2))
    assert (result.events, result.profile) == (2, False)
    for row in postgres_store.rollup_users(*WHOLE_RANGE, by_event=True):
        assert alice not in row.users  # type: ignore[operator]
    assert {row.event for row in postgres_store.rollup_users(*WHOLE_RANGE, by_event=True)} == {
        ANY_EVENT,
        "signup",
    }
    assert alice not in ordinals_of(postgres_database).values()
    assert len(postgres_store.rollup_counts(*WHOLE_RANGE)) == 2  # anonymous counts stay

    comeback = track("alice", "comeback", BASE + timedelta(seconds=5))  # after the erasure
    postgres_store.insert_events([track("carol"), comeback])
    ordinals = ordinals_of(postgres_database)
    assert alice not in (ordinals["carol"], ordinals["alice"])
    assert postgres_store.delete_user("nobody", BASE) == postgres_store.delete_user("nobody", BASE)


# -- configuration and the CLI -----------------------------------------------------------------


def test_conninfo_reads_credentials_from_secrets_manager(monkeypatch: pytest.MonkeyPatch) -> None:
    with mock_aws():
        arn = boto3.client("secretsmanager", region_name="us-east-1").create_secret(
            Name="mysoulmate/db",
            SecretString=json.dumps(
                {"engine": "postgres", "username": "app", "password": "p@ss w0rd'\\"}
            ),
        )["ARN"]
        monkeypatch.setenv("STORAGE_BACKEND", "postgres")
        monkeypatch.setenv("DATABASE_HOST", "proxy.example.internal")
        monkeypatch.setenv("DATABASE_PORT", "6432")
        monkeypatch.setenv("DATABASE_NAME", "analytics")
        monkeypatch.setenv("DATABASE_SECRET_ARN", arn)
        reset_backends()
        info = conninfo(get_settings())
    params = psycopg.conninfo.conninfo_to_dict(info)
    assert params["host"] == "proxy.example.internal"
    assert params["port"] == "6432"
    assert params["dbname"] == "analytics"
    assert params["user"] == "app"
    assert params["password"] == "p@ss w0rd'\\"
    assert params["sslmode"] == "require"


def test_conninfo_prefers_database_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STORAGE_BACKEND", "postgres")
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@db.example/x")
    monkeypatch.setenv("DATABASE_HOST", "ignored")
    monkeypatch.setenv("DATABASE_SECRET_ARN", "arn:aws:secretsmanager:us-east-1:1:secret:x")
    reset_backends()
    assert conninfo(get_settings()) == "postgresql://u@db.example/x"


def test_malformed_secret_is_reported_without_its_content(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with mock_aws():
        arn = boto3.client("secretsmanager", region_name="us-east-1").create_secret(
            Name="mysoulmate/db", SecretString='{"user": "app", "pass": "hunter2-secret"}'
        )["ARN"]
        monkeypatch.setenv("STORAGE_BACKEND", "postgres")
        monkeypatch.setenv("DATABASE_HOST", "db.example")
        monkeypatch.setenv("DATABASE_SECRET_ARN", arn)
        reset_backends()
        with pytest.raises(StorageUnavailableError) as caught:
            conninfo(get_settings())
    assert "hunter2" not in str(caught.value)
    assert "'username' and 'password'" in str(caught.value)


def test_migrate_command_migrates_then_reports_already_at_head(
    scratch: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("STORAGE_BACKEND", "postgres")
    monkeypatch.setenv("DATABASE_URL", scratch)
    reset_backends()
    assert main(["migrate"]) == 0
    assert capsys.readouterr().out == f"migrated {dbname(scratch)} to {HEAD_REVISION}\n"
    assert main(["migrate"]) == 0
    assert capsys.readouterr().out == f"already at {HEAD_REVISION}\n"
    PostgresEventStore(scratch).close()  # the services now start


def test_migrate_command_exits_1_without_leaking_the_password(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("STORAGE_BACKEND", "postgres")
    monkeypatch.setenv(
        "DATABASE_URL", "postgresql://app:Sup3rSecretPw@127.0.0.1:1/analytics?connect_timeout=2"
    )
    reset_backends()
    assert main(["migrate"]) == 1  # a failure (2 is for a wrong command line or setting)
    captured = capsys.readouterr()
    assert "cannot migrate PostgreSQL" in captured.err
    assert "Sup3rSecretPw" not in captured.err + captured.out
