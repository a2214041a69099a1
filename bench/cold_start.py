"""Cold start: a fresh interpreter per run, from process start to a handler ready to serve.

Each run is `python -c <code>` in a new process with the Lambda-like environment of
template.yaml. Inside the child, `time.perf_counter()` brackets three phases:

* **import**: the entry point `functions/<name>/app.py` loaded, `handler` defined (Lambda's
  init phase: module-level code, Logger and Metrics construction included);
* **+ client**: the boto3 client the function needs, which the package builds lazily
  (`mysoulmate.backends.message_queue()` / `event_store()`), so on AWS it lands in the first
  request instead of the init phase;
* **+ 1st request**: one invocation of `handler` with a minimal event. The AWS call it makes
  is answered by a `before-send` hook on the client (botocore's own event system), so the
  request serializer, endpoint rules and response parser all run, without a network.

The parent records the process wall time (spawn to exit, interpreter teardown included) and,
because both processes read the same CLOCK_MONOTONIC, "spawn → ready": from the parent's
spawn to the child's handler ready with its client.

Floors are measured the same way in the same run, interleaved with the functions (the order
rotates each round) so drift on a shared machine hits both sides:

* `python -c pass`;
* API floor: a bare FastAPI app with one `async def` route wrapped in `Mangum(lifespan="off")`,
  plus the one boto3 client the function needs (sqs for analytics, dynamodb for health);
* consumer floor: Powertools `BatchProcessor(event_type=EventType.SQS)` + a DynamoDB client.

Targets (issue): each function's import + client ≤ 1.3 x its floor's import + client.
"""

from __future__ import annotations

import json
import os
import py_compile
import re
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench._common import (
    FUNCTIONS,
    LAYER,
    QUEUE_URL,
    ROOT,
    TRACK_BODY,
    USER_CLAIMS,
    api_gateway_event,
    lambda_env,
    median,
    print_table,
    ratio,
    standalone_main,
    summary,
    verdict,
)

TARGET = 1.3
MARK = "BENCH_RESULT "

# Shared by every child after its handler is ready (so none of it is timed as import):
# a Lambda context, and a before-send hook that answers AWS calls without a network.
_CHILD_SUPPORT = """
class _Raw:
    def __init__(self, body):
        self._body = body
    def stream(self, **_):
        yield self._body
_REPLIES = {
    "SendMessage": b'{"MessageId":"00000000-0000-4000-8000-000000000000","MD5OfMessageBody":"0"}',
    "BatchWriteItem": b'{"UnprocessedItems":{}}',
}
def _answer(request, event_name, **_):
    from botocore.awsrequest import AWSResponse
    op = event_name.rsplit(".", 1)[-1]
    _calls.append(op)
    return AWSResponse(request.url, 200, {"content-type": "application/x-amz-json-1.0"},
                       _Raw(_REPLIES.get(op, b"{}")))
_calls = []
class _Ctx:
    function_name = "mysoulmate-bench"
    function_version = "$LATEST"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:mysoulmate-bench"
    aws_request_id = "bench-cold-request"
    log_group_name = "/aws/lambda/mysoulmate-bench"
    log_stream_name = "bench"
    def get_remaining_time_in_millis(self):
        return 30000
"""

_CHILD_REPORT = """
import json as _json
print({mark!r} + _json.dumps({{"t0": _t0, "t1": _t1, "t2": _t2, "t3s": _t3s, "t3": _t3,
      "status": _status, "aws_calls": _calls}}), flush=True)
"""


def _function_code(name: str, client_call: str, service: str, event: dict[str, Any]) -> str:
    path = FUNCTIONS / name / "app.py"
    return (
        textwrap.dedent(f"""\
        import time
        _t0 = time.perf_counter()
        import importlib.util, sys
        _spec = importlib.util.spec_from_file_location("app", {str(path)!r})
        _mod = importlib.util.module_from_spec(_spec)
        sys.modules["app"] = _mod
        _spec.loader.exec_module(_mod)
        handler = _mod.handler
        _t1 = time.perf_counter()
        import mysoulmate.backends
        _client = mysoulmate.backends.{client_call}._client
        _t2 = time.perf_counter()
        """)
        + textwrap.dedent(_CHILD_SUPPORT)
        + textwrap.dedent(f"""\
        _client.meta.events.register("before-send.{service}", _answer)
        _event = {event!r}
        _t3s = time.perf_counter()
        _response = handler(_event, _Ctx())
        _t3 = time.perf_counter()
        _status = _response.get("statusCode", len(_response.get("batchItemFailures", [])))
        """)
        + _CHILD_REPORT.format(mark=MARK)
    )


