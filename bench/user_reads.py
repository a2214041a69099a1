"""Per-user reads: `GET /user/{id}?limit=1` for a user with 20k and with 40k events.

1. **Data.** One SQLite file and one scratch PostgreSQL database (migrated to head) hold the
   same events, written through each store's own `insert_events` in batches of 1,000: a
   background of 10k seeded events (1k users), then two heavy users whose histories differ
   only in length: sessions of 20 events a minute apart, one session every 43 minutes,
   20k events over 30 days and 40k over 60 days (`--quick`: 2k and 4k). Every event carries
   its session id, as the consumer assigns it.
2. **Operations**, median of 31 runs after 2 warm-ups (`--quick`: 5), both users and both
   backends interleaved round by round: the route's work
   (`user_analytics.user_analytics(store, user, limit=1)`: profile, summaries, one event),
   all time and for the last 7 days of the user's history.
3. **Floor: how it was read before**, same run, same stores: the same answer computed from
   every event of the user (`user_event_points` + `summary_from_points`, profile, one event),
   which is what `GET /user/{id}` did before the summaries. Both answers are checked equal.

Goal (issue 18): flat, the cost follows `limit`, not the user's history: 40k ÷ 20k ≤ 1.2 x
(the run-to-run noise of a few-ms read on this machine), against the floor's ≈ 2 x.

4. **DynamoDB** (moto): the same two users' events, as the store builds their items, written
   with BatchWriteItem (the read path reads event items only; moto's transactions copy the
   whole table for rollback, which would take hours here). moto's Query looks at every item
   of the table whatever the key condition, so its time says nothing of DynamoDB's: what is
   measured is what DynamoDB bills and pages through, the items each request reads
   (`ScannedCount` of every Query, one per GetItem), counted by the client's own event hook.
   The table keeps no per-user summaries: a range reads its own events, all time reads all.
"""

from __future__ import annotations

import gc
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from bench._common import median, print_table, ratio, standalone_main, summary, verdict
from bench.read_side import scratch_database, settings_env

TARGET = 1.2
SESSION_EVENTS = 20
SESSION_EVERY = timedelta(minutes=43)
START = datetime(2025, 11, 1, tzinfo=UTC)
HEAVY = {"20k": (20_000, 30), "40k": (40_000, 60)}
QUICK = {"20k": (2_000, 30), "40k": (4_000, 60)}
NAMES = ("open", "message_sent", "companion_created", "screen_view", "purchase")
BATCH = 1_000
BACKGROUND = 10_000


def heavy_history(user: str, events: int) -> Iterator[Any]:
    """``events`` track events of ``user`` in sessions, each with its session id."""
    from mysoulmate.analytics.models import QueuedMessage

    for n in range(events):
        session, step = divmod(n, SESSION_EVENTS)
        at = START + session * SESSION_EVERY + timedelta(minutes=step)
        message = QueuedMessage(
            type="track",
            messageId=f"{user}-{n:06d}",
            userId=user,
            event=NAMES[n % len(NAMES)],
            timestamp=at,
            receivedAt=at,
            platform="ios",
            properties={},
        )
        yield message.with_session(f"{user}-s{session:05d}", None)


def write(stores: dict[str, Any], messages: Iterator[Any]) -> dict[str, float]:
    seconds = dict.fromkeys(stores, 0.0)
    batch: list[Any] = []
    for message in [*messages, None]:
        if message is not None:
            batch.append(message)
        if batch and (message is None or len(batch) == BATCH):
            for name, store in stores.items():
                started = time.perf_counter()
                result = store.insert_events(batch)
                seconds[name] += time.perf_counter() - started
                if result.failed or result.written != len(batch):
                    raise RuntimeError(f"{name}: stored {result.written} of {len(batch)}")
            batch = []
    return seconds


def before(store: Any, user: str, days: Any) -> Any:
    """What `GET /user/{id}` computed before the summaries: every event of the user."""
    from mysoulmate.analytics.user_summary import MAX_LISTED_SESSIONS, summary_from_points

    store.get_profile(user)
    summary = summary_from_points(store.user_event_points(user), days, MAX_LISTED_SESSIONS)
    first = days.first_moment if days else None
    last = days.last_moment if days else None
    store.list_events(user, 1, None, start=first, end=last)
    return summary


def now(store: Any, user: str, days: Any) -> Any:
    from mysoulmate.analytics.user_analytics import user_analytics

    return user_analytics(store, user, 1, None, days, None)


def last_week(days_of_history: int) -> Any:
    from mysoulmate.analytics.date_range import DateRange

    end = (START + timedelta(days=days_of_history)).date()
    return DateRange(end - timedelta(days=6), end)


def run(quick: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="mysoulmate-bench-") as tmp:
        settings_env(tmp)
        return _run(Path(tmp), QUICK if quick else HEAVY, 5 if quick else 31)


