"""perf: client performance telemetry (issue 19, item 4): measurements ingested per second by
the consumer, summary latency as measurements pile up, measurements accepted per second over
HTTP. SQLite (temporary files) and PostgreSQL (scratch databases `mysoulmate_bench_<hex>`,
migrated to head, dropped at the end even on failure; `BENCH_POSTGRES`, default
host=127.0.0.1 user=postgres dbname=test).

Data: batches as an app sends them to `POST /api/v1/perf`: 50 measurements per message (one
`app_start`, 16 screen visits x `render` + `fps`, 17 `operation`s), 20 screens and 8 operations
picked with Zipf weights (a few screens take most visits), 2,000 users, each on one of 3 app
versions (15/35/50 %), 2 platforms and 3 device classes; values log-normal per screen and
operation (fps near 55). The queued messages are what `analytics.perf.perf_message` builds
(`QueuedMessage` of type `perf`, the batch in its properties; measurements without timestamps
of their own, so dated by the batch).

1. **Consumer, measurements/s.** Queue bodies through `analytics.ingest.IngestBatch` (`add`
   each record, `flush` per 100 records, the template's SQS BatchSize, as the consumer does:
   5,000 measurements per flush) into `SqliteEventStore` and `PostgresEventStore`, whose
   `record_perf` adds the sketch counters once per (userId, messageId) through the ledger.
   The messages of a run fall on one day, as a live queue delivers them. Floor, same run, same
   measurements, interleaved round by round (order rotated): the naive design that stores
   every measurement, a table `perf_raw` (user, message id, day, metric, name, app version,
   platform, device class, value; one index (metric, name, day), which its summary needs),
   rows built before the clock starts (as `bench/consumer.py` does), one `executemany` INSERT
   per flush in one transaction, same connection settings (SQLite: `open_sqlite`, WAL,
   synchronous=NORMAL; PostgreSQL: an autocommit connection as the store opens, an explicit
   transaction). For information: the naive design end to end (parse the bodies as the
   consumer does, build the rows, the same executemany), the design-for-design comparison.
   Every round starts from empty tables. Also: counter rows stored vs measurements.
2. **Summary latency vs measurements stored.** `analytics.perf.perf_summary` for the most
   visited screen's `render` over 30 days (overall, per app version, per day and app version)
   with 100k and with 1M measurements stored (`--quick`: 10k and 100k) spread over those 30
   days, on both backends; each size has its own SQLite files and scratch database, so both
   sizes are timed together. Loaded with `record_perf` in batches of 100 messages (what
   `flush` calls) and, for the floor, the same measurements into `perf_raw` (SQLite
   executemany, PostgreSQL COPY); PostgreSQL gets `VACUUM ANALYZE`. Floor, same stores: the
   exact figures over the raw rows of the same screen: PostgreSQL one query,
   `percentile_cont` with count and avg over GROUPING SETS ((), (version), (day, version));
   SQLite the rows fetched ORDER BY value, grouped and read off in Python. Checked: same
   counts, the sketch's overall p50/p90/p99 within its 1 % of the exact ones (+0.5 % for
   interpolation). Median of 7 runs after 1 warm-up (`--quick`: 3), the 8 calls (2 sizes x 2
   backends x sketch/floor) interleaved, order rotated each run. The summary's cost follows
   the counter rows it reads (reported; they stop growing once a cell's buckets fill), the
   floor's the measurements: the 1M ÷ 100k ratio of each says how it scales.
3. **HTTP accept, measurements/s.** `POST /api/v1/perf`, 100 measurements per request (about
   6 KB), through `mysoulmate.runtime.server.create_server_app()` in process over httpx's
   ASGITransport (`AUTH_MODE=jwt`, an HS256 bearer token, SQLite, the local durable queue in
   a temporary DATA_DIR on disk, `WORKER_ENABLED=false`, rate limits out of reach), 4
   concurrent senders (as `bench/ingest.py` uses 4 clients; the queue's group commit shares
   fsyncs between them). Floor: a bare FastAPI app, same transport, same body and senders,
   whose route validates the same `PerfBatchRequest` and answers 202: the cost of reading and
   validating 100 measurements, which any design pays, so the ratio is what the route adds
   (auth, rate limit, middleware, dating the measurements, the durable enqueue). Chosen over
   `/api/v1/analytics/track` as the floor because that route does as much as ours (auth,
   validation, enqueue): it is measured for information, one event per request of the same
   JSON size (the measurements as its properties), so requests/s compare like with like. At
   the end the queue depth is checked against the requests answered 202.

No target (the issue asks for the figure); the ratios are against the floors above.
"""

from __future__ import annotations

import asyncio
import gc
import json
import math
import os
import random
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from datetime import UTC, date, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from bench._common import LAYER, median, print_table, ratio, standalone_main, summary
from bench.read_side import scratch_database

