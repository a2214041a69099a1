"""Local HTTP ingest, one event per request, 32 clients (issue 18's first goal).

Four servers run side by side for the whole benchmark, each a child process on a free
loopback port with a fresh DATA_DIR on the machine's disk; round by round (order rotated),
each receives the same number of one-event requests from 32 concurrent keep-alive clients:

* **ours**: `mysoulmate serve` with the embedded defaults (SQLite store, the local durable
  queue, the in-process worker draining it into the events store), `POST
  /api/v1/analytics/track` (the app's track route) with a Bearer JWT (HS256, `JWT_SECRET`):
  one token per client, 32 users. Environment as `bench.ingest.server_env` (LOG_LEVEL=WARNING,
  so no per-request log line) except `WORKER_ENABLED=true` and ingest limits too high to ever
  refuse (the limiter still runs on every request). After its round the benchmark waits for
  the worker to drain the queue, so that the worker never runs during another shape's round;
  its CPU per event is shown both over the round and with the drain ("stored").
* **info: no worker**: the same server with `WORKER_ENABLED=false` (only the durable enqueue,
  as `bench ingest` measures it): what the request path costs without the worker beside it.
* **floor**: issue 18's floor, "a bare route + one durable SQLite insert per request", where
  a bare route is a bare FastAPI route (as in the warm benchmark's "bare FastAPI + Mangum
  route"): `fastapi_floor_app()` below, a `FastAPI()` with no middleware, no dependencies, no
  auth, no docs, and one `POST` route at the same path whose body parameter is the package's
  `TrackRequest` (FastAPI reads the body, parses the JSON and validates the model the normal
  way; 422 otherwise). The route does the durable insert below (the raw floor's `FloorApp`
  machinery: same connection, lock and 32-thread pool, through `run_in_executor`) and returns
  the dict `{"messageId", "status"}` with `status_code=202` (no `response_model`: FastAPI's
  plain `jsonable_encoder` + `JSONResponse`). Served like the raw floor below. The goal and
  `ratio_vs_floor` are measured against this one.
* **info: bare ASGI**: the same work with no framework at all: a raw ASGI app (`floor_app`
  below) served by uvicorn with the options `mysoulmate serve` passes (its
  `GuardedHttpToolsProtocol`, `proxy_headers`, no access log, `log_config=None`). Per request
  it reads the body, validates it with the route's own `TrackRequest` (`model_validate_json`),
  and inserts one row (message id, the model's JSON, time) into a table in its own SQLite
  file: `BEGIN IMMEDIATE` … `COMMIT` per request under one lock, on a connection opened by the
  package's `open_sqlite` with the local queue's settings (WAL, `synchronous=FULL`, busy
  timeout 2 s), run on a pool of 32 threads (as the route's `QUEUE` bulkhead: 32). No auth,
  no middleware, no group commit: one durable commit per request, 202 with
  `{"messageId", "status"}`. Reported with ours ÷ it (`ratio_vs_raw_asgi`): what FastAPI
  itself costs on top of the floor's work.

The clients: one asyncio loop in this process, 32 raw keep-alive HTTP/1.1 connections writing
pre-built requests and reading each response (status line, headers, Content-Length body)
before sending the next: a thin client, so that its own CPU (shown) takes little from the two
cores. Bodies are the route's shape (event, 3 properties, platform, context), about 220 bytes,
each with a unique `messageId`; every response must be 202 and name that id.

Per round and shape: events/s, server CPU per event and cores busy (utime + stime of the
server process from /proc, read just before the first request and after the last answer);
latency p50/p99 over all requests of all rounds. Goal: ours ≥ 1.0 x the (FastAPI) floor's
events/s (the median of the per-round ratios); ours ÷ the raw-ASGI floor is shown beside it.
Checks at the end, servers stopped: every event answered 202 is stored exactly once: ours in
the events table (queue empty, no dead letters), the no-worker server in the queue
(`LocalQueue.depth()` and every body parsed), each floor in its own table (its own
`floor.db`); none lost, none duplicated.

`BENCH_PY_SPY=/path/to/py-spy` adds, after the measured rounds, one profiled round (not counted)
of ours and of both floors, at least 12,000 requests each: `py-spy record --gil` samples the
server (only the thread holding the GIL: where the process's Python CPU goes); the samples,
grouped by what they were doing (`CATEGORIES`, first match on the stack), and the top leaf
functions are printed and kept in the results (`BENCH_PY_SPY_DIR` keeps the raw stacks).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench._common import median, print_table, ratio, standalone_main, summary
from bench.ingest import EVENT_NAMES, GENRES, Server, percentile, read_queue, server_env

CLIENTS = 32
ROUTE = "/api/v1/analytics/track"
TARGET = 1.0  # ours ÷ the durable floor, events/s (issue 18)
JWT_SECRET = "bench-http-ingest-0123456789-abcdefghijklmnopqrstuvwxyz"
PLATFORMS = ("ios", "android")
OURS = "ours: mysoulmate serve (track, JWT, queue + worker)"
NO_WORKER = "info: mysoulmate serve, WORKER_ENABLED=false"
FLOOR = "floor: bare FastAPI route + TrackRequest + 1 durable INSERT"
RAW_FLOOR = "info: bare ASGI (no framework) + TrackRequest + 1 durable INSERT"
SHAPES = (OURS, NO_WORKER, FLOOR, RAW_FLOOR)
FLOORS = (FLOOR, RAW_FLOOR)  # no auth: requests without a token
SHORT = {OURS: "ours", NO_WORKER: "no-worker", FLOOR: "floor", RAW_FLOOR: "raw-asgi"}
FLOOR_TABLE = "CREATE TABLE IF NOT EXISTS rows (id TEXT PRIMARY KEY, body TEXT, at REAL)"

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


# -- the floors: a bare route, one durable insert per request ------------------------------


class FloorApp:
    """Body → `TrackRequest` → one `BEGIN IMMEDIATE; INSERT; COMMIT` (WAL, FULL) → 202.

    A raw ASGI app (the "info: bare ASGI" shape); its insert machinery (`startup`, `insert`,
    `threads`, `shutdown`) is also the FastAPI floor's."""

    def __init__(self) -> None:
        self.conn: sqlite3.Connection | None = None
        self.lock = threading.Lock()
        self.threads: ThreadPoolExecutor | None = None
        self.model: Any = None

    def startup(self) -> None:
        from mysoulmate.analytics.client_models import TrackRequest
        from mysoulmate.storage.sqlite.connection import open_sqlite

        # The local queue's connection settings (queue/local.py, LocalQueue.__init__).
        self.conn = open_sqlite(
            Path(os.environ["BENCH_FLOOR_DB"]), synchronous="FULL", busy_timeout_seconds=2.0
        )
        self.conn.execute(FLOOR_TABLE)
        self.threads = ThreadPoolExecutor(max_workers=32, thread_name_prefix="floor-insert")
        self.model = TrackRequest

    def shutdown(self) -> None:
        if self.threads is not None:
            self.threads.shutdown(wait=True)
        if self.conn is not None:
            with self.lock:
                self.conn.close()

    def insert(self, row: tuple[str, str, float]) -> None:
        from mysoulmate.storage.sqlite.connection import write_transaction

        assert self.conn is not None
        with write_transaction(self.conn, self.lock):
            self.conn.execute("INSERT INTO rows (id, body, at) VALUES (?,?,?)", row)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        if scope["path"] == "/health":
            await _answer(send, 200, b'{"status":"ok"}')
            return
        if scope["method"] != "POST" or scope["path"] != ROUTE:
            await _answer(send, 404, b'{"error":"not found"}')
            return
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        try:
            request = self.model.model_validate_json(body)
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            await _answer(send, 422, json.dumps({"error": str(exc)[:200]}).encode())
            return
        message_id = request.messageId or str(uuid.uuid4())
        row = (message_id, request.model_dump_json(exclude_none=True), time.time())
        try:
            await asyncio.get_running_loop().run_in_executor(self.threads, self.insert, row)
        except sqlite3.Error as exc:
            await _answer(send, 503, json.dumps({"error": str(exc)[:200]}).encode())
            return
        answer = json.dumps({"messageId": message_id, "status": "queued"}).encode()
        await _answer(send, 202, answer)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.startup()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return