def _run(tmp: Path, heavy: dict[str, tuple[int, int]], runs: int) -> dict[str, Any]:
    from mysoulmate.analytics.seed import seed_messages
    from mysoulmate.analytics.user_summary import MAX_LISTED_SESSIONS
    from mysoulmate.storage.postgres.store import PostgresEventStore
    from mysoulmate.storage.sqlite.store import SqliteEventStore

    result: dict[str, Any] = {"users": {}, "runs": runs, "warmup": 2, "target": TARGET}
    with scratch_database() as info:
        stores = {
            "sqlite": SqliteEventStore(tmp / "users.db"),
            "postgres": PostgresEventStore(info),
        }
        try:
            background = seed_messages(BACKGROUND, BACKGROUND // 10, 30, end=date(2025, 12, 31))
            result["seeding_seconds"] = {"background": write(stores, iter(background))}
            ops: dict[tuple[str, str, str], Callable[[], Any]] = {}
            for name, (events, days) in heavy.items():
                user = f"heavy-{name}"
                print(f"writing {events:,} events of {user} …", flush=True)
                result["seeding_seconds"][name] = write(stores, heavy_history(user, events))
                sessions = -(-events // SESSION_EVENTS)
                result["users"][name] = {"events": events, "days": days, "sessions": sessions}
                week = last_week(days)
                for backend, store in stores.items():
                    for span_name, span in (("all time", None), ("last 7 days", week)):
                        got = now(store, user, span)
                        want = before(store, user, span)
                        if (got.sessions, got.eventCounts) != (want.sessions, want.event_counts):
                            raise RuntimeError(f"{backend} {user} {span_name}: answers differ")
                        if len(got.sessionList) != min(want.sessions, MAX_LISTED_SESSIONS):
                            raise RuntimeError(f"{backend} {user} {span_name}: session list")
                        ops[(backend, f"summaries, {span_name}", name)] = (
                            lambda s=store, u=user, d=span: now(s, u, d)
                        )
                        ops[(backend, f"floor: every event, {span_name}", name)] = (
                            lambda s=store, u=user, d=span: before(s, u, d)
                        )
            samples = _measure(ops, runs)
        finally:
            for store in stores.values():
                store.close()
    result["latency_ms"] = {
        f"{backend} | {op} | {name}": summary(values)
        for (backend, op, name), values in samples.items()
    }
    result["growth"] = _report(samples)
    result["dynamodb_items"] = _dynamodb_items(heavy)
    return result


def _dynamodb_items(heavy: dict[str, tuple[int, int]]) -> dict[str, Any]:
    """Items read by one `GET /user/{id}?limit=1` on DynamoDB, and by the floor."""
    import boto3
    from moto import mock_aws
    from mysoulmate.storage.dynamodb.store import DynamoEventStore, table_schema

    items: dict[tuple[str, str], int] = {}
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(TableName="user-reads", **table_schema())
        store = DynamoEventStore("user-reads", client)
        read = [0]

        def on_query(parsed: dict[str, Any], **_: Any) -> None:
            read[0] += int(parsed.get("ScannedCount", 0))

        def on_get(parsed: dict[str, Any], **_: Any) -> None:
            read[0] += 1 if "Item" in parsed else 0

        client.meta.events.register("after-call.dynamodb.Query", on_query)
        client.meta.events.register("after-call.dynamodb.GetItem", on_get)
        for name, (events, days) in heavy.items():
            user = f"heavy-{name}"
            print(f"DynamoDB: writing {events:,} events of {user} …", flush=True)
            batch = [store._event_item(m) for m in heavy_history(user, events)]
            for start in range(0, len(batch), 25):
                chunk = batch[start : start + 25]
                client.batch_write_item(
                    RequestItems={"user-reads": [{"PutRequest": {"Item": i}} for i in chunk]}
                )
            for span_name, span in (("all time", None), ("last 7 days", last_week(days))):
                got, want = now(store, user, span), before(store, user, span)
                if (got.sessions, got.eventCounts) != (want.sessions, want.event_counts):
                    raise RuntimeError(f"dynamodb {user} {span_name}: answers differ")
                for op, call in (("summaries", now), ("floor: every event", before)):
                    read[0] = 0
                    call(store, user, span)
                    items[(f"{op}, {span_name}", name)] = read[0]
    return _growth(
        {("dynamodb", op): (items[(op, "20k")], items[(op, "40k")]) for op, _ in items},
        "items",
        "d",
        "Per-user read on DynamoDB (moto): items read per request",
    )


def _measure(
    ops: dict[tuple[str, str, str], Callable[[], Any]], runs: int
) -> dict[tuple[str, str, str], list[float]]:
    samples: dict[tuple[str, str, str], list[float]] = {key: [] for key in ops}
    keys = list(ops)
    for round_number in range(runs + 2):
        shift = round_number % len(keys)
        for key in keys[shift:] + keys[:shift]:
            gc.collect()  # a floor's garbage is not collected inside the next read's timing
            started = time.perf_counter()
            ops[key]()
            elapsed = (time.perf_counter() - started) * 1000
            if round_number >= 2:
                samples[key].append(elapsed)
    return samples


def _report(samples: dict[tuple[str, str, str], list[float]]) -> dict[str, Any]:
    return _growth(
        {
            (backend, op): (
                median(samples[(backend, op, "20k")]),
                median(samples[(backend, op, "40k")]),
            )
            for backend, op, _ in samples
        },
        "ms",
        ".2f",
        f"Per-user read, median ms (goal: summaries ≤ {TARGET} x from 20k to 40k events)",
    )


def _growth(
    figures: dict[tuple[str, str], tuple[float, float]], unit: str, spec: str, title: str
) -> dict[str, Any]:
    """Each (backend, read)'s figure at 20k and 40k events, its growth, and the goal for
    the route's reads ("summaries"); printed as a table."""
    growth: dict[str, Any] = {}
    rows = []
    for (backend, op), (small, large) in sorted(figures.items()):
        grown = ratio(large, small)
        is_goal = op.startswith("summaries")
        growth[f"{backend}: {op}"] = {
            f"{unit}_20k": small,
            f"{unit}_40k": large,
            "ratio": grown,
            **({"target": TARGET} if is_goal else {}),
        }
        rows.append(
            [
                backend,
                op,
                format(small, spec),
                format(large, spec),
                f"{grown:.2f}",
                verdict(grown, TARGET) if is_goal else "—",
            ]
        )
    headers = ["backend", "GET /user/{id}?limit=1", f"20k events {unit}", f"40k events {unit}"]
    print_table([*headers, "40k ÷ 20k", "goal"], rows, title=title)
    return growth


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    standalone_main("user_reads", run)
