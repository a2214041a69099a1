"""Read side: dashboard, funnel and cohort latency at 10k and 1M events, SQLite and PostgreSQL.

1. **Seeding.** `analytics.seed.seed_messages` (users = events / 10, 30 days ending
   2026-01-31, seed 7) writes 10k and 1M events (`--quick`: 10k and 100k) through each store's own
   `insert_events`, in batches of 1,000, so the rollups are built exactly as the consumer
   builds them. One generated batch goes to SQLite (a temporary file) and then to PostgreSQL
   (a scratch database `mysoulmate_bench_<hex>` per size, created, migrated with
   `storage.postgres.migrate.migrate`, dropped at the end even on failure); each store's time is
   taken separately and reported as events/s. PostgreSQL gets a `VACUUM ANALYZE` after
   seeding (timed, reported) so the plans do not depend on when autovacuum last ran.
2. **Latency**, median of 7 runs after 1 warm-up (`--quick`: 3), every operation at both
   sizes and on both backends interleaved round by round, order rotated each round:
   the full dashboard for the 30 days (`reporting.dashboard_report`, default funnel included);
   the same dashboard as the first read of a store opened just before (information: the timed
   rounds repeat one read, which the stores' read caches and the dashboard's kept unions
   serve from what has not changed since; this row is a read with nothing kept);
   the rollup part only (`dashboard.build_dashboard` given a precomputed funnel report); the
   default funnel (signup, companion_created, message_sent, purchase; window 7 d) in
   `ordered`, `strict` and `any`; the issue's 3-step ordered funnel (its first three steps);
   cohorts (week, 8 periods, the 30 days).
3. **Floor**, same run, same stores, interleaved: the naive queries a system without rollups
   runs for the dashboard's figures, straight on the events table: totals and distinct users,
   then count and distinct users GROUP BY day, by event and by platform, and revenue by day and
   currency. Its 1M ÷ 10k ratio shows how work proportional to events scales on this machine.
   Its totals are checked against the dashboard's (`totalEvents`, `activeUsers`). A second
   floor for the funnels: `count(DISTINCT user_id)` of step 1's events in the range, the least
   any exact funnel reads (every user who entered), on the index the funnels use; the run
   checks it against the 3-step funnel's `usersEntered`.

Targets (issue 18): at 1M events (100k users) the dashboard within 1.5 x and the cohorts within
2 x of their time at 10k events (1k users); the 3-step ordered funnel ≤ 250 ms at 1M and
≤ 3 x its time at 10k.
"""

from __future__ import annotations

import gc
import os
import secrets
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from bench._common import median, print_table, ratio, standalone_main, summary, verdict

# Users grow with events (issue 18's goal table): a set-based read that grows with users
# shows it, which a fixed user base would hide.
EVENTS_PER_USER = 10
DAYS = 30
END = date(2026, 1, 31)
SEED = 7
BATCH = 1_000
TOP = 10
STEPS = ["signup", "companion_created", "message_sent", "purchase"]
STEPS3 = STEPS[:3]  # the "ordered funnel, 3 steps"
WINDOW = timedelta(days=7)
FUNNEL_TARGET_MS = 250.0
FUNNEL_TARGET_GROWTH = 3.0
# A cell whose warm-up run takes longer than SLOW_MS is timed only SLOW_RUNS more times (n is
# in the JSON and the table); a SQLite run longer than TIMEOUT_S is interrupted and its cell
# reported as timed out: SQLite's funnel at 1M takes minutes per run (docs/performance.md).
SLOW_MS = 10_000.0
SLOW_RUNS = 3
TIMEOUT_S = 60.0
PG_SERVER = os.environ.get("BENCH_POSTGRES", "host=127.0.0.1 port=5432 user=postgres dbname=test")
BACKENDS = ("sqlite", "postgres")


def settings_env(data_dir: str) -> None:
    """What the settings need before the first import (the dashboard reads the funnel)."""
    os.environ.update(
        {
            "STAGE": "test",
            "JWT_SECRET": "b" * 40,
            "DATA_DIR": data_dir,
            "STORAGE_BACKEND": "sqlite",
            "QUEUE_BACKEND": "local",
            "AUTH_MODE": "jwt",
        }
    )
    for name in ("DEFAULT_FUNNEL", "DATABASE_URL", "AWS_LAMBDA_FUNCTION_NAME"):
        os.environ.pop(name, None)


