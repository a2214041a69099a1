"""Reports: weekly reports per second over a year of data, at 10k and 1M stored events (SQLite).

1. **Data.** `analytics.seed.seed_messages(size, 2,000 users, 365 days ending 2026-12-27,
   seed 7)` written through `SqliteEventStore.insert_events` in batches of 5,000, so the
   rollups are the consumer's. The user count is fixed so that the two sizes differ in events
   only (10k: 5 events per user; 1M: 500). Seeding 1M takes 2-3 minutes, so each seeded
   database is kept in `${XDG_CACHE_HOME:-~/.cache}/mysoulmate-bench/` under a name derived
   from the parameters and the source of everything that writes it (seed, rollups,
   sessions, the SQLite store): a later run, or a run after an unrelated change, reuses it.
   `BENCH_REPORTS_NO_CACHE=1` seeds into a temporary directory instead.
2. **Timing**, median of 7 runs after 1 warm-up (`--quick`: 3 runs, 10k and 100k; a cell
   whose warm-up took over 2 s, 3 runs), both sizes interleaved round by round, of the last
   week (2026-W52):
   - figures: `build_period_report` (two dashboards and eight weekly cohorts, rollups only);
   - report: the figures plus `render_report` (five charts through vl-convert, HTML, JSON, CSV);
   - floor: the naive SQL a report without rollups would run on `events` for the week and
     the week before (counts and distinct users by day, by event and by platform), to show
     what work proportional to events costs on the same machine.
3. **Checks in the run**: the report's events and active users for the week equal the naive
   query's, at both sizes.

Target (issue 17): a report at 1M events costs ≤ 2 x what it costs at 10k.
"""

from __future__ import annotations

import gc
import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from bench._common import LAYER, median, print_table, ratio, standalone_main, summary, verdict
from bench.read_side import label, settings_env

USERS = 2_000
DAYS = 365
END = date(2026, 12, 27)  # a Sunday: the year's data ends with ISO week 2026-W52
SEED = 7
BATCH = 5_000
TARGET = 2.0
LOCALE = "en"
# A cell whose warm-up takes longer than SLOW_MS is timed SLOW_RUNS times only (n is in the
# JSON): the naive floor at 1M takes seconds a run and would double the run's length.
SLOW_MS = 2_000.0
SLOW_RUNS = 3
OPERATIONS = ["figures (build_period_report)", "report (figures + render_report)", "floor"]
FIGURES, REPORT, FLOOR = OPERATIONS
# What writes a seeded database: a change to any of these seeds it again.
SOURCES = [
    "mysoulmate/analytics/seed.py",
    "mysoulmate/analytics/rollups.py",
    "mysoulmate/analytics/sessions.py",
    "mysoulmate/analytics/models.py",
    "mysoulmate/storage/sqlite/store.py",
    "mysoulmate/storage/sqlite/schema.py",
    "mysoulmate/storage/bitmap.py",
]


def cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "mysoulmate-bench"


def database_name(size: int) -> str:
    digest = hashlib.sha256()
    for name in SOURCES:
        path = LAYER / name
        digest.update(path.read_bytes() if path.exists() else b"")
    params = f"{size}-{USERS}-{DAYS}-{END.isoformat()}-{SEED}"
    return f"reports-{params}-{digest.hexdigest()[:12]}.db"


def seeded_store(size: int, directory: Path) -> tuple[Any, dict[str, Any]]:
    """A store holding ``size`` seeded events: from the cache, or seeded now (and kept)."""
    from mysoulmate.analytics.seed import seed_messages
    from mysoulmate.storage.sqlite.store import SqliteEventStore

    path = directory / database_name(size)
    if path.exists():
        print(f"  {label(size)}: reusing {path}", flush=True)
        return SqliteEventStore(path), {"cached": True, "path": str(path)}
    print(f"  {label(size)}: seeding {size:,} events into {path} …", flush=True)
    building = path.with_name(path.name + ".building")
    for stale in directory.glob(path.name + ".building*"):
        stale.unlink()
    store = SqliteEventStore(building)
    started = time.perf_counter()
    insert_seconds = 0.0
    batch: list[Any] = []

    def flush() -> None:
        nonlocal insert_seconds
        start = time.perf_counter()
        result = store.insert_events(batch)
        insert_seconds += time.perf_counter() - start
        if result.failed:
            raise RuntimeError(next(iter(result.failed.values())))

    for message in seed_messages(size, USERS, DAYS, end=END, seed=SEED):
        batch.append(message)
        if len(batch) == BATCH:
            flush()
            batch = []
    if batch:
        flush()
    store._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    building.replace(path)
    for leftover in directory.glob(building.name + "-*"):
        leftover.unlink()
    seconds = time.perf_counter() - started
    print(f"  {label(size)}: seeded in {seconds:.0f} s", flush=True)
    seeding = {"cached": False, "path": str(path), "seconds": seconds, "insert": insert_seconds}
    return SqliteEventStore(path), seeding


def naive_floor(store: Any, first: date, last: date) -> tuple[int, int]:
    """Straight on `events`: what the report's event figures cost without rollups."""
    bounds = (first.isoformat(), (last + timedelta(days=1)).isoformat())
    conn = store._conn
    where = "FROM events WHERE event IS NOT NULL AND ts >= ? AND ts < ?"
    total, users = conn.execute(
        f"SELECT count(*), count(DISTINCT user_id) {where}", bounds
    ).fetchone()
    for group in ("substr(ts, 1, 10)", "event", "platform"):
        conn.execute(
            f"SELECT {group}, count(*), count(DISTINCT user_id) {where} GROUP BY 1", bounds
        ).fetchall()
    return int(total), int(users)


