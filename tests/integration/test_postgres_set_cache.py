"""PostgreSQL-specific: reads of the daily user sets go through the store's cache
(`user_sets.DailySetCache`), which must answer as the table does after every kind of
change: ingest, another writer, erasure, identity links, and a row changed between the
version probe and the fetch."""

from __future__ import annotations

import itertools
from datetime import date
from typing import Any

import psycopg
import pytest
from mysoulmate.storage import bitmap
from mysoulmate.storage.postgres import user_sets
from mysoulmate.storage.postgres.rollups import WEEK_PLATFORM
from mysoulmate.storage.postgres.store import PostgresEventStore

from tests.support.messages import consume, identify_as, jan, track, visit

JAN = (date(2026, 1, 1), date(2026, 1, 31))
Sets = list[tuple[date, str, str, frozenset[int]]]


def read(store: PostgresEventStore, by_event: bool = True) -> Sets:
    return [
        (r.day, r.platform, r.event, frozenset(r.users))  # type: ignore[call-overload]
        for r in store.rollup_users(*JAN, by_event=by_event)
    ]


def table(info: str, by_event: bool = True) -> Sets:
    """The same read straight from the table, without the cache."""
    with psycopg.connect(info) as conn:
        rows = conn.execute(
            "SELECT day, platform, event, users FROM activity_sets WHERE day BETWEEN %s AND %s "
            "AND (%s OR event = '') AND platform <> %s ORDER BY day, platform, event, chunk",
            (*JAN, by_event, WEEK_PLATFORM),
        ).fetchall()
    found = []
    for key, chunks in itertools.groupby(rows, key=lambda r: r[:3]):
        users = frozenset(bitmap.union_all([bitmap.decode(r[3]) for r in chunks]))
        if users:
            found.append((*key, users))
    return found


def same_sets(before: Sets, after: Sets) -> int:
    """How many sets of ``after`` are the very objects ``before`` had (cached, not fetched)."""
    kept = {id(users) for *_, users in before}
    return sum(id(users) in kept for *_, users in after)


def objects(store: PostgresEventStore) -> Sets:
    return [(r.day, r.platform, r.event, r.users) for r in store.rollup_users(*JAN, by_event=True)]


def test_cached_reads_answer_as_the_table_after_every_change(
    postgres_store: PostgresEventStore, postgres_database: str
) -> None:
    days = [track(f"u{n}", event, jan(d)) for n in range(6) for d in (2, 3, 4) for event in "ab"]
    consume(postgres_store, *days)
    assert read(postgres_store) == table(postgres_database)
    assert read(postgres_store, by_event=False) == table(postgres_database, by_event=False)
    first = objects(postgres_store)
    second = objects(postgres_store)
    assert same_sets(first, second) == len(first)  # nothing changed: nothing fetched

    consume(postgres_store, track("u9", "a", jan(4)))  # a few rows change: only they are read
    third = objects(postgres_store)
    assert read(postgres_store) == table(postgres_database)
    assert 0 < same_sets(second, third) < len(third)

    other = PostgresEventStore(postgres_database)  # another process's writes
    try:
        consume(other, track("u1", "c", jan(3), platform="ios"), visit("a-1", jan(2)))
        consume(other, identify_as("u7", "a-1", jan(5)))
        assert read(postgres_store) == table(postgres_database)
        other.delete_user("u2", jan(6))
        assert read(postgres_store) == table(postgres_database)
        assert read(postgres_store, by_event=False) == table(postgres_database, by_event=False)
        consume(other, track("u3", "a", jan(31)), track("u4", "b", jan(31)))  # the last day
        assert read(postgres_store) == table(postgres_database)
        consume(other, track("u5", "a", jan(31)))
        assert read(postgres_store) == table(postgres_database)
    finally:
        other.close()


def test_a_row_changed_between_the_probe_and_the_fetch_is_read_again(
    postgres_store: PostgresEventStore,
    postgres_database: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    consume(postgres_store, *[track(f"u{n}", "a", jan(d)) for n in range(4) for d in (2, 3, 4)])
    read(postgres_store)
    consume(postgres_store, track("u8", "a", jan(4)))  # before the last day: read by key
    real = user_sets.DailySetCache.resolve
    calls: list[int] = []

    def then_change_a_cached_row(self: Any, rows: Any) -> Any:
        found, stale = real(self, rows)
        calls.append(len(stale))
        if len(calls) == 1:
            day, platform, event, chunk, _ = found[0]
            with psycopg.connect(postgres_database, autocommit=True) as conn:
                conn.execute(
                    "UPDATE activity_sets SET users = %s WHERE (day, platform, event, chunk) = "
                    "(%s, %s, %s, %s)",
                    (bitmap.encode(bitmap.of([1_000])), day, platform, event, chunk),
                )
        return found, stale

    monkeypatch.setattr(user_sets.DailySetCache, "resolve", then_change_a_cached_row)
    changed = read(postgres_store)
    monkeypatch.undo()
    assert len(calls) == 3  # the versions, the rows read by key, then all
    assert calls[-1] == 0
    assert changed == table(postgres_database)
    assert frozenset({1_000}) in {users for *_, users in changed}


def test_a_cache_smaller_than_the_sets_still_answers_exactly(
    postgres_store: PostgresEventStore, postgres_database: str
) -> None:
    consume(postgres_store, *[track(f"u{n}", "a", jan(d)) for n in range(50) for d in (2, 3)])
    cache = user_sets.DailySetCache(max_bytes=40)
    postgres_store._daily_set_cache = cache
    for by_event in (True, False, True):
        assert read(postgres_store, by_event) == table(postgres_database, by_event)
    assert cache._bytes <= 40
