"""Warm overhead: µs per in-process `POST /api/v1/analytics/track` on a warm Lambda.

The analytics handler is the real one: `functions/analytics/app.py` loaded as Lambda loads it,
so `runtime.lambda_handlers.http_handler` with Powertools' `log_metrics` and `inject_lambda_context`
around Mangum around the app, and the production dependency graph (get_queue ->
message_queue() -> SqsQueue.send). Only the boto3 client inside the real SqsQueue is
replaced by an in-memory one. Auth is `AUTH_MODE=apigateway`: the claims arrive in the
event, as API Gateway's JWT authorizer passes them.

Compared, interleaved round by round, with the same event through:

* **issue floor** (issue 18, the goal's denominator): a bare FastAPI app wrapped in
  `Mangum(lifespan="off")` (no Powertools decorators, no middleware, no dependencies) whose
  single `async def` route takes the package's `TrackRequest` body, sends its JSON
  (`model_dump_json(exclude_none=True)`, as `service.enqueue` serializes its message) with
  one `SqsQueue.send` to the same queue the full handler uses (the real SqsQueue from
  `message_queue()`, in-memory boto3 client), and returns the package's `Accepted`;
* **bare route**: a bare FastAPI app with one `async def` route that neither validates nor
  queues, wrapped in `Mangum(lifespan="off")`: the bottom of the ladder;
* a ladder from the bare route to the full handler, one thing added per step (body and
  response models; the route's dependencies; the package's route and service; `create_app`'s
  middleware and handlers, whose fast ingest path then skips FastAPI's routing, dependency
  solving and response model; the Powertools decorators), so the differences of the medians
  say where the time over the bare route goes;
* the full handler with the `EventsAccepted` metric switched off (what the metric costs), and
  without the fast ingest path (`api/fast_ingest.py`: every request through FastAPI's
  routing, dependencies and response model, as before that path existed);
* the bare route inside the same decorators, and the full handler with the queue injected
  through `dependency_overrides` (a test-only cost), for information.

Target (issue 18): the analytics handler ≤ 1.3 x the issue floor, "a bare route that
validates the same request model and sends to the same queue stub" (median over rounds of
the ratio within a round). The ratio to the bare route is reported for information.

For information, the container shape (`mysoulmate.runtime.server.create_server_app()`, HS256 bearer
token as `AUTH_MODE=jwt` verifies it, thread-pool `run_blocking`) is measured through
httpx's ASGITransport in a separate interpreter, next to a bare app through the same transport.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

from bench._common import (
    LAYER,
    QUEUE_URL,
    ROOT,
    TRACK_BODY,
    USER_CLAIMS,
    FakeLambdaContext,
    api_gateway_event,
    apply_env,
    lambda_env,
    load_entry_point,
    median,
    per_call_us,
    print_table,
    ratio,
    standalone_main,
    summary,
    verdict,
)

TARGET = 1.3
PATH = "/api/v1/analytics/track"


class MemoryQueue:
    """The queue port, in memory: what the route hands the queue, and nothing else."""

    def __init__(self) -> None:
        self.bodies: list[str] = []

    def send(self, body: str) -> None:
        self.bodies.append(body)

    def send_batch(self, bodies: Any) -> None:
        self.bodies.extend(bodies)

    def ping(self) -> None:
        return None


def _find_in_closure(func: Any, kind: type, seen: set[int] | None = None) -> Any:
    """The first ``kind`` instance reachable through ``__wrapped__`` and closure cells."""
    seen = seen if seen is not None else set()
    if id(func) in seen:
        return None
    seen.add(id(func))
    if isinstance(func, kind):
        return func
    candidates = [getattr(func, "__wrapped__", None)]
    for cell in getattr(func, "__closure__", None) or ():
        try:
            candidates.append(cell.cell_contents)
        except ValueError:
            continue
    for candidate in candidates:
        if candidate is None:
            continue
        if isinstance(candidate, kind):
            return candidate
        if callable(candidate):
            found = _find_in_closure(candidate, kind, seen)
            if found is not None:
                return found
    return None


class MemorySqsClient:
    """Stands in for the boto3 SQS client inside the real SqsQueue: no network, no botocore."""

    def __init__(self, sink: list[str]) -> None:
        self._sink = sink

    def send_message(self, QueueUrl: str, MessageBody: str) -> dict[str, Any]:
        self._sink.append(MessageBody)
        return {"MessageId": "00000000-0000-4000-8000-000000000000"}

    def get_queue_attributes(self, **_: Any) -> dict[str, Any]:
        return {"Attributes": {}}


FLOOR = "floor: bare FastAPI+Mangum route"
ISSUE_FLOOR = "floor (issue 18): bare route + TrackRequest + SqsQueue.send"
DECORATED = "bare + Logger/Metrics decorators"
MODELS = "bare + TrackRequest body, Accepted response"
DEPENDENCIES = "... + the route's 3 dependencies"
ROUTER = "... + the package's track route (service, queue)"
APP = "... + create_app (middleware, error handlers, fast ingest path)"
MAIN = "analytics handler (full)"
NO_FAST = "analytics handler without the fast ingest path"
NO_METRIC = "analytics handler, EventsAccepted metric off"
OVERRIDE = "analytics handler, dependency_overrides"
# Variants that must put one message on the queue per request.
QUEUEING = (ISSUE_FLOOR, ROUTER, APP, MAIN, NO_FAST, NO_METRIC, OVERRIDE)

# The ladder from the bare route to the full handler: each step adds one thing, so the
# differences of the medians add up to (full - floor) exactly.
STEPS = (
    ("FastAPI body + response validation (TrackRequest, Accepted)", FLOOR, MODELS),
    ("dependency solving: current_principal, get_queue, Request", MODELS, DEPENDENCIES),
    (
        "the route's work: queued_message, model_dump_json, SqsQueue.send, count()",
        DEPENDENCIES,
        ROUTER,
    ),
    # Negative since the fast ingest path: create_app's app answers an accepted track
    # without FastAPI's routing, dependency solving and response model (api/fast_ingest.py).
    ("create_app: middleware, handlers, minus what the fast path skips", ROUTER, APP),
    ("Powertools log_metrics + inject_lambda_context, EMF flush", APP, MAIN),
)


def _noop_count(name: str, value: float = 1) -> None:
    return None


def _lambda_variants() -> tuple[dict[str, Callable[[], Any]], list[str]]:
    apply_env(lambda_env("analytics"))
    import mysoulmate.analytics.service as service
    import mysoulmate.runtime.backends
    from aws_lambda_powertools.logging import correlation_paths
    from fastapi import FastAPI, Request
    from mangum import Mangum
    from mysoulmate.analytics.client_models import Accepted, TrackRequest
    from mysoulmate.api import analytics as analytics_api
    from mysoulmate.api.dependencies import get_queue
    from mysoulmate.observability import get_logger, get_metrics

    sink: list[str] = []
    # The production path end to end (get_queue -> message_queue() -> SqsQueue.send); only
    # the boto3 client under the real SqsQueue is replaced. app.py builds the clients at
    # import, through the same cached factory, so the handler gets this queue too.
    mysoulmate.runtime.backends.message_queue()._client = MemorySqsClient(sink)  # type: ignore[attr-defined]
    handler = load_entry_point("analytics", "main").handler
    asgi = _find_in_closure(handler, Mangum)
    if asgi is None:
        raise RuntimeError("no Mangum instance in the analytics handler's closure")

    # An in-memory queue injected through app.dependency_overrides, as tests do. FastAPI
    # then re-analyses every dependency of the route on every request, a test-only cost.
    # The override is `async def` like get_queue: a plain `def` would add a worker thread.
    overridden = load_entry_point("analytics", "override").handler
    memory = MemoryQueue()
    memory.bodies = sink

    async def memory_queue() -> MemoryQueue:
        return memory

    _find_in_closure(overridden, Mangum).app.dependency_overrides[get_queue] = memory_queue

    # The full handler with FastAPI's own path for every request (the app as it was before
    # the fast ingest path): taken out before the first request builds the middleware stack.
    from mysoulmate.api.fast_ingest import FastIngest

    no_fast = load_entry_point("analytics", "no_fast").handler
    no_fast_app = _find_in_closure(no_fast, Mangum).app
    no_fast_app.user_middleware = [
        m for m in no_fast_app.user_middleware if m.cls is not FastIngest
    ]

    bare_app = FastAPI()

    @bare_app.post(PATH, status_code=202)
    async def bare_route() -> dict[str, str]:
        return {"status": "queued"}

    bare = Mangum(bare_app, lifespan="off")

    # The bare route validating the body with the package's request model and returning
    # its response model: what FastAPI validation alone costs.
    async def models_route(body: Any) -> Any:
        return Accepted(messageId="m-1")

    models_route.__annotations__ = {"body": TrackRequest, "return": Accepted}
    models_app = FastAPI()
    models_app.add_api_route(PATH, models_route, methods=["POST"], status_code=202)
    models = Mangum(models_app, lifespan="off")

    # Issue 18's floor: the same, plus one send of the body's JSON to the same queue as the
    # full handler (the real SqsQueue from the cached message_queue(), in-memory client).
    # Called directly, as the package's QUEUE bulkhead does on Lambda (no worker thread).
    queue = mysoulmate.runtime.backends.message_queue()

    async def issue_route(body: Any) -> Any:
        queue.send(body.model_dump_json(exclude_none=True))
        return Accepted(messageId="m-1")

    issue_route.__annotations__ = {"body": TrackRequest, "return": Accepted}
    issue_app = FastAPI()
    issue_app.add_api_route(PATH, issue_route, methods=["POST"], status_code=202)
    issue = Mangum(issue_app, lifespan="off")

    # ... plus the same dependencies as the real route (same Annotated types), no work.
    async def deps_route(body: Any, request: Request, caller: Any, queue: Any) -> Any:
        return Accepted(messageId="m-1")

    deps_route.__annotations__ = {
        "body": TrackRequest,
        "request": Request,
        "caller": analytics_api.Caller,
        "queue": analytics_api.Queue,
        "return": Accepted,
    }
    deps_app = FastAPI()
    deps_app.add_api_route(PATH, deps_route, methods=["POST"], status_code=202)
    deps = Mangum(deps_app, lifespan="off")

    # ... the package's own router on a plain FastAPI(): no middleware, no handlers.
    router_app = FastAPI()
    router_app.include_router(analytics_api.router)
    router = Mangum(router_app, lifespan="off")

    logger, metrics = get_logger(), get_metrics()

    # Same decorators, same order, same Logger/Metrics as runtime.lambda_handlers.http_handler.
    @metrics.log_metrics(capture_cold_start_metric=True)
    @logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
    def bare_wrapped(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return bare(event, context)  # type: ignore[no-any-return]

    event = api_gateway_event("POST", PATH, TRACK_BODY, USER_CLAIMS)
    context = FakeLambdaContext()
    real_count = service.count

    def without_metric() -> Any:
        # The full handler with count() a no-op: no add_metric, nothing for log_metrics to
        # serialize. Two attribute stores per call, well under a microsecond.
        service.count = _noop_count
        try:
            return handler(event, context)
        finally:
            service.count = real_count

    variants: dict[str, Callable[[], Any]] = {
        ISSUE_FLOOR: lambda: issue(event, context),
        FLOOR: lambda: bare(event, context),
        DECORATED: lambda: bare_wrapped(event, context),
        MODELS: lambda: models(event, context),
        DEPENDENCIES: lambda: deps(event, context),
        ROUTER: lambda: router(event, context),
        APP: lambda: asgi(event, context),
        MAIN: lambda: handler(event, context),
        NO_FAST: lambda: no_fast(event, context),
        NO_METRIC: without_metric,
        OVERRIDE: lambda: overridden(event, context),
    }
    return variants, sink


def _check(variants: dict[str, Callable[[], Any]], sink: list[str]) -> dict[str, Any]:
    """One request each: the status, and for the package's handlers that a message was queued."""
    checks: dict[str, Any] = {}
    for name, call in variants.items():
        before = len(sink)
        checks[name] = call()["statusCode"]
        if checks[name] != 202:
            raise RuntimeError(f"{name}: answered {checks[name]}, not 202")
        if name in QUEUEING and len(sink) != before + 1:
            raise RuntimeError(f"{name}: {len(sink) - before} message(s) queued, not 1")
    checks["queued_message_fields"] = sorted(json.loads(sink[-1]))
    return checks