async def _answer(send: Send, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


floor_app = FloorApp()


def fastapi_floor_app() -> Any:
    """A bare FastAPI app: one `POST` route taking `TrackRequest`, the same durable insert."""
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse
    from mysoulmate.analytics.client_models import TrackRequest

    store = FloorApp()

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        store.startup()
        try:
            yield
        finally:
            store.shutdown()

    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None, lifespan=lifespan)

    async def fastapi_floor_track(body: TrackRequest) -> dict[str, str] | JSONResponse:
        message_id = body.messageId or str(uuid.uuid4())
        row = (message_id, body.model_dump_json(exclude_none=True), time.time())
        try:
            await asyncio.get_running_loop().run_in_executor(store.threads, store.insert, row)
        except sqlite3.Error as exc:
            return JSONResponse({"error": str(exc)[:200]}, status_code=503)
        return {"messageId": message_id, "status": "queued"}

    # This module's annotations are strings (postponed) and the package is imported here, not
    # at module level: give FastAPI the class itself to read the body parameter from.
    fastapi_floor_track.__annotations__["body"] = TrackRequest
    app.post(ROUTE, status_code=202, response_model=None)(fastapi_floor_track)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


def serve_floor(kind: str, port: int) -> None:
    """uvicorn with the options `mysoulmate serve` passes (runtime/cli/server.py)."""
    import uvicorn
    from mysoulmate.runtime.http_protocol import GuardedHttpToolsProtocol

    uvicorn.run(
        fastapi_floor_app() if kind == "fastapi" else floor_app,
        http=GuardedHttpToolsProtocol,
        host="127.0.0.1",
        port=port,
        log_config=None,
        log_level="warning",
        access_log=False,
        proxy_headers=True,
    )