BATCH = 100  # records per flush: template.yaml's SQS BatchSize
PER_MESSAGE = 50
PER_REQUEST = 100
USERS = 2_000
DAYS = 30
END = date(2026, 1, 31)
SEED = 19
SENDERS = 4
SCREENS = (
    *("ChatScreen", "HomeScreen", "CompanionProfile", "ConversationList", "Settings"),
    *("VoiceCall", "Onboarding", "Store", "Memories", "Notifications", "EditProfile"),
    *("Gallery", "Search", "Subscription", "Help", "Feedback", "Achievements"),
    *("Journal", "Themes", "About"),
)
OPERATIONS = (
    *("sendMessage", "loadHistory", "syncProfile", "fetchAvatar", "voiceConnect"),
    *("purchase", "search", "uploadImage"),
)
VERSIONS = ("2.3.0", "2.4.0", "2.5.0")
VERSION_WEIGHTS = (0.15, 0.35, 0.5)
PLATFORMS = ("ios", "android")
DEVICE_CLASSES = ("low", "mid", "high")
DEVICE_WEIGHTS = (0.2, 0.5, 0.3)
SCREEN = SCREENS[0]  # the summary's screen: the most visited
TOLERANCE = 0.015  # the sketch's 1 %, plus room for percentile_cont's interpolation

RAW_COLUMNS = "user_id, message_id, day, metric, name, app_version, platform, device_class, value"
SQLITE_RAW = (
    "CREATE TABLE IF NOT EXISTS perf_raw (user_id TEXT NOT NULL, message_id TEXT NOT NULL, "
    "day TEXT NOT NULL, metric TEXT NOT NULL, name TEXT NOT NULL, app_version TEXT NOT NULL, "
    "platform TEXT NOT NULL, device_class TEXT NOT NULL, value REAL NOT NULL);"
    "CREATE INDEX IF NOT EXISTS perf_raw_by_name ON perf_raw (metric, name, day);"
)
PG_RAW = (  # text COLLATE "C" as in perf_counters (migration 0009)
    'CREATE TABLE IF NOT EXISTS perf_raw (user_id text COLLATE "C" NOT NULL, '
    'message_id text COLLATE "C" NOT NULL, day date NOT NULL, '
    'metric text COLLATE "C" NOT NULL, name text COLLATE "C" NOT NULL, '
    'app_version text COLLATE "C" NOT NULL, platform text COLLATE "C" NOT NULL, '
    'device_class text COLLATE "C" NOT NULL, value double precision NOT NULL)',
    "CREATE INDEX IF NOT EXISTS perf_raw_by_name ON perf_raw (metric, name, day)",
)
SQLITE_INSERT = f"INSERT INTO perf_raw ({RAW_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)"
PG_INSERT = f"INSERT INTO perf_raw ({RAW_COLUMNS}) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s)"


def settings_env(data_dir: str) -> None:
    """The server app's settings (read once, at the first import that needs them)."""
    os.environ.update(
        {
            "STAGE": "dev",
            "AUTH_MODE": "jwt",
            "JWT_SECRET": "bench-secret-0123456789-abcdefghijklmnopqrstuvwxyz",
            "STORAGE_BACKEND": "sqlite",
            "QUEUE_BACKEND": "local",
            "WORKER_ENABLED": "false",
            "DATA_DIR": data_dir,
            "RATE_LIMIT_INGEST_PER_SECOND": "1000000000",
            "RATE_LIMIT_INGEST_BURST": "1000000000",
            "RATE_LIMIT_READ_PER_SECOND": "1000000000",
            "RATE_LIMIT_READ_BURST": "1000000000",
        }
    )
    for name in list(os.environ):
        if name.startswith(("AWS_LAMBDA", "POWERTOOLS_")) or name in (
            "DATABASE_URL",
            "AWS_ENDPOINT_URL",
            "SENTRY_DSN",
            "CORS_ALLOW_ORIGINS",
        ):
            del os.environ[name]


# -- the data -----------------------------------------------------------------------------


def _zipf(n: int) -> list[float]:
    return [1 / (k + 1) for k in range(n)]


