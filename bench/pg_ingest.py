"""PostgreSQL ingest: the consumer's record handler vs a raw COPY → stage → INSERT.

Data: `analytics.seed.seed_messages` (1,000 users, 30 days ending 2026-01-31, seed 11),
sorted by event time as a live queue delivers them, cut into batches of 1,000 events with
distinct message ids; every batch is new to the database (nothing is a redelivery).

Per round, kinds interleaved and the order rotated:

* **ingest**: one batch's queue bodies (`QueuedMessage.model_dump_json(exclude_none=True)`)
  through `analytics.ingest.IngestBatch` (1,000 x `add` + `flush`) into `PostgresEventStore`,
  which stages, inserts and maintains the daily rollups in one transaction.
* **floor** (DESIGN §6: about 50-75k rows/s): the same rows, built beforehand with the adapter's
  own row conversion, COPY'd into a temporary stage table and moved with
  `INSERT … SELECT … ON CONFLICT DO NOTHING` into `events_raw`, a copy of the events table
  (`LIKE events INCLUDING ALL`: same columns, keys and indexes; no rollups), same database,
  one transaction per batch.
* **insert_events** (information): the next batch, already parsed and given its sessions
  (`assign_sessions` on the stored marks, outside the timer, as `IngestBatch` does before it
  stores), through `store.insert_events` alone, so parsing and rollups can be told apart. The
  seed's messages carry no session id: without that step this line skipped the session rollups
  and the per-user session summaries the ingest path writes.
* **parse** (information, no database): `QueuedMessage.model_validate_json` of the 1,000 bodies.

Then, for information, a breakdown of `insert_events` (a few more batches through a subclass
of the store that times `_insert`, with the adapter's module-level helpers wrapped by timers
in this process only; the adapter's code is not changed), and a cProfile of 3 batches.

Target (issue): ingest ≥ 0.6 x the raw floor's events/s.
"""

from __future__ import annotations

import cProfile
import gc
import io
import os
import pstats
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from typing import Any

from bench._common import median, print_table, ratio, standalone_main, summary
from bench.read_side import scratch_database, settings_env

BATCH = 1_000
USERS = 1_000
DAYS = 30
END = date(2026, 1, 31)
SEED = 11
TARGET = 0.6
DESIGN_FLOOR = (50_000, 75_000)
KINDS = ("ingest", "floor", "insert_events")


def make_batches(count: int) -> list[list[Any]]:
    from mysoulmate.analytics.seed import seed_messages

    messages = list(seed_messages(count * BATCH, USERS, DAYS, end=END, seed=SEED))
    messages.sort(key=lambda m: (m.timestamp, m.messageId))
    batches = [messages[i : i + BATCH] for i in range(0, len(messages), BATCH)]
    batches = [b for b in batches if len(b) == BATCH]
    if len(batches) < count:
        raise RuntimeError(f"seed gave {len(batches)} full batches, need {count}")
    return batches[:count]


def bodies_of(batch: list[Any]) -> list[str]:
    return [m.model_dump_json(exclude_none=True) for m in batch]


def rows_of(batch: list[Any]) -> list[tuple[Any, ...]]:
    from mysoulmate.storage.postgres.store import _event_row  # the adapter's exact stage rows

    return [_event_row(m) for m in batch]


# -- the three ways in --------------------------------------------------------------------


def run_ingest(store: Any, bodies: list[str]) -> float:
    from mysoulmate.analytics.ingest import IngestBatch

    gc.collect()
    start = time.perf_counter()
    batch = IngestBatch(store)
    for n, body in enumerate(bodies):
        batch.add(f"rec-{n}", body)
    outcome = batch.flush()
    elapsed = time.perf_counter() - start
    if outcome.stored != len(bodies) or outcome.failed_records:
        raise RuntimeError(f"ingest stored {outcome.stored}, failed {outcome.failed_records}")
    return elapsed


def with_sessions(store: Any, messages: list[Any]) -> list[Any]:
    """The messages with their sessions, as `IngestBatch` hands them to `insert_events`."""
    from mysoulmate.analytics.sessions import assign_sessions

    people = {m.userId for m in messages if m.event is not None}
    return assign_sessions(messages, store.session_marks(people, set()))


def run_insert_events(store: Any, messages: list[Any]) -> float:
    messages = with_sessions(store, messages)
    gc.collect()
    start = time.perf_counter()
    result = store.insert_events(messages)
    elapsed = time.perf_counter() - start
    if result.written != len(messages) or result.failed:
        raise RuntimeError(f"insert_events wrote {result.written}, failed {result.failed}")
    return elapsed