# -- the clients ---------------------------------------------------------------------------


class Requests:
    """Pre-built raw HTTP/1.1 requests with unique message ids, one list per client."""

    def __init__(self, port: int, tokens: list[str] | None) -> None:
        self.port = port
        self.tokens = tokens
        self.next_id = 0

    def take(self, count: int, ids: Counter[str]) -> list[list[tuple[bytes, bytes]]]:
        per_client: list[list[tuple[bytes, bytes]]] = [[] for _ in range(CLIENTS)]
        for i in range(count):
            n = self.next_id
            self.next_id += 1
            message_id = str(uuid.UUID(int=(0xB4 << 120) + n))
            body = json.dumps(
                {
                    "event": EVENT_NAMES[n % len(EVENT_NAMES)],
                    "properties": {
                        "songId": f"s-{n % 997:05d}",
                        "durationMs": 1000 + n % 300_000,
                        "genre": GENRES[n % len(GENRES)],
                    },
                    "platform": PLATFORMS[n % len(PLATFORMS)],
                    "context": {"app": {"version": "3.2.1"}, "locale": "en-US"},
                    "messageId": message_id,
                },
                separators=(",", ":"),
            ).encode()
            k = i % CLIENTS
            auth = f"Authorization: Bearer {self.tokens[k]}\r\n" if self.tokens else ""
            head = (
                f"POST {ROUTE} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
                f"Content-Type: application/json\r\n{auth}Content-Length: {len(body)}\r\n\r\n"
            )
            per_client[k].append((head.encode() + body, message_id.encode()))
            ids[message_id] += 1
        return per_client


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    raise RuntimeError(f"answer without Content-Length: {head[:300]!r}")