class Apps:
    """Deterministic measurements as 2,000 users' apps send them."""

    def __init__(self, seed: int = SEED) -> None:
        self.rng = random.Random(seed)
        users = random.Random(seed + 1)
        self.users = [
            (
                f"user-{n:05d}",
                users.choices(VERSIONS, VERSION_WEIGHTS)[0],
                PLATFORMS[n % 2],
                users.choices(DEVICE_CLASSES, DEVICE_WEIGHTS)[0],
            )
            for n in range(USERS)
        ]
        self.screen_weights = _zipf(len(SCREENS))
        self.operation_weights = _zipf(len(OPERATIONS))

    def measurements(self, count: int) -> list[dict[str, Any]]:
        rng = self.rng
        out: list[dict[str, Any]] = []
        kind = rng.random() < 0.3
        out.append(
            {
                "metric": "app_start",
                "name": "cold" if kind else "warm",
                "value": round(rng.lognormvariate(math.log(1400 if kind else 450), 0.4), 1),
            }
        )
        while len(out) < count:
            if len(out) % 3 == 0:
                k = rng.choices(range(len(OPERATIONS)), self.operation_weights)[0]
                median_ms = 120 + 40 * k
                out.append(
                    {
                        "metric": "operation",
                        "name": OPERATIONS[k],
                        "value": round(rng.lognormvariate(math.log(median_ms), 0.8), 1),
                    }
                )
                continue
            k = rng.choices(range(len(SCREENS)), self.screen_weights)[0]
            out.append(
                {
                    "metric": "render",
                    "name": SCREENS[k],
                    "value": round(rng.lognormvariate(math.log(80 + 15 * k), 0.55), 1),
                }
            )
            if len(out) < count:
                fps = min(120.0, rng.lognormvariate(math.log(55), 0.15))
                out.append({"metric": "fps", "name": SCREENS[k], "value": round(fps, 1)})
        return out[:count]

    def messages(self, count: int, days: Sequence[date], tag: str) -> list[Any]:
        """``count`` queued perf messages, their times spread over ``days``, in time order
        (as a live queue delivers them)."""
        from mysoulmate.analytics.models import QueuedMessage
        from mysoulmate.analytics.perf_models import PerfPayload

        rng = self.rng
        moments = sorted(
            datetime.combine(rng.choice(days), datetime.min.time(), UTC)
            + timedelta(seconds=rng.uniform(0, 86_399))
            for _ in range(count)
        )
        out = []
        for n, moment in enumerate(moments):
            user, version, platform, device = self.users[rng.randrange(USERS)]
            payload = PerfPayload.model_validate(
                {
                    "appVersion": version,
                    "deviceClass": device,
                    "measurements": self.measurements(PER_MESSAGE),
                }
            )
            out.append(
                QueuedMessage(
                    type="perf",
                    messageId=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{tag}-{n}")),
                    userId=user,
                    timestamp=moment,
                    receivedAt=moment + timedelta(milliseconds=300),
                    platform=platform,
                    requestId=f"req-{tag}-{n}",
                    properties=payload.model_dump(mode="json", exclude_none=True),
                )
            )
        return out

    def request_body(self, n: int) -> dict[str, Any]:
        _, version, platform, device = self.users[n % USERS]
        return {
            "appVersion": version,
            "platform": platform,
            "deviceClass": device,
            "measurements": self.measurements(PER_REQUEST),
        }


def bodies_of(messages: Sequence[Any]) -> list[str]:
    return [m.model_dump_json(exclude_none=True) for m in messages]


def raw_rows(messages: Sequence[Any], day_text: bool) -> list[tuple[Any, ...]]:
    """One row per measurement: what the naive design stores."""
    from mysoulmate.analytics.perf_sketch import payload_of

    rows = []
    for message in messages:
        payload = payload_of(message)
        platform = message.platform or "unknown"
        for m in payload.measurements:
            day = (m.timestamp or message.timestamp).date()
            rows.append(
                (
                    message.userId,
                    message.messageId,
                    day.isoformat() if day_text else day,
                    m.metric,
                    m.name,
                    payload.appVersion,
                    platform,
                    payload.deviceClass,
                    m.value,
                )
            )
    return rows


def chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# -- the two backends' stores and floor connections ----------------------------------------


def open_raw_sqlite(path: Path) -> Any:
    from mysoulmate.storage.sqlite.connection import open_sqlite

    conn = open_sqlite(path, synchronous="NORMAL")  # as SqliteEventStore opens its file
    conn.executescript(SQLITE_RAW)
    return conn


def open_raw_postgres(info: str) -> Any:
    import psycopg
    from mysoulmate.storage.postgres.connection import CONNECT_TIMEOUT_SECONDS

    # As the store connects (pooling._connect): autocommit, explicit transactions.
    conn = psycopg.connect(info, autocommit=True, connect_timeout=CONNECT_TIMEOUT_SECONDS)
    for statement in PG_RAW:
        conn.execute(statement)
    return conn


def raw_insert(conn: Any, backend: str, rows: Sequence[tuple[Any, ...]]) -> None:
    """One transaction, one executemany: the floor's flush."""
    if backend == "sqlite":
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(SQLITE_INSERT, rows)
        conn.execute("COMMIT")
    else:
        with conn.transaction(), conn.cursor() as cur:
            cur.executemany(PG_INSERT, rows)