def prepare_floor(conn: Any) -> None:
    conn.execute("CREATE TABLE events_raw (LIKE events INCLUDING ALL)")
    conn.execute("CREATE TEMP TABLE raw_stage (LIKE events) ON COMMIT DELETE ROWS")


def run_floor(conn: Any, rows: list[tuple[Any, ...]]) -> float:
    from mysoulmate.storage.postgres.store import _EVENT_COLUMNS

    gc.collect()
    start = time.perf_counter()
    with conn.transaction():
        with (
            conn.cursor() as cur,
            cur.copy(f"COPY raw_stage ({_EVENT_COLUMNS}) FROM STDIN") as copy,
        ):
            for row in rows:
                copy.write_row(row)
        inserted = conn.execute(
            "INSERT INTO events_raw SELECT * FROM raw_stage ON CONFLICT DO NOTHING"
        ).rowcount
    elapsed = time.perf_counter() - start
    if inserted != len(rows):
        raise RuntimeError(f"floor inserted {inserted} of {len(rows)} rows")
    return elapsed


def run_parse(bodies: list[str]) -> float:
    from mysoulmate.analytics.models import QueuedMessage

    gc.collect()
    start = time.perf_counter()
    for body in bodies:
        QueuedMessage.model_validate_json(body)
    return time.perf_counter() - start


# -- breakdown: timers around the adapter's steps, in this process only -------------------

STEPS = ("_event_row", "rollup_delta", "_apply_delta", "_allocate_ordinals")