async def _load(
    port: int, per_client: list[list[tuple[bytes, bytes]]], server_cpu: Callable[[], float]
) -> dict[str, Any]:
    connections = [await asyncio.open_connection("127.0.0.1", port) for _ in per_client]
    go = asyncio.Event()
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    bad: list[str] = []
    clock = time.perf_counter

    async def client(k: int) -> None:
        reader, writer = connections[k]
        await go.wait()
        for raw, message_id in per_client[k]:
            start = clock()
            writer.write(raw)
            head = await reader.readuntil(b"\r\n\r\n")
            body = await reader.readexactly(_content_length(head))
            latencies.append(clock() - start)
            status = int(head[9:12])
            statuses[status] += 1
            if (status != 202 or message_id not in body) and len(bad) < 3:
                bad.append(f"{status} {body[:300]!r}")

    tasks = [asyncio.create_task(client(k)) for k in range(len(per_client))]
    await asyncio.sleep(0.05)  # every client waiting on `go`
    cpu_before, client_before = server_cpu(), time.process_time()
    started = clock()
    go.set()
    await asyncio.gather(*tasks)
    elapsed = clock() - started
    cpu, client_cpu = server_cpu() - cpu_before, time.process_time() - client_before
    for _, writer in connections:
        writer.close()
    for _, writer in connections:
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return {
        "elapsed": elapsed,
        "server_cpu": cpu,
        "client_cpu": client_cpu,
        "latencies": latencies,
        "statuses": dict(statuses),
        "bad": bad,
    }


def load(server: Server, per_client: list[list[tuple[bytes, bytes]]], label: str) -> dict[str, Any]:
    out = asyncio.run(_load(server.port, per_client, server.cpu_seconds))
    sent = sum(len(c) for c in per_client)
    if out["statuses"] != {202: sent} or out["bad"]:
        raise RuntimeError(f"{label}: answered {out['statuses']} {out['bad']}\n{server.tail()}")
    return out


# -- the servers and the checks ------------------------------------------------------------


def _queue_depth(path: Path) -> int:
    conn = sqlite3.connect(path, timeout=5)
    try:
        return int(conn.execute("SELECT count(*) FROM messages").fetchone()[0])
    finally:
        conn.close()


def wait_drained(server: Server, queue_db: Path, within: float = 300) -> tuple[float, float]:
    """Wait until the worker has emptied the queue: (seconds waited, server CPU meanwhile)."""
    started, cpu = time.perf_counter(), server.cpu_seconds()
    deadline = time.monotonic() + within
    while _queue_depth(queue_db):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the worker did not drain the queue within {within} s")
        time.sleep(0.02)
    return time.perf_counter() - started, server.cpu_seconds() - cpu


def _check(sent: Counter[str], found: Counter[str], **extra: Any) -> dict[str, Any]:
    lost = sum((sent - found).values())
    duplicated = sum((found - sent).values())
    return {
        "answered_202": sum(sent.values()),
        "stored": sum(found.values()),
        "lost": lost,
        "duplicated_or_unknown": duplicated,
        **extra,
        "ok": lost == 0 and duplicated == 0 and not extra.get("problems"),
    }


def check_ours(data_dir: Path, sent: Counter[str]) -> dict[str, Any]:
    """Worker on: every event in the events table once, queue empty, no dead letters."""
    queued = read_queue(data_dir)
    conn = sqlite3.connect(f"file:{data_dir / 'analytics.db'}?mode=ro", uri=True)
    found: Counter[str] = Counter(
        m for (m,) in conn.execute("SELECT message_id FROM events WHERE type = 'track'")
    )
    conn.close()
    problems = []
    if queued["depth"] or queued["dead_letters"]:
        problems.append(f"queue not empty: {queued['depth']} left, {queued['dead_letters']} dead")
    return _check(
        sent,
        found,
        where="events table (analytics.db; queue drained)",
        queue_left=queued["depth"],
        dead_letters=queued["dead_letters"],
        problems=problems,
    )


def check_no_worker(data_dir: Path, sent: Counter[str]) -> dict[str, Any]:
    queued = read_queue(data_dir)
    bodies = sum(queued["messages_per_body"].values())
    problems = [] if queued["depth"] == bodies else [f"depth {queued['depth']} != {bodies} bodies"]
    return _check(
        sent,
        queued["ids"],
        where="local queue (queue.db; every body parsed)",
        queue_depth_rows=queued["depth"],
        dead_letters=queued["dead_letters"],
        problems=problems,
    )


def check_floor(db: Path, sent: Counter[str]) -> dict[str, Any]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    found: Counter[str] = Counter(i for (i,) in conn.execute("SELECT id FROM rows"))
    conn.close()
    return _check(sent, found, where="floor's table (floor.db)", problems=[])