def pg_truncate(info: str) -> None:
    import psycopg

    with psycopg.connect(info, autocommit=True) as conn:
        conn.execute("TRUNCATE perf_counters, perf_ledger, perf_raw")


def pg_has_perf_tables(info: str) -> bool:
    import psycopg

    with psycopg.connect(info, autocommit=True) as conn:
        found = conn.execute(
            "SELECT to_regclass('perf_counters') IS NOT NULL AND "
            "to_regclass('perf_ledger') IS NOT NULL"
        ).fetchone()
    return bool(found and found[0])


def count_rows(conn: Any, table: str) -> int:
    return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


# -- 1. the consumer ----------------------------------------------------------------------


def ingest(store: Any, bodies: Sequence[str]) -> float:
    from mysoulmate.analytics.ingest import IngestBatch

    gc.collect()
    start = time.perf_counter()
    for offset in range(0, len(bodies), BATCH):
        batch = IngestBatch(store)
        for n, body in enumerate(bodies[offset : offset + BATCH]):
            batch.add(f"rec-{offset + n}", body)
        outcome = batch.flush()
        if outcome.failed_records or outcome.stored != len(bodies[offset : offset + BATCH]):
            reason = next(iter(outcome.failed_records.values()), "")
            raise RuntimeError(f"ingest stored {outcome.stored}: {reason}")
    return time.perf_counter() - start


def floor(conn: Any, backend: str, rows: Sequence[tuple[Any, ...]]) -> float:
    per_flush = BATCH * PER_MESSAGE
    gc.collect()
    start = time.perf_counter()
    for chunk in chunks(rows, per_flush):
        raw_insert(conn, backend, chunk)
    return time.perf_counter() - start


def naive(conn: Any, backend: str, bodies: Sequence[str]) -> float:
    """The naive design end to end: parse as the consumer does, one row per measurement."""
    from mysoulmate.analytics.ingest import parse_body

    gc.collect()
    start = time.perf_counter()
    for chunk in chunks(bodies, BATCH):
        messages = [m for body in chunk for m in parse_body(body)]
        raw_insert(conn, backend, raw_rows(messages, day_text=backend == "sqlite"))
    return time.perf_counter() - start


def run_consumer(quick: bool, tmp: Path, pg_info: str) -> dict[str, Any]:
    from mysoulmate.storage.postgres.store import PostgresEventStore
    from mysoulmate.storage.sqlite.store import SqliteEventStore

    count = 200 if quick else 500  # messages per kind per round
    rounds = 3 if quick else 5
    apps = Apps()
    messages = apps.messages(count, [END], "consumer")
    bodies = bodies_of(messages)
    measurements = count * PER_MESSAGE
    rows = {"sqlite": raw_rows(messages, True), "postgres": raw_rows(messages, False)}
    kinds = [
        (backend, kind)
        for backend in ("sqlite", "postgres")
        for kind in ("sketch", "floor", "naive")
    ]
    samples: dict[tuple[str, str], list[float]] = {k: [] for k in kinds}
    counters: dict[str, int] = {}
    pg_store = PostgresEventStore(pg_info)
    pg_raw = open_raw_postgres(pg_info)

    def sqlite_run(kind: str, path: Path) -> float:
        if kind == "sketch":
            store = SqliteEventStore(path)
            elapsed = ingest(store, bodies)
            counters["sqlite"] = count_rows(store._conn, "perf_counters")
            store.close()
            return elapsed
        conn = open_raw_sqlite(path)
        if kind == "floor":
            elapsed = floor(conn, "sqlite", rows["sqlite"])
        else:
            elapsed = naive(conn, "sqlite", bodies)
        stored = count_rows(conn, "perf_raw")
        conn.close()
        if stored != measurements:
            raise RuntimeError(f"sqlite {kind}: {stored} rows")
        return elapsed

    def postgres_run(kind: str) -> float:
        if kind == "sketch":
            elapsed = ingest(pg_store, bodies)
            counters["postgres"] = count_rows(pg_raw, "perf_counters")
            return elapsed
        pg_raw.execute("TRUNCATE perf_raw")
        if kind == "floor":
            elapsed = floor(pg_raw, "postgres", rows["postgres"])
        else:
            elapsed = naive(pg_raw, "postgres", bodies)
        stored = count_rows(pg_raw, "perf_raw")
        if stored != measurements:
            raise RuntimeError(f"postgres {kind}: {stored} rows")
        return elapsed

    try:
        for r in range(rounds):
            pg_truncate(pg_info)  # every round starts from empty tables
            for backend, kind in kinds[r % len(kinds) :] + kinds[: r % len(kinds)]:
                if backend == "sqlite":
                    elapsed = sqlite_run(kind, tmp / f"consumer-{kind}-{r}.db")
                    for leftover in tmp.glob(f"consumer-{kind}-{r}.db*"):
                        leftover.unlink()
                else:
                    elapsed = postgres_run(kind)
                samples[(backend, kind)].append(measurements / elapsed)
            print(f"  round {r + 1}/{rounds} done", flush=True)
    finally:
        pg_raw.close()
        pg_store.close()
    if counters["sqlite"] != counters["postgres"]:
        raise RuntimeError(f"counter rows differ between backends: {counters}")
    med = {k: median(v) for k, v in samples.items()}
    result: dict[str, Any] = {
        "messages": count,
        "measurements": measurements,
        "measurements_per_message": PER_MESSAGE,
        "records_per_flush": BATCH,
        "rounds": rounds,
        "counter_rows": counters["sqlite"],
        "measurements_per_counter_row": measurements / counters["sqlite"],
    }
    labels = {
        "sketch": "IngestBatch → record_perf (sketch counters)",
        "floor": "floor: executemany raw rows, 1 transaction per flush",
        "naive": "info: naive end to end (parse + raw rows + executemany)",
    }
    table = []
    for backend in ("sqlite", "postgres"):
        floor_mps = med[(backend, "floor")]
        result[backend] = {
            "measurements_per_second": {
                kind: summary(samples[(backend, kind)]) for kind in ("sketch", "floor", "naive")
            },
            "sketch_share_of_floor": ratio(med[(backend, "sketch")], floor_mps),
            "floor_over_sketch": ratio(floor_mps, med[(backend, "sketch")]),
            "sketch_share_of_naive": ratio(med[(backend, "sketch")], med[(backend, "naive")]),
        }
        for kind in ("sketch", "floor", "naive"):
            s = summary(samples[(backend, kind)])
            table.append(
                [
                    f"{backend}: {labels[kind]}",
                    s["median"],
                    s["p25"],
                    s["p75"],
                    ratio(s["median"], floor_mps),
                ]
            )
    print_table(
        ["consumer", "measurements/s", "p25", "p75", "÷ floor"],
        table,
        title=f"Consumer: {count} messages x {PER_MESSAGE} measurements ({measurements:,}) per "
        f"round, flush per {BATCH} records, median of {rounds} rounds",
    )
    print(
        f"counter rows after one run: {counters['sqlite']:,} for {measurements:,} measurements "
        f"({measurements / counters['sqlite']:.2f} measurements per row; one day of data)"
    )
    return result