def _api_floor_code(service: str, method: str, path: str, event: dict[str, Any]) -> str:
    if service == "sqs":
        route = textwrap.dedent(f"""\
            @app.post({path!r})
            async def route(request: Request):
                body = (await request.body()).decode()
                client.send_message(QueueUrl={QUEUE_URL!r}, MessageBody=body)
                return {{"status": "queued"}}
            """)
    else:
        route = textwrap.dedent(f"""\
            @app.{method.lower()}({path!r})
            async def route():
                return {{"status": "ok"}}
            """)
    return (
        textwrap.dedent("""\
        import time
        _t0 = time.perf_counter()
        from fastapi import FastAPI, Request
        from mangum import Mangum
        app = FastAPI()
        """)
        + route
        + textwrap.dedent(f"""\
        handler = Mangum(app, lifespan="off")
        _t1 = time.perf_counter()
        import boto3
        client = boto3.client({service!r}, region_name="us-east-1")
        _t2 = time.perf_counter()
        """)
        + textwrap.dedent(_CHILD_SUPPORT)
        + textwrap.dedent(f"""\
        client.meta.events.register("before-send.{service}", _answer)
        _event = {event!r}
        _t3s = time.perf_counter()
        _response = handler(_event, _Ctx())
        _t3 = time.perf_counter()
        _status = _response["statusCode"]
        """)
        + _CHILD_REPORT.format(mark=MARK)
    )


def _consumer_floor_code(event: dict[str, Any]) -> str:
    return (
        textwrap.dedent("""\
        import time
        _t0 = time.perf_counter()
        from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType
        processor = BatchProcessor(event_type=EventType.SQS)
        _t1 = time.perf_counter()
        import boto3
        client = boto3.client("dynamodb", region_name="us-east-1")
        _t2 = time.perf_counter()
        """)
        + textwrap.dedent(_CHILD_SUPPORT)
        + textwrap.dedent(f"""\
        client.meta.events.register("before-send.dynamodb", _answer)
        import json
        def handler(event, context):
            items = []
            def record_handler(record):
                doc = json.loads(record.body)
                items.append({{"PutRequest": {{"Item": {{
                    "pk": {{"S": "USER#" + doc["userId"]}},
                    "sk": {{"S": "EVENT#" + doc["messageId"]}},
                    "doc": {{"S": record.body}}}}}}}})
            with processor(event["Records"], record_handler, lambda_context=context):
                processor.process()
                client.batch_write_item(RequestItems={{"t": items}})
            return processor.response()
        _event = {event!r}
        _t3s = time.perf_counter()
        _response = handler(_event, _Ctx())
        _t3 = time.perf_counter()
        _status = len(_response["batchItemFailures"])
        """)
        + _CHILD_REPORT.format(mark=MARK)
    )


def _sqs_event() -> dict[str, Any]:
    body = json.dumps(
        {
            "v": 1,
            "type": "track",
            "messageId": "m-cold-1",
            "userId": "user-123",
            "event": "Song Played",
            "properties": {"songId": "s-1"},
            "timestamp": "2026-01-01T00:00:00Z",
            "receivedAt": "2026-01-01T00:00:01Z",
        }
    )
    return {
        "Records": [
            {
                "messageId": "0c1b2a3d-0000-4000-8000-000000000001",
                "receiptHandle": "rh",
                "body": body,
                "attributes": {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": "1767225600000",
                    "SenderId": "123456789012",
                    "ApproximateFirstReceiveTimestamp": "1767225600001",
                },
                "messageAttributes": {},
                "md5OfBody": "0",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:q",
                "awsRegion": "us-east-1",
            }
        ]
    }