def _tokens() -> list[str]:
    from mysoulmate.api.auth import issue_token
    from mysoulmate.core.settings import Settings

    settings = Settings.model_validate({"jwt_secret": JWT_SECRET})
    return [issue_token(settings, f"user-{k:04d}", ["user"], 3600) for k in range(CLIENTS)]


def _start_servers(tmp: Path, base_env: dict[str, str]) -> dict[str, Any]:
    servers: dict[str, Any] = {}
    for shape, worker in ((OURS, "true"), (NO_WORKER, "false")):
        home = tmp / ("ours" if worker == "true" else "no-worker")
        data_dir = home / "data"
        data_dir.mkdir(parents=True)
        env = server_env(base_env, data_dir)
        env.update(
            {
                "WORKER_ENABLED": worker,
                "AUTH_MODE": "jwt",
                "JWT_SECRET": JWT_SECRET,
                "RATE_LIMIT_INGEST_PER_SECOND": "1000000000",
                "RATE_LIMIT_INGEST_BURST": "1000000000",
            }
        )
        servers[shape] = {"server": Server(env, data_dir), "data_dir": data_dir}
    for shape, kind in ((FLOOR, "fastapi"), (RAW_FLOOR, "raw")):
        data_dir = tmp / f"floor-{kind}" / "data"
        data_dir.mkdir(parents=True)
        env = server_env(base_env, data_dir)
        env.update({"JWT_SECRET": JWT_SECRET, "BENCH_FLOOR_DB": str(data_dir / "floor.db")})
        floor = Server(env, data_dir)
        floor.command = [
            sys.executable,
            *("-m", "bench.http_ingest", "--floor-server", kind, str(floor.port)),
        ]
        servers[shape] = {"server": floor, "data_dir": data_dir}
    for entry in servers.values():
        entry["server"].start()
    return servers


# -- profile (optional) --------------------------------------------------------------------

# Where a server's GIL time goes: each sample goes to the first category one of whose functions
# is on its stack (names as py-spy prints them; `.name` also matches `Class.name`).
CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("in-process worker (receive, IngestBatch, store, delete)", ("LocalWorker._run",)),
    ("queue send, bulkhead thread (group commit, INSERT, COMMIT)", ("Bulkhead._in_thread",)),
    ("floors: INSERT + COMMIT, pool thread", ("FloorApp.insert",)),
    ("worker threads waking and waiting (outside the call)", ("WorkerThread.run", "_worker")),
    (
        "body read (+ nesting scan) + JSON + TrackRequest validation",
        ("Request.body", "Request.json", "request_body_to_args", ".model_validate_json"),
    ),
    ("JWT principal (verified-token cache)", ("current_principal",)),
    ("rate limiter", ("limit_ingest",)),
    ("normalize to QueuedMessage (PII, checks)", ("queued_message",)),
    ("enqueue: hop to the bulkhead thread (anyio) and back", ("enqueue",)),
    ("rest of service.accept (Accepted, count)", ("accept",)),
    ("rest of FastAPI dependency solving", ("solve_dependencies",)),
    (
        "response: serialize, headers, send",
        (
            "serialize_response",
            "Response.__init__",
            "JSONResponse.__init__",
            "Response.__call__",
            "send_with_headers",
            "RequestResponseCycle.send",
            "_answer",
        ),
    ),
    (
        "floor (FastAPI): route's own work, hop to the pool thread and back",
        ("fastapi_floor_track",),
    ),
    ("FastAPI/Starlette routing and endpoint wrappers", ("ExceptionMiddleware.__call__",)),
    (
        "RequestContextMiddleware's own work (ids, log, metrics)",
        ("RequestContextMiddleware._handle",),
    ),
    ("raw floor: route's own work, hop to the pool thread and back", ("FloorApp.__call__",)),
    ("outer middleware (errors, body limit, telemetry, proxy)", ("RequestResponseCycle.run_asgi",)),
    ("HTTP parsing (httptools protocol callbacks)", (".data_received", ".on_headers_complete")),
)
OTHER = "event loop (uvloop, transports) and partial stacks"


def _category(names: list[str]) -> str:
    for label, markers in CATEGORIES:
        for marker in markers:
            if marker.startswith("."):
                if any(n.endswith(marker) for n in names):
                    return label
            elif marker in names:
                return label
    return OTHER