# -- 2. summary latency -------------------------------------------------------------------


def exact_figures(groups: dict[Any, list[float]]) -> dict[Any, tuple[int, float, list[float]]]:
    """count, mean and p50/p90/p99 (linear interpolation, as percentile_cont) of sorted lists."""
    out = {}
    for key, values in groups.items():
        n = len(values)
        qs = []
        for q in (0.5, 0.9, 0.99):
            pos = q * (n - 1)
            lo = int(pos)
            hi = min(lo + 1, n - 1)
            qs.append(values[lo] + (values[hi] - values[lo]) * (pos - lo))
        out[key] = (n, sum(values) / n, qs)
    return out


def floor_summary_sqlite(conn: Any, start: date, end: date) -> dict[Any, Any]:
    groups: dict[Any, list[float]] = defaultdict(list)
    for day, version, value in conn.execute(
        "SELECT day, app_version, value FROM perf_raw WHERE metric = 'render' AND name = ? "
        "AND day BETWEEN ? AND ? ORDER BY value",
        (SCREEN, start.isoformat(), end.isoformat()),
    ):
        groups[()].append(value)
        groups[(version,)].append(value)
        groups[(day, version)].append(value)
    return exact_figures(groups)


def floor_summary_postgres(conn: Any, start: date, end: date) -> dict[Any, Any]:
    found = conn.execute(
        "SELECT day, app_version, GROUPING(day, app_version), count(*), avg(value), "
        "percentile_cont(ARRAY[0.5, 0.9, 0.99]) WITHIN GROUP (ORDER BY value) "
        "FROM perf_raw WHERE metric = 'render' AND name = %s AND day BETWEEN %s AND %s "
        "GROUP BY GROUPING SETS ((), (app_version), (day, app_version))",
        (SCREEN, start, end),
    ).fetchall()
    out: dict[Any, Any] = {}
    for day, version, grouping, n, mean, qs in found:
        key: tuple[Any, ...] = ()  # GROUPING() = 3: the overall row
        if grouping == 2:
            key = (version,)
        elif grouping == 0:
            key = (day.isoformat(), version)
        out[key] = (n, mean, qs)
    return out