def users_for(size: int) -> int:
    return max(1, size // EVENTS_PER_USER)


def label(size: int) -> str:
    return f"{size // 1_000_000}M" if size >= 1_000_000 else f"{size // 1_000}k"


# -- scratch PostgreSQL databases -------------------------------------------------------------


def _with_dbname(info: str, name: str) -> str:
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    params = conninfo_to_dict(info)
    params["dbname"] = name
    return make_conninfo(**params)


@contextmanager
def scratch_database(server: str = PG_SERVER) -> Iterator[str]:
    """A new database `mysoulmate_bench_<hex>` migrated to head; dropped on exit, always."""
    import psycopg
    from mysoulmate.storage.postgres.migrate import migrate

    name = f"mysoulmate_bench_{secrets.token_hex(6)}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        info = _with_dbname(server, name)
        migrate(info)
        yield info
    finally:
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# -- seeding ----------------------------------------------------------------------------------


def seed(size: int, stores: dict[str, Any]) -> dict[str, Any]:
    """Write `size` seeded events into every store in batches; per-store seconds."""
    from mysoulmate.analytics.seed import seed_messages

    seconds = dict.fromkeys(stores, 0.0)
    written = dict.fromkeys(stores, 0)
    generated = 0
    batch: list[Any] = []

    def flush() -> None:
        for name, store in stores.items():
            start = time.perf_counter()
            result = store.insert_events(batch)
            seconds[name] += time.perf_counter() - start
            if result.failed:
                raise RuntimeError(f"{name}: {next(iter(result.failed.values()))}")
            written[name] += result.written

    gen_start = time.perf_counter()
    for message in seed_messages(size, users_for(size), DAYS, end=END, seed=SEED):
        batch.append(message)
        if len(batch) == BATCH:
            flush()
            generated += len(batch)
            batch = []
    if batch:
        flush()
        generated += len(batch)
    total = time.perf_counter() - gen_start
    for name, n in written.items():
        if n != generated:
            raise RuntimeError(f"{name}: stored {n} of {generated} events")
    return {
        "events": generated,
        "seconds": seconds,
        "events_per_second": {name: generated / s for name, s in seconds.items()},
        "generation_seconds": total - sum(seconds.values()),
    }


# -- the floor: what a store without rollups would query --------------------------------------


def naive_sqlite(conn: Any, span: Any) -> tuple[int, int]:
    from mysoulmate.analytics.ports import time_key

    bounds = (time_key(span.first_moment), time_key(span.last_moment))
    where = "FROM events WHERE type = 'track' AND ts BETWEEN ? AND ?"
    total, users = conn.execute(
        f"SELECT count(*), count(DISTINCT user_id) {where}", bounds
    ).fetchone()
    conn.execute(
        f"SELECT substr(ts, 1, 10) AS day, count(*), count(DISTINCT user_id) {where} GROUP BY day",
        bounds,
    ).fetchall()
    conn.execute(
        f"SELECT event, count(*), count(DISTINCT user_id) {where} GROUP BY event", bounds
    ).fetchall()
    conn.execute(
        f"SELECT platform, count(*), count(DISTINCT user_id) {where} GROUP BY platform", bounds
    ).fetchall()
    conn.execute(
        "SELECT substr(ts, 1, 10) AS day, json_extract(properties, '$.currency') AS cur, "
        "sum(json_extract(properties, '$.revenue')) FROM events "
        "WHERE type = 'track' AND event = 'purchase' AND ts BETWEEN ? AND ? GROUP BY day, cur",
        bounds,
    ).fetchall()
    return int(total), int(users)


def naive_postgres(conn: Any, span: Any) -> tuple[int, int]:
    bounds = (span.first_moment, span.last_moment)
    where = "FROM events WHERE type = 'track' AND ts BETWEEN %s AND %s"
    total, users = conn.execute(
        f"SELECT count(*), count(DISTINCT user_id) {where}", bounds
    ).fetchone()
    conn.execute(
        "SELECT (ts AT TIME ZONE 'UTC')::date AS day, count(*), count(DISTINCT user_id) "
        f"{where} GROUP BY day",
        bounds,
    ).fetchall()
    conn.execute(
        f"SELECT event, count(*), count(DISTINCT user_id) {where} GROUP BY event", bounds
    ).fetchall()
    conn.execute(
        f"SELECT platform, count(*), count(DISTINCT user_id) {where} GROUP BY platform", bounds
    ).fetchall()
    conn.execute(
        "SELECT (ts AT TIME ZONE 'UTC')::date AS day, properties->>'currency' AS cur, "
        "sum((properties->>'revenue')::numeric) FROM events "
        "WHERE type = 'track' AND event = 'purchase' AND ts BETWEEN %s AND %s GROUP BY day, cur",
        bounds,
    ).fetchall()
    return int(total), int(users)


def starters_sqlite(conn: Any, span: Any) -> int:
    from mysoulmate.analytics.ports import time_key

    return int(
        conn.execute(
            "SELECT count(DISTINCT user_id) FROM events INDEXED BY events_by_name_user_time "
            "WHERE event = ? AND ts BETWEEN ? AND ?",
            (STEPS[0], time_key(span.first_moment), time_key(span.last_moment)),
        ).fetchone()[0]
    )


def starters_postgres(conn: Any, span: Any) -> int:
    return int(
        conn.execute(
            "SELECT count(DISTINCT user_id) FROM events WHERE event IS NOT NULL "
            "AND event = %s AND ts BETWEEN %s AND %s",
            (STEPS[0], span.first_moment, span.last_moment),
        ).fetchone()[0]
    )


# -- the run ----------------------------------------------------------------------------------

OPERATIONS = [
    "dashboard (rollups, incl. its set funnel)",
    "info: dashboard, first read of a store just opened",
    "funnel ordered, 3 steps",
    "funnel ordered",
    "funnel strict",
    "funnel any",
    "cohorts (week x 8)",
    "floor: funnel starters, count(DISTINCT user_id)",
    "floor: naive SQL, no rollups",
]
FULL, FIRST_READ, COHORTS, FLOOR = OPERATIONS[0], OPERATIONS[1], OPERATIONS[6], OPERATIONS[-1]
FUNNEL3, STARTERS = OPERATIONS[2], OPERATIONS[-2]
SHORT = {FULL: "dashboard", COHORTS: "cohorts", FUNNEL3: "funnel ordered, 3 steps"}
TARGETS = {FULL: 1.5, COHORTS: 2.0}  # growth 1M ÷ 10k (issue 18)


class FirstRead:
    """The dashboard on a store opened just before the timed call and closed after it (both
    untimed): a read with none of the store's read caches filled, as the first dashboard of
    a new process or a range not read before (the timed rounds repeat the same read)."""

    def __init__(self, open_store: Callable[[], Any]) -> None:
        self._open = open_store
        self._store: Any = None

    def prepare(self) -> None:
        self._store = self._open()

    def __call__(self) -> Any:
        from mysoulmate.analytics.reporting import dashboard_report

        return dashboard_report(self._store, _span(), None, TOP)

    def finish(self) -> None:
        self._store.close()
        self._store = None


def operations(
    store: Any,
    naive: Callable[[], tuple[int, int]],
    starters: Callable[[], int],
    open_store: Callable[[], Any],
) -> dict[str, Callable[[], Any]]:
    from mysoulmate.analytics.cohorts import build_cohorts
    from mysoulmate.analytics.reporting import dashboard_report, funnel_report

    span = _span()
    return {
        FULL: lambda: dashboard_report(store, span, None, TOP),
        FIRST_READ: FirstRead(open_store),
        FUNNEL3: lambda: funnel_report(store, STEPS3, span, WINDOW, "ordered"),
        "funnel ordered": lambda: funnel_report(store, STEPS, span, WINDOW, "ordered"),
        "funnel strict": lambda: funnel_report(store, STEPS, span, WINDOW, "strict"),
        "funnel any": lambda: funnel_report(store, STEPS, span, WINDOW, "any"),
        COHORTS: lambda: build_cohorts(store, span, "week", 8, END),
        STARTERS: starters,
        FLOOR: naive,
    }


def check(name: str, ops: dict[str, Callable[[], Any]]) -> dict[str, Any]:
    """The dashboard and the naive queries must agree, or the comparison means nothing."""
    report = ops[FULL]()
    total, users = ops[FLOOR]()
    if (report.totalEvents, report.activeUsers) != (total, users):
        raise RuntimeError(
            f"{name}: dashboard says {report.totalEvents} events / {report.activeUsers} users, "
            f"the events table {total} / {users}"
        )
    funnel = ops[FUNNEL3]()
    if funnel.usersEntered != ops[STARTERS]():
        raise RuntimeError(f"{name}: the funnel's usersEntered is not the starters' count")
    return {
        "total_events": total,
        "active_users": users,
        "funnel_3_steps": funnel.model_dump(mode="json"),
        "dashboard": report.model_dump(mode="json"),
        "cohorts": ops[COHORTS]().model_dump(mode="json"),
    }


def run(quick: bool) -> dict[str, Any]:
    sizes = (10_000, 100_000) if quick else (10_000, 1_000_000)
    if os.environ.get("BENCH_READ_SIZES"):  # e.g. 100000,1000000: growth at equal key counts
        sizes = tuple(int(n) for n in os.environ["BENCH_READ_SIZES"].split(","))
    runs = 3 if quick else 7
    with tempfile.TemporaryDirectory(prefix="mysoulmate-bench-") as tmp:
        settings_env(tmp)
        return _run(Path(tmp), sizes, runs)


def _run(tmp: Path, sizes: tuple[int, ...], runs: int) -> dict[str, Any]:
    import psycopg
    from mysoulmate.analytics.reporting import funnel_report
    from mysoulmate.storage.postgres.store import PostgresEventStore
    from mysoulmate.storage.sqlite.connection import open_sqlite
    from mysoulmate.storage.sqlite.store import SqliteEventStore

    result: dict[str, Any] = {
        "sizes": list(sizes),
        "users": {label(size): users_for(size) for size in sizes},
        "days": DAYS,
        "end": END.isoformat(),
        "batch": BATCH,
        "runs": runs,
        "warmup": 1,
        "seeding": {},
        "checks": {},
    }
    with contextmanager_stack() as stack:
        ops: dict[tuple[str, int], dict[str, Callable[[], Any]]] = {}
        interrupts: dict[tuple[str, int], Callable[[], None]] = {}
        for size in sizes:
            sqlite_path = tmp / f"events-{label(size)}.db"
            sqlite_store = stack(SqliteEventStore(sqlite_path))
            pg_info = stack.enter(scratch_database())
            pg_store = stack(PostgresEventStore(pg_info))
            print(f"seeding {size:,} events into SQLite and PostgreSQL …", flush=True)
            seeded = seed(size, {"sqlite": sqlite_store, "postgres": pg_store})
            pg_conn = stack(psycopg.connect(pg_info, autocommit=True))
            start = time.perf_counter()
            pg_conn.execute("VACUUM ANALYZE")
            seeded["postgres_vacuum_analyze_seconds"] = time.perf_counter() - start
            seeded["postgres_database_bytes"] = pg_conn.execute(
                "SELECT pg_database_size(current_database())"
            ).fetchone()[0]
            seeded["sqlite_file_bytes"] = sum(
                p.stat().st_size for p in tmp.glob(f"events-{label(size)}.db*")
            )
            result["seeding"][label(size)] = seeded
            rates = seeded["events_per_second"]
            print(
                f"  {seeded['events']:,} events: SQLite {rates['sqlite']:,.0f}/s, "
                f"PostgreSQL {rates['postgres']:,.0f}/s "
                f"(+ VACUUM ANALYZE {seeded['postgres_vacuum_analyze_seconds']:.1f} s)",
                flush=True,
            )
            sqlite_conn = stack(open_sqlite(sqlite_path, synchronous="NORMAL"))
            span = _span()
            interrupts[("sqlite", size)] = sqlite_store._conn.interrupt
            ops[("sqlite", size)] = operations(
                sqlite_store,
                lambda c=sqlite_conn, s=span: naive_sqlite(c, s),
                lambda c=sqlite_conn, s=span: starters_sqlite(c, s),
                lambda p=sqlite_path: SqliteEventStore(p),
            )
            ops[("postgres", size)] = operations(
                pg_store,
                lambda c=pg_conn, s=span: naive_postgres(c, s),
                lambda c=pg_conn, s=span: starters_postgres(c, s),
                lambda i=pg_info: PostgresEventStore(i),
            )
            checks = {b: check(f"{b} {label(size)}", ops[(b, size)]) for b in BACKENDS}
            result["checks"][label(size)] = checks
            # Both backends hold the same events: every figure must agree.
            if checks["sqlite"] != checks["postgres"]:
                differ = [
                    k for k in checks["sqlite"] if checks["sqlite"][k] != checks["postgres"][k]
                ]
                print(f"  !! SQLite and PostgreSQL disagree at {label(size)} on {differ}")
                result.setdefault("disagreements", {})[label(size)] = differ
            if size == sizes[0]:  # the funnels agree across backends (small size: cheap)
                agree = {
                    f"{len(steps)} steps {order}": funnel_report(
                        sqlite_store, steps, span, WINDOW, order
                    )
                    == funnel_report(pg_store, steps, span, WINDOW, order)
                    for steps, order in (
                        (STEPS, "ordered"),
                        (STEPS, "strict"),
                        (STEPS, "any"),
                        (STEPS3, "ordered"),
                    )
                }
                result["checks"][f"funnels_agree_{label(size)}"] = agree
                if not all(agree.values()):
                    print(f"  !! SQLite and PostgreSQL funnels disagree at {label(size)}: {agree}")
        samples, timed_out = _measure(ops, interrupts, sizes, runs)
    result["timed_out"] = [f"{b} {op} {label(sz)}" for b, op, sz in timed_out]
    result["latency_ms"] = {
        backend: {
            op: {label(size): summary(samples[(backend, op, size)]) for size in sizes}
            for op in OPERATIONS
        }
        for backend in BACKENDS
    }
    result["tables"] = _report(samples, sizes, runs, result, timed_out)
    return result


def _span() -> Any:
    from mysoulmate.analytics.date_range import DateRange

    return DateRange(END - timedelta(days=DAYS - 1), END)


def _measure(
    ops: dict[tuple[str, int], dict[str, Callable[[], Any]]],
    interrupts: dict[tuple[str, int], Callable[[], None]],
    sizes: tuple[int, ...],
    runs: int,
) -> tuple[dict[tuple[str, str, int], list[float]], set[tuple[str, str, int]]]:
    samples: dict[tuple[str, str, int], list[float]] = {
        (b, op, s): [] for b in BACKENDS for op in OPERATIONS for s in sizes
    }
    cells = [(b, op, s) for op in OPERATIONS for b in BACKENDS for s in sizes]
    warmup: dict[tuple[str, str, int], float] = {}
    timed_out: set[tuple[str, str, int]] = set()
    for r in range(runs + 1):  # round 0: warm-up, not recorded
        shift = (r * 5) % len(cells)
        order = cells[shift:] + cells[:shift]
        if r % 2:
            order.reverse()
        started = time.perf_counter()
        for backend, op, size in order:
            cell = (backend, op, size)
            if cell in timed_out:
                continue
            if r and warmup[cell] > SLOW_MS and len(samples[cell]) >= SLOW_RUNS:
                continue  # too slow to repeat 7 times within the run's budget: see SLOW_MS
            call = ops[(backend, size)][op]
            if isinstance(call, FirstRead):
                call.prepare()
            gc.collect()
            # SQLite only: a run longer than TIMEOUT_S is stopped (Connection.interrupt) and
            # the cell recorded as timed out, never repeated.
            stop = interrupts.get((backend, size))
            timer = threading.Timer(TIMEOUT_S, stop) if stop else None
            if timer:
                timer.start()
            start = time.perf_counter()
            try:
                call()
                elapsed = (time.perf_counter() - start) * 1000
            except Exception:
                if not (timer and time.perf_counter() - start >= TIMEOUT_S):
                    raise
                timed_out.add(cell)
                print(f"  {backend} {op} {label(size)}: stopped after {TIMEOUT_S:g} s", flush=True)
                continue
            finally:
                if timer:
                    timer.cancel()
                if isinstance(call, FirstRead):
                    call.finish()  # untimed: `elapsed` is taken first
            if r:
                samples[cell].append(elapsed)
            else:
                warmup[cell] = elapsed
        print(
            f"  round {r}/{runs}{' (warm-up)' if r == 0 else ''}: "
            f"{time.perf_counter() - started:.1f} s, load {os.getloadavg()[0]:.2f}",
            flush=True,
        )
    slow = sorted(f"{b} {op} {label(s)}" for (b, op, s), ms in warmup.items() if ms > SLOW_MS)
    if slow:
        print(
            f"  measured only {SLOW_RUNS}x after the warm-up (warm-up > {SLOW_MS / 1000:g} s): "
            + "; ".join(slow)
        )
    return samples, timed_out


def _report(
    samples: dict[tuple[str, str, int], list[float]],
    sizes: tuple[int, ...],
    runs: int,
    result: dict[str, Any],
    timed_out: set[tuple[str, str, int]],
) -> dict[str, Any]:
    small, large = sizes
    ls, ll = label(small), label(large)
    tables: dict[str, Any] = {}
    for backend in BACKENDS:
        med = {
            (op, s): TIMEOUT_S * 1000
            if (backend, op, s) in timed_out
            else median(samples[(backend, op, s)])
            for op in OPERATIONS
            for s in sizes
        }
        rows = []
        for op in OPERATIONS:
            rows.append(
                [
                    op,
                    med[(op, small)],
                    med[(op, large)],
                    ratio(med[(op, large)], med[(op, small)]),
                    ratio(med[(op, small)], med[(FLOOR, small)]),
                    ratio(med[(op, large)], med[(FLOOR, large)]),
                    "/".join(
                        "timeout"
                        if (backend, op, sz) in timed_out
                        else str(len(samples[(backend, op, sz)]))
                        for sz in sizes
                    ),
                ]
            )
        targets = {}
        for op, target in TARGETS.items():
            growth = ratio(med[(op, large)], med[(op, small)])
            outcome = verdict(growth, target)
            if (backend, op, large) in timed_out:  # the ratio is only a lower bound
                outcome = (
                    "not measured (timed out)"
                    if (backend, op, small) in timed_out
                    else f"MISSED (≥ {growth:.0f}x: {ll} timed out)"
                )
            targets[op] = {"ratio": growth, "target": target, "verdict": outcome}
            rows.append(
                [
                    f"target: {SHORT[op]} at {ll} ≤ {target:g} x at {ls}",
                    "",
                    "",
                    growth,
                    "",
                    outcome,
                    "",
                ]
            )
        growth = ratio(med[(FUNNEL3, large)], med[(FUNNEL3, small)])
        floor_growth = ratio(med[(STARTERS, large)], med[(STARTERS, small)])
        latency = verdict(med[(FUNNEL3, large)], FUNNEL_TARGET_MS)
        scaling = verdict(growth, FUNNEL_TARGET_GROWTH)
        targets[FUNNEL3] = {
            "ms": med[(FUNNEL3, large)],
            "target_ms": FUNNEL_TARGET_MS,
            "verdict_ms": latency,
            "ratio": growth,
            "target": FUNNEL_TARGET_GROWTH,
            "verdict": scaling,
            "starters_floor_ratio": floor_growth,
        }
        rows.append(
            [
                f"target: {SHORT[FUNNEL3]} at {ll} ≤ {FUNNEL_TARGET_MS:g} ms",
                "",
                "",
                "",
                "",
                latency,
                "",
            ]
        )
        rows.append(
            [
                f"target: {SHORT[FUNNEL3]} at {ll} ≤ {FUNNEL_TARGET_GROWTH:g} x at {ls} "
                f"(starters floor: {floor_growth:.0f} x)",
                "",
                "",
                growth,
                "",
                scaling,
                "",
            ]
        )
        print_table(
            [
                f"{backend}",
                f"{ls} ms",
                f"{ll} ms",
                f"{ll} ÷ {ls}",
                f"÷ floor @{ls}",
                f"÷ floor @{ll}",
                "runs",
            ],
            rows,
            title=f"{backend}: read latency, median of {runs} runs after 1 warm-up "
            f"(runs: n per size), users = events / {EVENTS_PER_USER}, {DAYS} days",
        )
        tables[backend] = {
            "median_ms": {op: {label(s): med[(op, s)] for s in sizes} for op in OPERATIONS},
            "growth": {op: ratio(med[(op, large)], med[(op, small)]) for op in OPERATIONS},
            "targets": targets,
        }
    seed_rows = [
        [
            f"{backend}: insert_events, batches of {BATCH:,}",
            *[result["seeding"][label(s)]["events_per_second"][backend] for s in sizes],
        ]
        for backend in BACKENDS
    ]
    print_table(
        ["seeding", *[f"events/s to {label(s)}" for s in sizes]],
        seed_rows,
        title="Seeding rate (generation excluded)",
    )
    return tables


class contextmanager_stack:
    """Close stores and connections, then drop the scratch databases, whatever happens."""

    def __init__(self) -> None:
        from contextlib import ExitStack

        self._stack = ExitStack()

    def __enter__(self) -> contextmanager_stack:
        self._stack.__enter__()
        return self

    def __call__(self, closable: Any) -> Any:
        def close() -> None:
            with suppress(Exception):
                closable.close()

        self._stack.callback(close)
        return closable

    def enter(self, manager: Any) -> Any:
        return self._stack.enter_context(manager)

    def __exit__(self, *exc: object) -> None:
        self._stack.__exit__(*exc)  # type: ignore[arg-type]


if __name__ == "__main__":
    standalone_main("read_side", run)