def scenarios() -> dict[str, dict[str, Any]]:
    """name → how to run it; `floor` names the scenario each function is compared with."""
    track = api_gateway_event("POST", "/api/v1/analytics/track", TRACK_BODY, USER_CLAIMS)
    health = api_gateway_event("GET", "/health")
    sqs = _sqs_event()
    return {
        "python -c pass": {"code": "pass", "env": "analytics", "kind": "interpreter"},
        "floor: FastAPI+Mangum+sqs": {
            "code": _api_floor_code("sqs", "POST", "/api/v1/analytics/track", track),
            "env": "analytics",
            "kind": "floor",
        },
        "analytics": {
            "code": _function_code("analytics", "message_queue()", "sqs", track),
            "env": "analytics",
            "kind": "function",
            "floor": "floor: FastAPI+Mangum+sqs",
        },
        "floor: FastAPI+Mangum+dynamodb": {
            "code": _api_floor_code("dynamodb", "GET", "/health", health),
            "env": "health",
            "kind": "floor",
        },
        "health": {
            "code": _function_code("health", "event_store()", "dynamodb", health),
            "env": "health",
            "kind": "function",
            "floor": "floor: FastAPI+Mangum+dynamodb",
        },
        "floor: BatchProcessor+dynamodb": {
            "code": _consumer_floor_code(sqs),
            "env": "consumer",
            "kind": "floor",
        },
        "consumer": {
            "code": _function_code("consumer", "event_store()", "dynamodb", sqs),
            "env": "consumer",
            "kind": "function",
            "floor": "floor: BatchProcessor+dynamodb",
        },
    }


def _child_env(function: str, layer: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POWERTOOLS_"))}
    env.update(lambda_env(function, layer))
    return env


def run_once(code: str, env: dict[str, str]) -> dict[str, float]:
    """One fresh interpreter; returns milliseconds for each phase."""
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    end = time.perf_counter()
    out: dict[str, float] = {"wall": (end - start) * 1e3}
    if proc.returncode != 0:
        raise RuntimeError(f"cold-start child failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    if code == "pass":
        return out
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith(MARK)), None)
    if line is None:
        raise RuntimeError(f"no result from child:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    data = json.loads(line[len(MARK) :])
    out["import"] = (data["t1"] - data["t0"]) * 1e3
    out["client"] = (data["t2"] - data["t1"]) * 1e3
    out["ready"] = out["import"] + out["client"]
    out["first_request"] = (data["t3"] - data["t3s"]) * 1e3
    out["ready_plus_first"] = out["ready"] + out["first_request"]
    out["spawn_to_ready"] = (data["t2"] - start) * 1e3
    out["spawn_to_t0"] = (data["t0"] - start) * 1e3
    out["status"] = data["status"]
    out["aws_calls"] = len(data["aws_calls"])
    return out


def importtime(function: str, runs: int = 3, top: int = 15) -> dict[str, Any]:
    """`python -X importtime` of the function's entry point: median per module over runs."""
    path = FUNCTIONS / function / "app.py"
    code = (
        "import importlib.util, sys\n"
        f"s = importlib.util.spec_from_file_location('app', {str(path)!r})\n"
        "m = importlib.util.module_from_spec(s); sys.modules['app'] = m; s.loader.exec_module(m)\n"
    )
    cumulative: dict[str, list[int]] = defaultdict(list)
    self_us: dict[str, list[int]] = defaultdict(list)
    depth: dict[str, int] = {}
    for _ in range(runs):
        proc = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", code],
            env=_child_env(function),
            capture_output=True,
            text=True,
            check=True,
        )
        for line in proc.stderr.splitlines():
            if not line.startswith("import time:") or "self [us]" in line:
                continue
            own, cum, raw = line.split(":", 1)[1].split("|")
            name = raw.strip()
            cumulative[name].append(int(cum))
            self_us[name].append(int(own))
            depth[name] = (len(raw) - len(raw.lstrip()) - 1) // 2
    med_cum = {n: median(v) / 1e3 for n, v in cumulative.items()}
    med_self = {n: median(v) / 1e3 for n, v in self_us.items()}
    top_cum = sorted(med_cum.items(), key=lambda kv: kv[1], reverse=True)[:top]
    by_package: dict[str, float] = defaultdict(float)
    for name, ms in med_self.items():
        by_package[name.split(".")[0]] += ms
    top_packages = sorted(by_package.items(), key=lambda kv: kv[1], reverse=True)[:top]
    return {
        "function": function,
        "runs": runs,
        "total_ms": sum(med_self.values()),
        "top_cumulative_ms": [
            {
                "module": n,
                "cumulative_ms": round(ms, 1),
                "self_ms": round(med_self[n], 1),
                "depth": depth.get(n, 0),
            }
            for n, ms in top_cum
        ],
        "self_ms_by_top_level_package": [
            {"package": n, "self_ms": round(ms, 1)} for n, ms in top_packages
        ],
        "mysoulmate_modules": sorted(n for n in med_self if n.startswith("mysoulmate")),
    }