def load(stores: dict[str, Any], raws: dict[str, Any], messages: Sequence[Any]) -> dict[str, float]:
    """Record the messages as the consumer would (batches of 100) and their raw rows."""
    seconds: dict[str, float] = {}
    for backend, store in stores.items():
        start = time.perf_counter()
        for batch in chunks(messages, BATCH):
            result = store.record_perf(batch)
            if result.failed or result.written != len(batch):
                raise RuntimeError(
                    f"{backend}: record_perf wrote {result.written}, {result.failed}"
                )
        seconds[f"{backend} record_perf"] = time.perf_counter() - start
    start = time.perf_counter()
    conn = raws["sqlite"]
    for chunk in chunks(messages, 2_000):
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(SQLITE_INSERT, raw_rows(chunk, True))
        conn.execute("COMMIT")
    seconds["sqlite raw executemany"] = time.perf_counter() - start
    start = time.perf_counter()
    conn = raws["postgres"]
    for chunk in chunks(messages, 2_000):
        with (
            conn.transaction(),
            conn.cursor() as cur,
            cur.copy(f"COPY perf_raw ({RAW_COLUMNS}) FROM STDIN") as copy,
        ):
            for row in raw_rows(chunk, False):
                copy.write_row(row)
    seconds["postgres raw COPY"] = time.perf_counter() - start
    start = time.perf_counter()
    conn.execute("VACUUM ANALYZE perf_raw")
    conn.execute("VACUUM ANALYZE perf_counters")
    seconds["postgres VACUUM ANALYZE"] = time.perf_counter() - start
    return seconds


def check(sketch: Any, exact: dict[Any, Any], where: str) -> float:
    """Counts equal everywhere; the overall quantiles within TOLERANCE. The worst error."""
    n, _, qs = exact[()]
    if sketch.overall.count != n:
        raise RuntimeError(f"{where}: sketch counts {sketch.overall.count}, exact {n}")
    for version in sketch.byVersion:
        if version.count != exact[(version.appVersion,)][0]:
            raise RuntimeError(f"{where}: version {version.appVersion} counts differ")
    for day in sketch.byDay:
        if day.count != exact[(day.day.isoformat(), day.appVersion)][0]:
            raise RuntimeError(f"{where}: {day.day} {day.appVersion} counts differ")
    worst = 0.0
    for got, truth in zip(
        (sketch.overall.p50, sketch.overall.p90, sketch.overall.p99), qs, strict=True
    ):
        error = abs(got - truth) / truth
        worst = max(worst, error)
        if error > TOLERANCE:
            raise RuntimeError(f"{where}: sketch {got} vs exact {truth} ({error:.2%})")
    return worst


def time_summaries(calls: dict[Any, Callable[[], Any]], runs: int) -> dict[Any, list[float]]:
    """ms per call, every call interleaved run by run (order rotated), after one warm-up."""
    ops = list(calls)
    for call in calls.values():
        call()
    samples: dict[Any, list[float]] = {op: [] for op in ops}
    for r in range(runs):
        for op in ops[r % len(ops) :] + ops[: r % len(ops)]:
            gc.collect()
            t0 = time.perf_counter()
            calls[op]()
            samples[op].append((time.perf_counter() - t0) * 1000)
    return samples