def profile_server(py_spy: str, server: Server, per_client: Any, raw: Path) -> dict[str, Any]:
    """One round under `py-spy record --gil` (raw collapsed stacks): where the GIL goes."""
    assert server.proc is not None
    command = [py_spy, "record", "--gil", "-r", "250", "-f", "raw", "-o", str(raw)]
    spy = subprocess.Popen(
        [*command, "-p", str(server.proc.pid)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    time.sleep(1.0)  # attached
    out = load(server, per_client, "profile")
    time.sleep(0.3)
    spy.send_signal(signal.SIGINT)  # py-spy writes its file and exits
    _, err = spy.communicate(timeout=60)
    if not raw.exists():
        return {"error": err.decode(errors="replace")[-500:]}
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    categories: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        names = [f.split(" (", 1)[0] for f in frames]
        labels = [f"{n} ({_short(f)})" for n, f in zip(names, frames, strict=True)]
        total += count
        own[labels[-1]] += count
        inclusive.update(dict.fromkeys(set(labels), count))
        categories[_category(names)] += count
    requests = sum(len(c) for c in per_client)
    gil_us = out["server_cpu"] / requests * 1e6  # scale: the round's CPU per request

    def shares(counter: Counter[str], n: int) -> list[tuple[str, float]]:
        return [(f, c / total) for f, c in counter.most_common(n)] if total else []

    return {
        "samples": total,
        "requests": requests,
        "server_cpu_us_per_request": gil_us,
        "categories": shares(categories, len(CATEGORIES) + 1),
        "own_top": shares(own, 25),
        "inclusive_top": shares(inclusive, 80),
    }


def _short(frame: str) -> str:
    """`name (path/to/module.py:12)` → `module.py`, package paths shortened."""
    where = frame.rsplit(" (", 1)[-1].rstrip(")")
    path = where.rsplit(":", 1)[0]
    for marker in ("/mysoulmate/", "/site-packages/", "/lib/python3.12/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path.rsplit("/", 1)[-1]


def print_profile(label: str, profile: dict[str, Any], cpu: float) -> None:
    """``cpu``: the server's CPU per request in the measured rounds (the µs column's scale)."""
    if "error" in profile:
        print(f"py-spy failed for {label}: {profile['error']}")
        return
    print_table(
        [f"py-spy --gil, {label}: {profile['samples']:,} samples", "share", "≈ µs/request"],
        [[name, f"{share:.1%}", share * cpu] for name, share in profile["categories"]],
        title=f"Where the server's GIL time goes ({profile['requests']:,} requests profiled; "
        f"µs: shares of the {cpu:,.0f} µs of CPU per request of the measured rounds)",
    )
    print_table(
        [f"{label}: own samples (leaf function)", "share"],
        [[name, f"{share:.1%}"] for name, share in profile["own_top"][:15]],
    )


# -- the benchmark ---------------------------------------------------------------------------


def run(quick: bool) -> dict[str, Any]:
    base_env = dict(os.environ)
    rounds = 3 if quick else 9
    per_round = 1000 if quick else 5000
    warmup = 2 * CLIENTS
    tokens = _tokens()
    sent: dict[str, Counter[str]] = {s: Counter() for s in SHAPES}
    samples: dict[str, dict[str, list[float]]] = {
        s: {
            "events_per_second": [],
            "server_cpu_us_per_event": [],
            "server_cores": [],
            "client_cpu_us_per_request": [],
            "p99_ms": [],
        }
        for s in SHAPES
    }
    stored_cpu: list[float] = []  # ours: CPU per event including the worker's drain
    drain_seconds: list[float] = []
    latencies: dict[str, list[float]] = {s: [] for s in SHAPES}
    round_ratios: list[float] = []  # ours ÷ the FastAPI floor: the goal
    raw_ratios: list[float] = []  # ours ÷ the raw-ASGI floor (info)
    loads: list[list[float]] = []
    profile: dict[str, Any] | None = None
    with tempfile.TemporaryDirectory(prefix="mysoulmate-bench-http-") as tmp_name:
        tmp = Path(tmp_name)
        servers = _start_servers(tmp, base_env)
        makers = {
            s: Requests(servers[s]["server"].port, None if s in FLOORS else tokens) for s in SHAPES
        }
        queue_db = servers[OURS]["data_dir"] / "queue.db"
        try:
            for shape in SHAPES:  # warm-up: imports, caches, tokens verified once
                load(servers[shape]["server"], makers[shape].take(warmup, sent[shape]), shape)
            wait_drained(servers[OURS]["server"], queue_db)
            for r in range(rounds):
                loads.append(list(os.getloadavg()))
                order = SHAPES[r % len(SHAPES) :] + SHAPES[: r % len(SHAPES)]
                eps: dict[str, float] = {}
                for shape in order:
                    server = servers[shape]["server"]
                    per_client = makers[shape].take(per_round, sent[shape])
                    gc.collect()
                    out = load(server, per_client, shape)
                    s = samples[shape]
                    eps[shape] = per_round / out["elapsed"]
                    s["events_per_second"].append(eps[shape])
                    s["server_cpu_us_per_event"].append(out["server_cpu"] / per_round * 1e6)
                    s["server_cores"].append(out["server_cpu"] / out["elapsed"])
                    s["client_cpu_us_per_request"].append(out["client_cpu"] / per_round * 1e6)
                    s["p99_ms"].append(percentile(out["latencies"], 0.99) * 1e3)
                    latencies[shape].extend(out["latencies"])
                    if shape == OURS:
                        waited, cpu = wait_drained(server, queue_db)
                        drain_seconds.append(waited)
                        stored_cpu.append((out["server_cpu"] + cpu) / per_round * 1e6)
                round_ratios.append(ratio(eps[OURS], eps[FLOOR]))
                raw_ratios.append(ratio(eps[OURS], eps[RAW_FLOOR]))
                print(
                    f"  round {r + 1}/{rounds}: "
                    + ", ".join(f"{SHORT[s]} {eps[s]:,.0f}/s" for s in SHAPES)
                    + f", ours/floor {round_ratios[-1]:.2f}, ours/raw-asgi {raw_ratios[-1]:.2f}"
                    + f"; load {loads[-1][0]:.2f}",
                    flush=True,
                )
            py_spy = os.environ.get("BENCH_PY_SPY")
            if py_spy:
                profile = {}
                for shape in (OURS, FLOOR, RAW_FLOOR):
                    server = servers[shape]["server"]
                    raw = Path(os.environ.get("BENCH_PY_SPY_DIR") or tmp) / (
                        f"http_ingest.{SHORT[shape]}.pyspy.txt"
                    )
                    per_client = makers[shape].take(max(per_round, 12_000), sent[shape])
                    profile[shape] = profile_server(py_spy, server, per_client, raw)
                    if shape == OURS:
                        wait_drained(server, queue_db)
        finally:
            for entry in servers.values():
                entry["server"].stop()
        tails = {s: servers[s]["server"].tail() for s in SHAPES}
        checks = {
            OURS: check_ours(servers[OURS]["data_dir"], sent[OURS]),
            NO_WORKER: check_no_worker(servers[NO_WORKER]["data_dir"], sent[NO_WORKER]),
            FLOOR: check_floor(servers[FLOOR]["data_dir"] / "floor.db", sent[FLOOR]),
            RAW_FLOOR: check_floor(servers[RAW_FLOOR]["data_dir"] / "floor.db", sent[RAW_FLOOR]),
        }
    loads.append(list(os.getloadavg()))
    for shape, result in checks.items():
        if not result["ok"]:
            raise RuntimeError(f"{shape}: storage check failed: {result}\n{tails[shape]}")

    floor_eps = median(samples[FLOOR]["events_per_second"])
    raw_eps = median(samples[RAW_FLOOR]["events_per_second"])
    value = median(round_ratios)
    raw_value = median(raw_ratios)
    shapes: dict[str, Any] = {}
    rows = []
    for shape in SHAPES:
        s, lat = samples[shape], latencies[shape]
        eps_s = summary(s["events_per_second"])
        shapes[shape] = {
            "events_per_second": eps_s,
            "latency_ms": {
                "p50": percentile(lat, 0.50) * 1e3,
                "p99": percentile(lat, 0.99) * 1e3,
                "max": max(lat) * 1e3,
                "n": len(lat),
            },
            "p99_ms_per_round": summary(s["p99_ms"]),
            "server_cpu_us_per_event": summary(s["server_cpu_us_per_event"]),
            "server_cores_busy": summary(s["server_cores"]),
            "client_cpu_us_per_request": median(s["client_cpu_us_per_request"]),
            "ratio_vs_floor": ratio(eps_s["median"], floor_eps),
            "ratio_vs_raw_asgi": ratio(eps_s["median"], raw_eps),
        }
        rows.append(
            [
                shape,
                per_round * rounds,
                eps_s["median"],
                eps_s["p25"],
                eps_s["p75"],
                percentile(lat, 0.50) * 1e3,
                percentile(lat, 0.99) * 1e3,
                median(s["server_cpu_us_per_event"]),
                median(s["server_cores"]),
                median(s["client_cpu_us_per_request"]),
                ratio(eps_s["median"], floor_eps),
                ratio(eps_s["median"], raw_eps),
            ]
        )
    shapes[OURS]["server_cpu_us_per_event_stored"] = summary(stored_cpu)
    shapes[OURS]["drain_seconds_after_round"] = summary(drain_seconds)
    verdict = "met" if value >= TARGET else f"MISSED by {1 - value / TARGET:.0%}"
    print_table(
        [
            f"{CLIENTS} clients, 1 event per request",
            "requests",
            "events/s",
            "p25",
            "p75",
            "p50 ms",
            "p99 ms",
            "server CPU µs/event",
            "cores",
            "client µs/req",
            "x floor",
            "x raw ASGI",
        ],
        rows,
        title=f"HTTP ingest, one event per request, median of {rounds} interleaved round(s)",
    )
    print(
        f"ours ÷ floor, median of the per-round ratios: {value:.2f} "
        f"(p25 {summary(round_ratios)['p25']:.2f}, p75 {summary(round_ratios)['p75']:.2f}); "
        f"goal ≥ {TARGET} x: {verdict}"
    )
    print(
        f"ours ÷ raw-ASGI floor (info), median of the per-round ratios: {raw_value:.2f} "
        f"(p25 {summary(raw_ratios)['p25']:.2f}, p75 {summary(raw_ratios)['p75']:.2f}); "
        f"FastAPI floor ÷ raw-ASGI floor: {ratio(floor_eps, raw_eps):.2f}"
    )
    print(
        f"ours, server CPU per event including the worker's drain after the round: "
        f"{median(stored_cpu):,.0f} µs; drain after a round: {median(drain_seconds):.2f} s"
    )
    for shape, result in checks.items():
        print(
            f"check {SHORT[shape]}: {result['answered_202']:,} answered 202, "
            f"{result['stored']:,} in the {result['where']}, lost {result['lost']}, "
            f"duplicated {result['duplicated_or_unknown']}"
        )
    print(
        "load average per round (1 min): " + ", ".join(f"{x[0]:.2f}" for x in loads),
        flush=True,
    )
    for shape, figures in (profile or {}).items():
        print_profile(SHORT[shape], figures, median(samples[shape]["server_cpu_us_per_event"]))
    return {
        "clients": CLIENTS,
        "route": ROUTE,
        "auth": "Bearer JWT (HS256), one token per client (32 users)",
        "rounds": rounds,
        "requests_per_round": per_round,
        "ours": OURS,
        "floor": FLOOR,
        "raw_asgi_floor": RAW_FLOOR,
        "shapes": shapes,
        "ratio_vs_floor": value,
        "ratio_per_round": summary(round_ratios),
        "ratio_vs_raw_asgi": raw_value,
        "ratio_vs_raw_asgi_per_round": summary(raw_ratios),
        "target": TARGET,
        "verdict": verdict,
        "checks": checks,
        "load_average_per_round": loads,
        "profile": profile,
    }


if __name__ == "__main__":
    if "--floor-server" in sys.argv:
        at = sys.argv.index("--floor-server")
        serve_floor(sys.argv[at + 1], int(sys.argv[at + 2]))
    else:
        standalone_main("http_ingest", run)
