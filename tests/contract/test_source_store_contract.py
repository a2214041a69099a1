"""The `SourceStore` contract on SQLite, DynamoDB (moto) and PostgreSQL, and the write-key
cache in front of it: every backend must give the same answers."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import boto3
import pytest
from moto import mock_aws
from mysoulmate.analytics.ports import Source, SourceStore
from mysoulmate.analytics.write_keys import (
    WriteKeyCache,
    create_source,
    hash_key,
    new_source,
)
from mysoulmate.storage.dynamodb.sources import DynamoSourceStore
from mysoulmate.storage.dynamodb.store import table_schema
from mysoulmate.storage.sqlite.sources import SqliteSourceStore
from mysoulmate.storage.sqlite.store import SqliteEventStore

from tests.contract.conftest import BACKENDS
from tests.support.messages import jan, track
from tests.support.postgres import truncate_all

T0 = datetime(2026, 3, 1, 9, 30, 15, 123456, tzinfo=UTC)


@pytest.fixture(params=BACKENDS)
def sources(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SourceStore]:
    if request.param == "sqlite":
        yield SqliteSourceStore(tmp_path / "analytics.db")
    elif request.param == "dynamodb":
        with mock_aws():
            client = boto3.client("dynamodb", region_name="us-east-1")
            table = f"contract-{uuid.uuid4().hex[:8]}"
            client.create_table(TableName=table, **table_schema())
            yield DynamoSourceStore(table, client)
    else:
        from mysoulmate.storage.postgres.sources import PostgresSourceStore

        conninfo: str = request.getfixturevalue("postgres_database")
        truncate_all(conninfo)
        store = PostgresSourceStore(conninfo)
        yield store
        store.close()


def stored(store: SourceStore, name: str, created_at: datetime = T0) -> tuple[Source, str]:
    """A source stored with a fresh key; returns it and the key."""
    source, key = new_source(name, "client", created_at)
    store.create_source(source, hash_key(key))
    return source, key


# -- the store -------------------------------------------------------------------------------


def test_a_source_is_found_by_its_key_hash_only(sources: SourceStore) -> None:
    source, key = stored(sources, "ios")

    assert sources.find_source(hash_key(key)) == source
    assert sources.find_source(hash_key(key + "x")) is None
    assert sources.find_source(key) is None  # the key itself is never what is stored


def test_times_come_back_as_the_same_instant_in_utc(sources: SourceStore) -> None:
    paris = timezone(timedelta(hours=2))
    _, key = stored(sources, "web", T0.astimezone(paris))

    found = sources.find_source(hash_key(key))
    assert found is not None
    assert found.created_at == T0  # microseconds kept
    assert found.created_at.utcoffset() == timedelta(0)


def test_list_is_oldest_first_and_includes_revoked_sources(sources: SourceStore) -> None:
    middle, _ = stored(sources, "android", T0 + timedelta(hours=1))
    newest, _ = stored(sources, "backend", T0 + timedelta(days=2))
    oldest, _ = stored(sources, "ios", T0)
    revoked = sources.revoke_source(middle.id, T0 + timedelta(days=3))

    assert sources.list_sources() == [oldest, revoked, newest]


def test_an_empty_store_lists_nothing(sources: SourceStore) -> None:
    assert sources.list_sources() == []


def test_revoking_keeps_the_first_revocation_time(sources: SourceStore) -> None:
    source, key = stored(sources, "ios")
    first, later = T0 + timedelta(hours=1), T0 + timedelta(hours=5)

    revoked = sources.revoke_source(source.id, first)
    assert revoked == source._replace(revoked_at=first)
    assert sources.revoke_source(source.id, later) == revoked
    # Both ways of reading the source agree (DynamoDB keeps two items per source).
    assert sources.find_source(hash_key(key)) == revoked
    assert sources.list_sources() == [revoked]


def test_revoking_an_unknown_source_answers_none(sources: SourceStore) -> None:
    stored(sources, "ios")

    assert sources.revoke_source(str(uuid.uuid4()), T0) is None
    assert [s.revoked_at for s in sources.list_sources()] == [None]


def test_a_duplicate_id_or_key_hash_is_rejected_and_stores_nothing(
    sources: SourceStore,
) -> None:
    source, key = stored(sources, "ios")
    other, other_key = new_source("web", "server", T0)

    with pytest.raises(ValueError, match="already exists"):
        sources.create_source(other._replace(id=source.id), hash_key(other_key))
    with pytest.raises(ValueError, match="already exists"):
        sources.create_source(other, hash_key(key))

    assert sources.list_sources() == [source]
    assert sources.find_source(hash_key(other_key)) is None
    assert sources.find_source(hash_key(key)) == source


def test_create_source_stores_what_it_returns(sources: SourceStore) -> None:
    source, key = create_source(sources, "  billing  ", "server", T0)

    assert (source.name, source.kind, source.key_hint) == ("billing", "server", key[:7])
    assert sources.find_source(hash_key(key)) == source


# -- the cache in front of it -----------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class CountingStore:
    """A store that counts the lookups that reach it."""

    def __init__(self, inner: SourceStore) -> None:
        self.inner = inner
        self.finds = 0

    def create_source(self, source: Source, key_hash: str) -> None:
        self.inner.create_source(source, key_hash)

    def find_source(self, key_hash: str) -> Source | None:
        self.finds += 1
        return self.inner.find_source(key_hash)

    def list_sources(self) -> list[Source]:
        return self.inner.list_sources()

    def revoke_source(self, source_id: str, revoked_at: datetime) -> Source | None:
        return self.inner.revoke_source(source_id, revoked_at)


def test_a_cached_key_is_answered_without_the_store(sources: SourceStore) -> None:
    counting, clock = CountingStore(sources), FakeClock()
    cache = WriteKeyCache(ttl_seconds=30, clock=clock)
    source, key = stored(sources, "ios")

    assert cache.lookup(counting, key) == source
    clock.now += 29
    assert cache.lookup(counting, key) == source
    assert cache.lookup(counting, "wk_unknown") is None
    assert cache.lookup(counting, "wk_unknown") is None
    assert counting.finds == 2  # one per key


def test_a_revoked_key_stops_authenticating_once_its_entry_expires(
    sources: SourceStore,
) -> None:
    counting, clock = CountingStore(sources), FakeClock()
    cache = WriteKeyCache(ttl_seconds=30, clock=clock)
    source, key = stored(sources, "ios")
    assert cache.lookup(counting, key) == source

    sources.revoke_source(source.id, T0 + timedelta(minutes=1))
    clock.now += 29.9
    assert cache.lookup(counting, key) == source  # the bounded window the cache allows
    clock.now += 0.2
    assert cache.lookup(counting, key) is None
    clock.now += 3600
    assert cache.lookup(counting, key) is None  # revoked stays revoked
    assert counting.finds == 3


# -- living beside the event store -------------------------------------------------------------


def test_sqlite_sources_share_the_event_store_file_in_either_order(tmp_path: Path) -> None:
    for first in ("events", "sources"):
        path = tmp_path / f"{first}-first.db"
        if first == "sources":
            source, key = stored(SqliteSourceStore(path), "ios")
        events = SqliteEventStore(path)
        if first == "events":
            source, key = stored(SqliteSourceStore(path), "ios")

        assert events.insert_events([track("alice", "signup", jan(5))]).written == 1
        assert SqliteSourceStore(path).find_source(hash_key(key)) == source
        assert [p.event for p in events.user_event_points("alice")] == ["signup"]