def run_summary(quick: bool, tmp: Path) -> dict[str, Any]:
    from mysoulmate.analytics.perf import PerfFilter, perf_summary
    from mysoulmate.storage.postgres.store import PostgresEventStore
    from mysoulmate.storage.sqlite.store import SqliteEventStore

    sizes = (10_000, 100_000) if quick else (100_000, 1_000_000)
    runs = 3 if quick else 7
    days = [END - timedelta(days=d) for d in range(DAYS)]
    start, end = days[-1], days[0]
    wanted = PerfFilter("render", SCREEN, start, end)
    apps = Apps(SEED + 2)
    calls: dict[tuple[str, str, str], Callable[[], Any]] = {}
    results: dict[str, Any] = {}
    with ExitStack() as stack:
        for size in sizes:  # a database and files of its own per size: both timed together
            info = stack.enter_context(perf_database())
            stores: dict[str, Any] = {
                "sqlite": SqliteEventStore(tmp / f"summary-{size}.db"),
                "postgres": PostgresEventStore(info),
            }
            raws = {
                "sqlite": open_raw_sqlite(tmp / f"summary-raw-{size}.db"),
                "postgres": open_raw_postgres(info),
            }
            for closeable in (*stores.values(), *raws.values()):
                stack.callback(closeable.close)
            started = time.perf_counter()
            messages = apps.messages(size // PER_MESSAGE, days, f"summary-{size}")
            generated = time.perf_counter() - started
            seconds = load(stores, raws, messages)
            at = label(size)
            calls[(at, "sqlite", "sketch")] = partial(perf_summary, stores["sqlite"], wanted)
            calls[(at, "sqlite", "floor")] = partial(
                floor_summary_sqlite, raws["sqlite"], start, end
            )
            calls[(at, "postgres", "sketch")] = partial(perf_summary, stores["postgres"], wanted)
            calls[(at, "postgres", "floor")] = partial(
                floor_summary_postgres, raws["postgres"], start, end
            )
            worst = max(
                check(calls[(at, b, "sketch")](), calls[(at, b, "floor")](), f"{b} {at}")
                for b in ("sqlite", "postgres")
            )
            screen = f"perf_raw WHERE metric = 'render' AND name = '{SCREEN}'"
            results[at] = {
                "measurements": size,
                "rows_read": {
                    "sketch": len(stores["sqlite"].perf_rows("render", start, end, SCREEN)),
                    "floor": count_rows(raws["sqlite"], screen),
                },
                "counter_rows_total": count_rows(stores["sqlite"]._conn, "perf_counters"),
                "load_seconds": seconds,
                "load_measurements_per_second": {
                    name: size / s for name, s in seconds.items() if "VACUUM" not in name
                },
                "generation_seconds": generated,
                "worst_quantile_error": worst,
            }
            print(f"  {at}: loaded", flush=True)
        samples = time_summaries(calls, runs)
    for (at, backend, kind), values in samples.items():
        name = f"{backend} {kind}"
        results[at].setdefault("ms", {})[name] = summary(values)
        results[at].setdefault("us_per_row_read", {})[name] = (
            median(values) * 1000 / results[at]["rows_read"][kind]
        )
    print_summary(results, sizes, runs)
    return {"sizes": list(sizes), "runs": runs, "screen": SCREEN, "by_size": results}


def print_summary(results: dict[str, Any], sizes: Sequence[int], runs: int) -> None:
    small, big = (results[label(s)] for s in sizes)
    table = []
    for name in small["ms"]:
        a, b = small["ms"][name]["median"], big["ms"][name]["median"]
        kind = name.split()[1]
        what = "perf_summary (sketch counters)" if kind == "sketch" else "floor: exact, raw rows"
        table.append(
            [
                f"{name.split()[0]}: {what}",
                a,
                b,
                ratio(b, a),
                f"{small['rows_read'][kind]:,} / {big['rows_read'][kind]:,}",
                big["us_per_row_read"][name],
            ]
        )
    s, b = label(sizes[0]), label(sizes[1])
    print_table(
        [
            "summary of one screen, 30 days",
            f"{s} ms",
            f"{b} ms",
            f"{b} ÷ {s}",
            "rows read",
            "µs/row",
        ],
        table,
        title=f"Summary latency, median of {runs} runs after 1 warm-up ({SCREEN} render: "
        "overall, per version, per day and version)",
    )
    worst = max(r["worst_quantile_error"] for r in results.values())
    print(
        f"counter rows in all: {small['counter_rows_total']:,} after {s} measurements, "
        f"{big['counter_rows_total']:,} after {b}; sketch quantiles within {worst:.2%} of exact"
    )
    print_table(
        ["loading (info)", "s", "measurements/s"],
        [
            [name, big["load_seconds"][name], mps]
            for name, mps in big["load_measurements_per_second"].items()
        ],
        title=f"Loading the {b} measurements (info; batches of {BATCH} messages, in time order)",
    )


def label(size: int) -> str:
    return f"{size // 1_000_000}M" if size >= 1_000_000 else f"{size // 1_000}k"


# -- 3. HTTP accept -----------------------------------------------------------------------


def run_http(quick: bool, data_dir: Path) -> dict[str, Any]:
    import httpx
    from fastapi import FastAPI
    from mysoulmate.analytics.perf_models import PerfBatchRequest
    from mysoulmate.api.auth import issue_token
    from mysoulmate.core.settings import get_settings
    from mysoulmate.queue.local import LocalQueue
    from mysoulmate.runtime.server import create_server_app

    requests = 100 if quick else 300  # per kind per round
    rounds = 3 if quick else 5
    apps = Apps(SEED + 3)
    perf_bodies = [json.dumps(apps.request_body(n)).encode() for n in range(50)]
    track_bodies = []
    for body in perf_bodies:
        batch = json.loads(body)
        track_bodies.append(
            json.dumps(
                {
                    "event": "Perf Batch",
                    "platform": batch.pop("platform"),
                    "properties": batch,
                }
            ).encode()
        )
    app = create_server_app()
    bare = FastAPI()

    async def bare_route(body: Any) -> dict[str, Any]:
        return {"measurements": len(body.measurements), "status": "queued"}

    # Annotations are postponed in this module: hand FastAPI the model itself (a JSON body).
    bare_route.__annotations__["body"] = PerfBatchRequest
    bare.post("/api/v1/perf", status_code=202)(bare_route)

    token = issue_token(get_settings(), "user-bench", ["user"], 3600)
    headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
    kinds = {
        "POST /api/v1/perf (100 measurements)": (app, "/api/v1/perf", perf_bodies, 202),
        "floor: bare route validating PerfBatchRequest": (bare, "/api/v1/perf", perf_bodies, 202),
        "info: POST /api/v1/analytics/track, 1 event of the same size": (
            app,
            "/api/v1/analytics/track",
            track_bodies,
            202,
        ),
    }
    queued = 0

    async def measure() -> dict[str, list[float]]:
        nonlocal queued
        clients = {
            name: httpx.AsyncClient(transport=httpx.ASGITransport(app=a), base_url="http://bench")
            for name, (a, _, _, _) in kinds.items()
        }

        async def send(name: str, count: int) -> None:
            nonlocal queued
            _, path, bodies, expected = kinds[name]
            client = clients[name]

            async def sender(first: int) -> None:
                nonlocal queued
                for n in range(first, count, SENDERS):
                    response = await client.post(
                        path, content=bodies[n % len(bodies)], headers=headers
                    )
                    if response.status_code != expected:
                        raise RuntimeError(f"{name}: {response.status_code} {response.text}")
                    if kinds[name][0] is app:
                        queued += 1

            await asyncio.gather(*(sender(s) for s in range(SENDERS)))

        for name in kinds:
            await send(name, 40)  # warm-up
        samples: dict[str, list[float]] = {name: [] for name in kinds}
        names = list(kinds)
        for r in range(rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                gc.collect()
                t0 = time.perf_counter()
                await send(name, requests)
                samples[name].append(requests / (time.perf_counter() - t0))
        for client in clients.values():
            await client.aclose()
        return samples

    samples = asyncio.run(measure())
    from mysoulmate.runtime.backends import local_queue

    local_queue().close()
    queue = LocalQueue(data_dir / "queue.db")
    depth, _ = queue.depth()
    queue.close()
    names = list(kinds)
    floor_rps = median(samples[names[1]])
    table = []
    out: dict[str, Any] = {}
    for name in names:
        s = summary(samples[name])
        per_request = 1 if "track" in name else PER_REQUEST
        out[name] = {
            "requests_per_second": s,
            "measurements_per_second": s["median"] * per_request,
            "ratio_vs_floor": ratio(s["median"], floor_rps),
        }
        table.append(
            [
                name,
                s["median"],
                s["p25"],
                s["p75"],
                s["median"] * PER_REQUEST if per_request > 1 else "",
                s["median"] if per_request == 1 else "",
                ratio(s["median"], floor_rps),
            ]
        )
    print_table(
        [
            "in process (httpx ASGITransport)",
            "req/s",
            "p25",
            "p75",
            "measurements/s",
            "events/s",
            "x floor",
        ],
        table,
        title=f"HTTP accept: {SENDERS} concurrent senders, median of {rounds} rounds x "
        f"{requests} requests; bodies {len(perf_bodies[0]):,} B (perf), "
        f"{len(track_bodies[0]):,} B (track)",
    )
    print(f"queue check: {queued:,} requests answered 202, {depth:,} messages in the queue")
    if depth != queued:
        raise RuntimeError(f"queue holds {depth} messages, {queued} were accepted")
    return {
        "senders": SENDERS,
        "rounds": rounds,
        "requests_per_round": requests,
        "body_bytes": {"perf": len(perf_bodies[0]), "track": len(track_bodies[0])},
        "kinds": out,
        "queue_check": {"accepted": queued, "depth": depth},
    }


# -- the run ------------------------------------------------------------------------------


@contextmanager
def perf_database() -> Iterator[str]:
    """A scratch database migrated to head (migration 0009 creates the perf tables)."""
    with scratch_database() as info:
        if not pg_has_perf_tables(info):
            raise RuntimeError("the migrated database has no perf_counters/perf_ledger")
        yield info


def run(quick: bool) -> dict[str, Any]:
    if str(LAYER) not in sys.path:  # BENCH_LAYER: another copy of the layer
        sys.path.insert(0, str(LAYER))
    with tempfile.TemporaryDirectory(prefix="mysoulmate-bench-perf-") as name:
        tmp = Path(name)
        data_dir = tmp / "data"
        data_dir.mkdir()
        settings_env(str(data_dir))
        result: dict[str, Any] = {"seed": SEED}
        with perf_database() as info:
            result["consumer"] = run_consumer(quick, tmp, info)
        result["summary"] = run_summary(quick, tmp)
        result["http"] = run_http(quick, data_dir)
    print(f"\nload average now: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return result


if __name__ == "__main__":
    standalone_main("perf", run)