def build_layer(target: Path, *, compiled: bool) -> Path:
    """A Lambda-layer-like `python/` dir: the runtime requirements and the package, copied
    from source the way `sam build` lays them out (aws-lambda-builders unpacks wheels and
    copies sources without any .pyc), optionally byte-compiled afterwards."""
    import compileall
    import importlib.metadata
    import shutil

    python = target / "python"
    python.mkdir(parents=True)
    requirements = LAYER / "requirements.txt"
    names = [
        re.split(r"[=<>!~\[; ]", line.strip(), maxsplit=1)[0]
        for line in requirements.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    for name in names:
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        for file in dist.files or ():
            parts = file.parts
            if not parts or "__pycache__" in parts or file.suffix == ".pyc":
                continue
            if parts[0].endswith(".dist-info") or parts[0] == ".." or parts[0] == "bin":
                continue
            source = Path(str(file.locate()))
            if source.is_file():
                dest = python.joinpath(*parts)
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, dest)
    shutil.copytree(
        LAYER / "mysoulmate",
        python / "mysoulmate",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    if compiled:
        compileall.compile_dir(
            python,
            quiet=1,
            workers=0,
            invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
        )
    return python


def bytecode(rounds: int) -> dict[str, Any]:
    """Analytics cold start from a layer as `sam build` makes it (no .pyc, and /opt is
    read-only on Lambda, so nothing is ever cached) vs the same layer byte-compiled."""
    spec = scenarios()["analytics"]
    with tempfile.TemporaryDirectory(prefix="mysoulmate-layer-") as tmp:
        layers = {
            "layer as sam build makes it (no .pyc)": build_layer(Path(tmp) / "a", compiled=False),
            "same layer + compileall": build_layer(Path(tmp) / "b", compiled=True),
        }
        envs = {}
        for name, python in layers.items():
            env = _child_env("analytics", python)
            env["PYTHONPATH"] = os.pathsep.join([str(python), str(ROOT)])
            env["PYTHONDONTWRITEBYTECODE"] = "1"  # read-only /opt: nothing gets written
            envs[name] = env
        samples: dict[str, list[dict[str, float]]] = {n: [] for n in layers}
        for name in layers:
            check = run_once(spec["code"], envs[name])
            if check.get("status") != 202:
                raise RuntimeError(f"{name}: first request answered {check.get('status')}")
        for r in range(rounds):
            for name in layers if r % 2 == 0 else list(reversed(layers)):
                samples[name].append(run_once(spec["code"], envs[name]))
        where = {name: _child_json_module_file(envs[name]) for name in layers}
    out: dict[str, Any] = {}
    for name in layers:
        out[name] = {m: summary([x[m] for x in samples[name]]) for m in ("import", "ready", "wall")}
        out[name]["mysoulmate_loaded_from"] = where[name]
    return out


def _child_json_module_file(env: dict[str, str]) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", "import mysoulmate, fastapi; print(mysoulmate.__file__)"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.stdout.strip()


def run(quick: bool) -> dict[str, Any]:
    rounds = 5 if quick else 11
    specs = scenarios()
    names = list(specs)
    envs = {n: _child_env(s["env"]) for n, s in specs.items()}
    print(f"cold start: {rounds} rounds x {len(names)} scenarios (fresh interpreter each)")
    for name in names:  # warm-up: write .pyc files, fill the page cache
        run_once(specs[name]["code"], envs[name])
    samples: dict[str, list[dict[str, float]]] = {n: [] for n in names}
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        if r % 2:
            order.reverse()
        for name in order:
            samples[name].append(run_once(specs[name]["code"], envs[name]))
        print(f"  round {r + 1}/{rounds} done", flush=True)

    metrics = (
        "import",
        "client",
        "ready",
        "first_request",
        "ready_plus_first",
        "spawn_to_ready",
        "wall",
    )
    results: dict[str, Any] = {}
    for name in names:
        per_metric = {
            m: summary([s[m] for s in samples[name] if m in s])
            for m in metrics
            if any(m in s for s in samples[name])
        }
        statuses = sorted({str(s.get("status")) for s in samples[name] if "status" in s})
        results[name] = {
            "kind": specs[name]["kind"],
            "floor": specs[name].get("floor"),
            "ms": per_metric,
            "first_request_status": statuses,
            "aws_calls_in_first_request": sorted(
                {s.get("aws_calls") for s in samples[name] if "aws_calls" in s}
            ),
        }

    def med(name: str, metric: str) -> float:
        entry = results[name]["ms"].get(metric)
        return entry["median"] if entry else float("nan")

    rows = []
    for name in names:
        rows.append(
            [
                name,
                med(name, "import"),
                med(name, "client"),
                med(name, "ready"),
                med(name, "first_request"),
                med(name, "spawn_to_ready"),
                med(name, "wall"),
                "/".join(results[name]["first_request_status"]),
            ]
        )
    print_table(
        [
            "scenario (median ms)",
            "import",
            "+client",
            "ready",
            "1st req",
            "spawn→ready",
            "wall",
            "status",
        ],
        rows,
        title=f"Cold start, median of {rounds} fresh interpreters (ms)",
    )

    comparisons: dict[str, Any] = {}
    rows = []
    for name in names:
        floor = specs[name].get("floor")
        if not floor:
            continue
        comp = {
            m: ratio(med(name, m), med(floor, m))
            for m in ("import", "ready", "ready_plus_first", "spawn_to_ready", "wall")
        }
        comp["target"] = TARGET
        comp["target_metric"] = "ready"
        comp["verdict"] = verdict(comp["ready"], TARGET)
        comp["extra_ms_ready"] = med(name, "ready") - med(floor, "ready")
        comparisons[name] = comp
        rows.append(
            [
                name,
                comp["import"],
                comp["ready"],
                comp["ready_plus_first"],
                comp["spawn_to_ready"],
                comp["wall"],
                comp["extra_ms_ready"],
                comp["verdict"],
            ]
        )
    print_table(
        [
            "function ÷ floor",
            "import",
            "ready",
            "ready+1st",
            "spawn→ready",
            "wall",
            "+ms ready",
            f"target ready≤{TARGET}x",
        ],
        rows,
        title="Ratios against the floor measured in the same run",
    )

    print("\npython -X importtime, analytics entry point (median of 3 runs):")
    imports = {fn: importtime(fn, runs=3) for fn in ("analytics", "health", "consumer")}
    print_table(
        ["module (analytics)", "cumulative ms", "self ms"],
        [
            ["  " * e["depth"] + e["module"], e["cumulative_ms"], e["self_ms"]]
            for e in imports["analytics"]["top_cumulative_ms"]
        ],
        title="Top 15 cumulative imports",
    )
    print_table(
        ["top-level package", "self ms (sum)"],
        [
            [e["package"], e["self_ms"]]
            for e in imports["analytics"]["self_ms_by_top_level_package"]
        ],
        title="Import time by top-level package (analytics)",
    )

    bytecode_rounds = 3 if quick else 5
    print(f"\nBytecode: analytics from a layer without .pyc vs compiled ({bytecode_rounds} rounds)")
    layer_runs = bytecode(bytecode_rounds)
    print_table(
        ["analytics from a built layer", "import ms", "ready ms", "wall ms"],
        [
            [name, v["import"]["median"], v["ready"]["median"], v["wall"]["median"]]
            for name, v in layer_runs.items()
        ],
    )

    return {
        "rounds": rounds,
        "target": TARGET,
        "target_metric": "ready = import + client construction (in-child perf_counter)",
        "scenarios": results,
        "comparisons": comparisons,
        "importtime": imports,
        "bytecode": layer_runs,
    }


if __name__ == "__main__":
    standalone_main("cold_start", run)