def _in_context(handler: Callable[[], Any], iterations: int, rounds: int) -> dict[str, Any]:
    """Where the full handler's time goes inside the route and the metric, measured in
    context: the pieces are wrapped with timers (≈ 0.3 µs each) for one pass of requests
    through the full handler, then restored. A piece timed alone in a tight loop runs 2-3 x
    faster than inside a request (caches), so only in-context figures are reported."""
    import mysoulmate.analytics.service as service
    import mysoulmate.runtime.backends
    from mysoulmate.analytics.models import QueuedMessage
    from mysoulmate.observability import get_metrics

    spent: dict[str, float] = {}

    def timed(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
        spent[name] = 0.0

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                spent[name] += time.perf_counter() - start

        return wrapper

    queue = mysoulmate.runtime.backends.message_queue()
    provider = get_metrics().provider
    originals = (service.queued_message, service.count, QueuedMessage.model_dump_json)
    service.queued_message = timed("queued_message (builds the QueuedMessage)", originals[0])
    QueuedMessage.model_dump_json = timed(  # type: ignore[method-assign]
        "QueuedMessage.model_dump_json", originals[2]
    )
    queue.send = timed("SqsQueue.send (in-memory boto3 client)", queue.send)  # type: ignore[method-assign]
    service.count = timed("count(): its EMF document, printed at once", originals[1])
    provider.flush_metrics = timed(  # type: ignore[method-assign]
        "log_metrics: flush_metrics (empty set)", provider.flush_metrics
    )
    per_round: dict[str, list[float]] = {name: [] for name in spent}
    per_round["the full handler, instrumented"] = []
    try:
        for _ in range(rounds):
            for name in spent:
                spent[name] = 0.0
            gc.collect()
            total = per_call_us(handler, iterations)
            per_round["the full handler, instrumented"].append(total)
            for name, seconds in spent.items():
                per_round[name].append(seconds / iterations * 1e6)
    finally:
        service.queued_message, service.count = originals[0], originals[1]
        QueuedMessage.model_dump_json = originals[2]  # type: ignore[method-assign]
        del queue.send, provider.flush_metrics
    return per_round


def run_lambda(quick: bool) -> dict[str, Any]:
    # Many short rounds rather than a few long ones: on a shared VM, bursts of noise then
    # spoil single samples, which the medians and the per-round pairing below ignore.
    iterations = 500 if quick else 1000
    rounds = 5 if quick else 25
    warnings.filterwarnings("ignore", message="No application metrics to publish")
    variants, sink = _lambda_variants()
    names = list(variants)
    devnull = open(os.devnull, "w")  # noqa: SIM115 - Powertools prints EMF to stdout
    real_stdout = sys.stdout
    samples: dict[str, list[float]] = {n: [] for n in names}
    try:
        sys.stdout = devnull
        checks = _check(variants, sink)
        for name in names:  # warm-up: caches, lazy imports, branch predictors
            per_call_us(variants[name], max(200, iterations // 4))
        for r in range(rounds):
            order = names[r % len(names) :] + names[: r % len(names)]
            for name in order:
                sink.clear()
                gc.collect()
                samples[name].append(per_call_us(variants[name], iterations))
            real_stdout.write(f"  round {r + 1}/{rounds} done\n")
            real_stdout.flush()
        parts = _in_context(variants[MAIN], iterations, max(3, rounds // 3))
    finally:
        sys.stdout = real_stdout
        devnull.close()
    med = {n: median(samples[n]) for n in names}
    floor, issue_floor = med[FLOOR], med[ISSUE_FLOOR]

    def per_round(base: str) -> dict[str, list[float]]:
        # Paired by round (both sides measured seconds apart): steadier than ratios of medians.
        return {n: [a / b for a, b in zip(samples[n], samples[base], strict=True)] for n in names}

    paired, paired_issue = per_round(FLOOR), per_round(ISSUE_FLOOR)
    rows = [
        [
            name,
            med[name],
            summary(samples[name])["p25"],
            summary(samples[name])["p75"],
            median(paired_issue[name]),
            median(paired[name]),
            checks[name],
        ]
        for name in names
    ]
    print_table(
        ["Lambda, in process", "µs/req", "p25", "p75", "x issue floor*", "x bare route*", "status"],
        rows,
        title=f"Warm POST {PATH}: median of {rounds} rounds x {iterations} requests",
    )
    print("* median over rounds of (variant ÷ that floor in the same round)")

    def step(a: str, b: str) -> float:
        return median([y - x for x, y in zip(samples[a], samples[b], strict=True)])

    decomposition = [{"step": label, "from": a, "to": b, "us": step(a, b)} for label, a, b in STEPS]
    metric_us = step(NO_METRIC, MAIN)
    total_us = step(FLOOR, MAIN)
    issue_floor_us = step(FLOOR, ISSUE_FLOOR)
    over_issue_us = step(ISSUE_FLOOR, MAIN)
    send_us = step(MODELS, ISSUE_FLOOR)
    print_table(
        ["full handler - bare route, step by step", "µs", "share"],
        [[d["step"], d["us"], f"{d['us'] / total_us:.0%}"] for d in decomposition]
        + [
            ["  of which the EventsAccepted metric (full vs metric off)", metric_us, ""],
            ["  (decorators on the bare route, no metric: info)", step(FLOOR, DECORATED), ""],
            ["full - bare route", total_us, "100%"],
            ["  of which issue floor - bare route (models + one send)", issue_floor_us, ""],
            ["  of which full - issue floor", over_issue_us, ""],
            ["  (issue floor - models variant: the send alone, info)", send_us, ""],
        ],
        title="Where the time over the bare route goes (median of per-round differences)",
    )
    part = {name: median(values) for name, values in parts.items()}
    print_table(
        ["inside the full handler, in context", "µs/req"],
        [[name, us] for name, us in part.items()],
        title="Pieces of the route's work and of the metric, timed in place",
    )
    overall = median(paired_issue[MAIN])
    print(
        f"analytics handler ÷ issue floor = {overall:.2f} (target ≤ {TARGET}, i.e. "
        f"≤ {TARGET * issue_floor:.0f} µs): {verdict(overall, TARGET)}"
    )
    print(f"analytics handler ÷ bare route = {median(paired[MAIN]):.2f} (information)")
    return {
        "iterations": iterations,
        "rounds": rounds,
        "floor": ISSUE_FLOOR,
        "full": MAIN,
        "us_per_request": {n: summary(samples[n]) for n in names},
        "ratio": overall,
        "ratio_vs_issue_floor": {n: median(paired_issue[n]) for n in names},
        "ratio_vs_issue_floor_spread": {n: summary(paired_issue[n]) for n in names},
        # vs the bare route (no validation, no queue): information, and the ladder's base.
        "ratio_vs_floor": {n: median(paired[n]) for n in names},
        "ratio_vs_floor_spread": {n: summary(paired[n]) for n in names},
        "ratio_of_medians": {n: ratio(med[n], floor) for n in names},
        "decomposition_us": decomposition,
        "metric_us": metric_us,
        "full_minus_floor_us": total_us,
        "issue_floor_minus_floor_us": issue_floor_us,
        "full_minus_issue_floor_us": over_issue_us,
        "send_us": send_us,
        "in_context_us": {name: summary(values) for name, values in parts.items()},
        "target": TARGET,
        "target_us": TARGET * issue_floor,
        "verdict": verdict(overall, TARGET),
        "status_codes": checks,
    }


# -- the container shape, in a child interpreter (ON_LAMBDA is fixed at import) ---------

CHILD_MARK = "BENCH_CHILD "


def container_child(quick: bool) -> dict[str, Any]:
    import asyncio
    import tempfile

    secret = "bench-secret-0123456789-abcdefghijklmnopqrstuvwxyz"
    data_dir = tempfile.mkdtemp(prefix="mysoulmate-bench-")
    for name in list(os.environ):
        if name.startswith("AWS_LAMBDA") or name in ("AUTH_MODE", "AWS_ENDPOINT_URL"):
            del os.environ[name]
    os.environ.update(
        {
            "STAGE": "dev",
            "AUTH_MODE": "jwt",
            "JWT_SECRET": secret,
            "STORAGE_BACKEND": "sqlite",
            "QUEUE_BACKEND": "sqs",
            "EVENTS_QUEUE_URL": QUEUE_URL,
            "WORKER_ENABLED": "false",
            "DATA_DIR": data_dir,
            "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
        }
    )
    import httpx
    import mysoulmate.runtime.backends
    from fastapi import FastAPI
    from mysoulmate.api.auth import issue_token
    from mysoulmate.core.settings import get_settings
    from mysoulmate.runtime.server import create_server_app

    sink: list[str] = []
    mysoulmate.runtime.backends.message_queue()._client = MemorySqsClient(sink)  # type: ignore[attr-defined]
    app = create_server_app()
    bare_app = FastAPI()

    @bare_app.post(PATH, status_code=202)
    async def bare_route() -> dict[str, str]:
        return {"status": "queued"}

    token = issue_token(get_settings(), "user-123", ["user"], 3600)
    headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
    iterations = 300 if quick else 1000
    rounds = 3 if quick else 7

    async def measure() -> dict[str, Any]:
        clients = {
            "floor: bare FastAPI via ASGITransport": httpx.AsyncClient(
                transport=httpx.ASGITransport(app=bare_app), base_url="http://bench"
            ),
            "container app (jwt HS256, threadpool)": httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://bench"
            ),
        }
        status = {}
        for name, client in clients.items():
            for _ in range(100):
                response = await client.post(PATH, content=TRACK_BODY, headers=headers)
            status[name] = response.status_code
        samples: dict[str, list[float]] = {n: [] for n in clients}
        for r in range(rounds):
            for name in list(clients)[r % 2 :] + list(clients)[: r % 2]:
                client = clients[name]
                gc.collect()
                start = time.perf_counter()
                for _ in range(iterations):
                    await client.post(PATH, content=TRACK_BODY, headers=headers)
                samples[name].append((time.perf_counter() - start) / iterations * 1e6)
                sink.clear()
        for client in clients.values():
            await client.aclose()
        return {"samples": samples, "status": status, "iterations": iterations, "rounds": rounds}

    return asyncio.run(measure())


def run_container(quick: bool) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POWERTOOLS_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(LAYER), str(ROOT), env.get("PYTHONPATH", "")])
    args = [sys.executable, "-m", "bench.warm", "--container-child"] + (
        ["--quick"] if quick else []
    )
    proc = subprocess.run(args, env=env, cwd=ROOT, capture_output=True, text=True, check=False)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith(CHILD_MARK)), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"container child failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    data = json.loads(line[len(CHILD_MARK) :])
    samples = data["samples"]
    names = list(samples)
    floor = median(samples[names[0]])
    print_table(
        ["container, httpx ASGITransport", "µs/req", "p25", "p75", "x floor", "status"],
        [
            [
                n,
                median(samples[n]),
                summary(samples[n])["p25"],
                summary(samples[n])["p75"],
                ratio(median(samples[n]), floor),
                data["status"][n],
            ]
            for n in names
        ],
        title=f"Container shape (info): median of {data['rounds']} rounds x {data['iterations']}",
    )
    return {
        "iterations": data["iterations"],
        "rounds": data["rounds"],
        "us_per_request": {n: summary(samples[n]) for n in names},
        "ratio_vs_floor": {n: ratio(median(samples[n]), floor) for n in names},
        "status_codes": data["status"],
    }


def run(quick: bool) -> dict[str, Any]:
    result = {"lambda": run_lambda(quick)}
    result["container"] = run_container(quick)
    return result


if __name__ == "__main__":
    if "--container-child" in sys.argv:
        out = container_child("--quick" in sys.argv)
        print(CHILD_MARK + json.dumps(out), flush=True)
    else:
        standalone_main("warm", run)