def operations(store: Any) -> dict[str, Callable[[], Any]]:
    from mysoulmate.analytics.period_report import Period, build_period_report
    from mysoulmate.reports import render_report

    week = Period.week(END)
    steps = ["signup", "companion_created", "message_sent", "purchase"]

    def figures() -> Any:
        return build_period_report(store, week, funnel_steps=steps)

    def report() -> Any:
        return render_report(figures(), LOCALE)

    def floor() -> Any:
        naive_floor(store, week.previous().first, week.previous().last)
        return naive_floor(store, week.first, week.last)

    return {FIGURES: figures, REPORT: report, FLOOR: floor}


def run(quick: bool) -> dict[str, Any]:
    sizes = (10_000, 100_000) if quick else (10_000, 1_000_000)
    runs = 3 if quick else 7
    with tempfile.TemporaryDirectory(prefix="mysoulmate-bench-") as tmp:
        settings_env(tmp)
        directory = Path(tmp) if os.environ.get("BENCH_REPORTS_NO_CACHE") else cache_dir()
        directory.mkdir(parents=True, exist_ok=True)
        return _run(directory, sizes, runs)


def _run(directory: Path, sizes: tuple[int, ...], runs: int) -> dict[str, Any]:
    from mysoulmate.analytics.period_report import Period

    result: dict[str, Any] = {
        "sizes": list(sizes),
        "users": USERS,
        "days": DAYS,
        "end": END.isoformat(),
        "week": Period.week(END).key,
        "runs": runs,
        "warmup": 1,
        "seeding": {},
        "checks": {},
    }
    if shutil.disk_usage(directory).free < 2 * 10**9:
        print(f"  !! less than 2 GB free in {directory}")
    ops: dict[int, dict[str, Callable[[], Any]]] = {}
    stores = []
    try:
        for size in sizes:
            store, seeding = seeded_store(size, directory)
            stores.append(store)
            result["seeding"][label(size)] = seeding
            ops[size] = operations(store)
            figures = ops[size][FIGURES]()
            total, users = ops[size][FLOOR]()
            week = figures.totals
            result["checks"][label(size)] = {
                "events": week.events.current,
                "active_users": week.activeUsers.current,
                "naive": [total, users],
                "agree": (week.events.current, week.activeUsers.current) == (total, users),
            }
            if not result["checks"][label(size)]["agree"]:
                raise RuntimeError(f"{label(size)}: report {week.events} vs naive {total}/{users}")
        samples = _measure(ops, sizes, runs)
    finally:
        for store in stores:
            store.close()
    small, large = sizes
    med = {(op, s): median(samples[(op, s)]) for op in OPERATIONS for s in sizes}
    rows = []
    for op in OPERATIONS:
        rows.append(
            [
                op,
                med[(op, small)],
                med[(op, large)],
                1000 / med[(op, small)],
                1000 / med[(op, large)],
                ratio(med[(op, large)], med[(op, small)]),
            ]
        )
    targets = {}
    for op in (FIGURES, REPORT):
        growth = ratio(med[(op, large)], med[(op, small)])
        targets[op] = {"ratio": growth, "target": TARGET, "verdict": verdict(growth, TARGET)}
        rows.append(
            [
                f"target: {op.split(' ')[0]} at {label(large)} ≤ {TARGET:g} x at {label(small)}",
                "",
                "",
                "",
                "",
                f"{growth:.2f} {targets[op]['verdict']}",
            ]
        )
    print_table(
        [
            f"weekly report, {Period.week(END).key}",
            f"{label(small)} ms",
            f"{label(large)} ms",
            f"/s @{label(small)}",
            f"/s @{label(large)}",
            f"{label(large)} ÷ {label(small)}",
        ],
        rows,
        title=f"Reports per second, median of {runs} runs after 1 warm-up, SQLite, "
        f"{USERS:,} users, {DAYS} days",
    )
    result["latency_ms"] = {
        op: {label(s): summary(samples[(op, s)]) for s in sizes} for op in OPERATIONS
    }
    result["reports_per_second"] = {
        op: {label(s): 1000 / med[(op, s)] for s in sizes} for op in OPERATIONS
    }
    result["growth"] = {op: ratio(med[(op, large)], med[(op, small)]) for op in OPERATIONS}
    result["targets"] = targets
    return result


def _measure(
    ops: dict[int, dict[str, Callable[[], Any]]], sizes: tuple[int, ...], runs: int
) -> dict[tuple[str, int], list[float]]:
    samples: dict[tuple[str, int], list[float]] = {(op, s): [] for op in OPERATIONS for s in sizes}
    cells = [(op, s) for op in OPERATIONS for s in sizes]
    warmup: dict[tuple[str, int], float] = {}
    for r in range(runs + 1):  # round 0: warm-up, not recorded
        order = cells[r % len(cells) :] + cells[: r % len(cells)]
        if r % 2:
            order.reverse()
        started = time.perf_counter()
        for op, size in order:
            cell = (op, size)
            if r and warmup[cell] > SLOW_MS and len(samples[cell]) >= SLOW_RUNS:
                continue  # the naive floor at 1M: seconds a run, 3 runs say enough
            gc.collect()
            start = time.perf_counter()
            ops[size][op]()
            elapsed = (time.perf_counter() - start) * 1000
            if r:
                samples[cell].append(elapsed)
            else:
                warmup[cell] = elapsed
        print(
            f"  round {r}/{runs}{' (warm-up)' if r == 0 else ''}: "
            f"{time.perf_counter() - started:.1f} s",
            flush=True,
        )
    return samples


if __name__ == "__main__":
    standalone_main("reports", run)