@contextmanager
def timed_steps(timers: dict[str, float]) -> Iterator[None]:
    import mysoulmate.storage.postgres.store as pg

    originals = {name: getattr(pg, name) for name in STEPS}

    def wrap(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                timers[name] += time.perf_counter() - start

        return timed

    for name, func in originals.items():
        setattr(pg, name, wrap(name, func))
    try:
        yield
    finally:
        for name, func in originals.items():
            setattr(pg, name, func)


def timed_store_class() -> type:
    from mysoulmate.storage.postgres.store import PostgresEventStore

    class TimedStore(PostgresEventStore):
        """Times the transaction (`_insert`: stage, COPY, INSERT, rollups, COMMIT)."""

        timers: dict[str, float]

        def _insert(self, conn: Any, rows: Any, messages: Any) -> Any:
            start = time.perf_counter()
            try:
                return super()._insert(conn, rows, messages)
            finally:
                self.timers["_insert"] += time.perf_counter() - start

    return TimedStore


def breakdown(info: str, batches: list[list[Any]]) -> dict[str, Any]:
    per_batch: dict[str, list[float]] = defaultdict(list)
    store = timed_store_class()(info)
    try:
        for batch in batches:
            timers: dict[str, float] = defaultdict(float)
            store.timers = timers
            with timed_steps(timers):
                total = run_insert_events(store, batch)
            apply = timers["_apply_delta"]
            parts = {
                "insert_events (total)": total,
                "rows + dedupe in Python (outside the transaction)": total - timers["_insert"],
                "  of which _event_row (1,000 calls, timer overhead included)": timers[
                    "_event_row"
                ],
                "transaction (_insert)": timers["_insert"],
                "  stage + COPY + INSERT … RETURNING + COMMIT": timers["_insert"]
                - timers["rollup_delta"]
                - apply,
                "  rollup_delta (Python)": timers["rollup_delta"],
                "  _apply_delta (rollup maintenance)": apply,
                "    counts/revenue upserts, user sets, first_seen, session marks": apply
                - timers["_allocate_ordinals"],
                "    _allocate_ordinals": timers["_allocate_ordinals"],
            }
            for name, seconds in parts.items():
                per_batch[name].append(seconds * 1000)
    finally:
        store.close()
    return {name: summary(values) for name, values in per_batch.items()}


def profile(info: str, batches: list[list[Any]], top: int = 14) -> list[str]:
    from mysoulmate.storage.postgres.store import PostgresEventStore

    store = PostgresEventStore(info)
    try:
        profiler = cProfile.Profile()
        for batch in batches:
            messages = with_sessions(store, batch)
            profiler.enable()
            store.insert_events(messages)
            profiler.disable()
    finally:
        store.close()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
    lines = [line for line in out.getvalue().splitlines() if line.strip()]
    start = next(i for i, line in enumerate(lines) if line.lstrip().startswith("ncalls"))
    return lines[start:]


# -- the run ------------------------------------------------------------------------------


def run(quick: bool) -> dict[str, Any]:
    rounds = 5 if quick else 15
    warmup = 2
    extra = 3 if quick else 6  # breakdown batches
    profiled = 3
    with tempfile.TemporaryDirectory(prefix="mysoulmate-bench-") as tmp:
        settings_env(tmp)
        return _run(rounds, warmup, extra, profiled)


def _run(rounds: int, warmup: int, extra: int, profiled: int) -> dict[str, Any]:
    import psycopg
    from mysoulmate.storage.postgres.store import PostgresEventStore

    batches = make_batches(2 * (warmup + rounds) + extra + profiled)
    users = [len({m.userId for m in b}) for b in batches]
    keys = [len({(m.timestamp.date(), m.platform, m.event) for m in b}) for b in batches]
    samples: dict[str, list[float]] = {k: [] for k in (*KINDS, "parse")}
    with scratch_database() as info:
        store = PostgresEventStore(info)
        raw = psycopg.connect(info, autocommit=True)
        try:
            prepare_floor(raw)
            for r in range(warmup + rounds):
                first, second = batches[2 * r], batches[2 * r + 1]
                bodies, rows = bodies_of(first), rows_of(first)
                order = KINDS[r % 3 :] + KINDS[: r % 3]
                took: dict[str, float] = {}
                for kind in order:
                    if kind == "ingest":
                        took[kind] = run_ingest(store, bodies)
                    elif kind == "floor":
                        took[kind] = run_floor(raw, rows)
                    else:
                        took[kind] = run_insert_events(store, second)
                took["parse"] = run_parse(bodies)
                if r >= warmup:
                    for kind, seconds in took.items():
                        samples[kind].append(BATCH / seconds)
            used = 2 * (warmup + rounds)
            parts = breakdown(info, batches[used : used + extra])
            hot = profile(info, batches[used + extra :])
            stored = raw.execute("SELECT count(*) FROM events").fetchone()[0]
            stored_raw = raw.execute("SELECT count(*) FROM events_raw").fetchone()[0]
        finally:
            raw.close()
            store.close()
    med = {k: median(v) for k, v in samples.items()}
    share = ratio(med["ingest"], med["floor"])
    result = {
        "batch": BATCH,
        "users": USERS,
        "rounds": rounds,
        "warmup_rounds": warmup,
        "distinct_users_per_batch": {"median": median(users), "min": min(users)},
        "rollup_keys_per_batch": {"median": median(keys), "min": min(keys)},
        "events_per_second": {k: summary(v) for k, v in samples.items()},
        "ingest_vs_floor": share,
        "insert_events_vs_floor": ratio(med["insert_events"], med["floor"]),
        "target": TARGET,
        "verdict": "met" if share >= TARGET else f"MISSED ({share:.2f} < {TARGET})",
        "design_floor_rows_per_second": list(DESIGN_FLOOR),
        "breakdown_ms_per_batch": parts,
        "profile_top": hot,
        "rows_in_events": stored,
        "rows_in_events_raw": stored_raw,
    }
    labels = {
        "ingest": "IngestBatch (parse + insert_events) → PostgresEventStore",
        "floor": "floor: COPY → temp stage → INSERT … ON CONFLICT, no rollups",
        "insert_events": "store.insert_events alone (pre-parsed)",
        "parse": "parse only: QueuedMessage.model_validate_json (no DB)",
    }
    rows = []
    for kind in (*KINDS, "parse"):
        p25, p75 = summary(samples[kind])["p25"], summary(samples[kind])["p75"]
        rows.append([labels[kind], med[kind], p25, p75, ratio(med[kind], med["floor"])])
    rows.append(
        [f"target: ingest ≥ {TARGET:g} x floor", "", "", "", f"{share:.2f} {result['verdict']}"]
    )
    print_table(
        ["PostgreSQL, batches of 1,000", "events/s", "p25", "p75", "÷ floor"],
        rows,
        title=f"PostgreSQL ingest, median of {rounds} rounds after {warmup} warm-up, "
        f"{median(users):.0f} distinct users and {median(keys):.0f} (day, platform, event) "
        "keys per batch (medians)",
    )
    print_table(
        ["insert_events, per batch of 1,000", "ms median", "p25", "p75"],
        [[name, s["median"], s["p25"], s["p75"]] for name, s in parts.items()],
        title=f"Where insert_events spends its time ({extra} batches, timers around the "
        "adapter's steps)",
    )
    print(f"\ncProfile of insert_events, {profiled} batches, top by own time:")
    print("\n".join(hot))
    print(f"\nload average now: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return result


if __name__ == "__main__":
    standalone_main("pg_ingest", run)
