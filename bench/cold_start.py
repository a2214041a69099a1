"""Cold start: a fresh interpreter per run, from process start to a handler ready to serve.

Each run is `python -c <code>` in a new process with the Lambda-like environment of
template.yaml, on the layer as `make build` ships it: an empty virtualenv of the same CPython
with only a copy of the layer on PYTHONPATH (`layers/common/requirements.txt` and `mysoulmate`
in a `python/` dir, byte-compiled, nothing written at run time; see `Runtime`). Each
function's modules are checked to come from that copy or the stdlib only. Inside the child,
`time.perf_counter()` brackets the phases:

* **init**: the entry point `functions/<name>/app.py` loaded, `handler` defined (Lambda's
  init phase: module-level code, Logger and Metrics construction included). The entry points
  build their AWS clients here (`message_queue()` and `event_store()` for analytics and
  health, `event_store()` for the consumer); the package's `aws_client` factory is wrapped
  as soon as app.py has imported `mysoulmate.runtime.backends` (an import hook, so nothing is
  imported outside app.py's `lambda_init()`), so the time spent building each client is
  known (**clients**);
* **+ client**: fetching the function's client from the cached factory after init, which
  is now ~0 ms (it was the lazy construction before the entry points built clients at init);
* **ready** = init + client, the target figure; **code** = ready - clients;
* **1st request**: one invocation of `handler` with a minimal event. The AWS call it makes
  is answered by a `before-send` hook on the client (botocore's own event system), so the
  request serializer, endpoint rules and response parser all run, without a network.

The parent records the process wall time (spawn to exit, interpreter teardown included) and,
because both processes read the same CLOCK_MONOTONIC, "spawn → ready": from the parent's
spawn to the child's handler ready with its client.

Floors are measured the same way in the same run, interleaved with the functions (the order
rotates each round) so drift on a shared machine hits both sides. Each floor builds its one
client after its import (the "+ client" phase), so "ready" compares like with like:

* `python -c pass`;
* API floor: a bare FastAPI app with one `async def` route wrapped in `Mangum(lifespan="off")`,
  plus one boto3 client (sqs for analytics, dynamodb for health);
* consumer floor: Powertools `BatchProcessor(event_type=EventType.SQS)` + a DynamoDB client.

* i18n floor: the same FastAPI app and Mangum, no boto3 (i18n makes no AWS call); the docs
  function is compared with it too (no AWS call either; its init builds the OpenAPI document).

Target (issue): each function's ready ≤ 1.3 x its floor's ready.

Each function is also measured with the observability pieces beyond today's Powertools
Logger + Metrics (`VARIANTS`): + Tracer (the environment Lambda gives with active tracing),
+ Sentry (a DSN at 127.0.0.1 where nothing listens), and all on; target: all on ≤ 1.5 x the
floor. The table "Observability pieces" gives each piece's cost as the median per-round
difference from the function as it is today.

Also: analytics and its floor in the project's dev .venv, as this benchmark measured them
before (info); `python -X importtime` of each entry point; and the analytics cold start from
the layer without `.pyc` files vs the same layer byte-compiled (what the `compileall` step
of `make build` buys on Lambda's read-only /opt).
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
from dataclasses import dataclass
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
    spread,
    sqs_event,
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
      "status": _status, "aws_calls": _calls, "clients": globals().get("_clients")}}),
      flush=True)
"""


def _function_code(
    name: str, client_call: str | None, service: str | None, event: dict[str, Any]
) -> str:
    """``client_call`` None: the function builds no AWS client (i18n, docs)."""
    path = FUNCTIONS / name / "app.py"
    fetch = (
        "import mysoulmate.runtime.backends\n"
        f"_client = mysoulmate.runtime.backends.{client_call}._client\n"
        if client_call
        else ""
    )
    register = (
        f'_client.meta.events.register("before-send.{service}", _answer)\n' if client_call else ""
    )
    return (
        textwrap.dedent(f"""\
        import time
        _t0 = time.perf_counter()
        # Time each AWS client the package builds (app.py builds them at import): the
        # factory is wrapped as soon as mysoulmate.runtime.backends has loaded, wherever app.py
        # imports it. Not by importing it here first: that would run pydantic's import
        # outside app.py's `with lambda_init():`, with the garbage collector on (8-15 ms of
        # young collections Lambda does not pay). The hook costs microseconds.
        import importlib.machinery, importlib.util, sys
        _clients = []
        def _wrap(backends):
            _aws_client = backends.aws_client
            def _timed_client(service):
                _s = time.perf_counter()
                _c = _aws_client(service)
                _clients.append([service, (time.perf_counter() - _s) * 1e3])
                return _c
            backends.aws_client = _timed_client
        class _WrapBackends:
            def find_spec(self, name, path, target=None):
                if name != "mysoulmate.runtime.backends":
                    return None
                sys.meta_path.remove(self)
                spec = importlib.machinery.PathFinder.find_spec(name, path)
                _exec = spec.loader.exec_module
                def _exec_and_wrap(module):
                    _exec(module)
                    _wrap(module)
                spec.loader.exec_module = _exec_and_wrap
                return spec
        sys.meta_path.insert(0, _WrapBackends())
        _spec = importlib.util.spec_from_file_location("app", {str(path)!r})
        _mod = importlib.util.module_from_spec(_spec)
        sys.modules["app"] = _mod
        _spec.loader.exec_module(_mod)
        handler = _mod.handler
        _t1 = time.perf_counter()
        """)
        + fetch
        + "_t2 = time.perf_counter()\n"
        + textwrap.dedent(_CHILD_SUPPORT)
        + register
        + textwrap.dedent(f"""\
        _event = {event!r}
        _t3s = time.perf_counter()
        _response = handler(_event, _Ctx())
        _t3 = time.perf_counter()
        _status = _response.get("statusCode", len(_response.get("batchItemFailures", [])))
        """)
        + _CHILD_REPORT.format(mark=MARK)
    )


def _api_floor_code(service: str | None, method: str, path: str, event: dict[str, Any]) -> str:
    """``service`` None: the plain FastAPI + Mangum floor, no boto3 (for i18n)."""
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
        + textwrap.dedent("""\
        handler = Mangum(app, lifespan="off")
        _t1 = time.perf_counter()
        """)
        + (
            f"import boto3\nclient = boto3.client({service!r}, region_name='us-east-1')\n"
            if service
            else ""
        )
        + "_t2 = time.perf_counter()\n"
        + textwrap.dedent(_CHILD_SUPPORT)
        + (f'client.meta.events.register("before-send.{service}", _answer)\n' if service else "")
        + textwrap.dedent(f"""\
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
    return sqs_event([body])


# The observability pieces each function is measured with, on top of what it has today
# (Powertools Logger + Metrics, always on). Environment as Lambda gives a function with
# `Tracing: Active` (the runtime sets LAMBDA_TASK_ROOT and, per invocation, a sampled
# _X_AMZN_TRACE_ID; the daemon address points at a port where nothing listens, UDP does not
# care), and a Sentry DSN at 127.0.0.1 where nothing listens (init must not block; a
# successful request sends nothing).
TRACER_ENV = {
    "LAMBDA_TASK_ROOT": "/var/task",
    "_X_AMZN_TRACE_ID": (
        "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
    ),
    "AWS_XRAY_DAEMON_ADDRESS": "127.0.0.1:2000",
    "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
}
SENTRY_ENV = {"SENTRY_DSN": "http://0123456789abcdef0123456789abcdef@127.0.0.1:9/1"}
VARIANTS: dict[str, dict[str, str]] = {
    "+ tracer": TRACER_ENV,
    "+ sentry": SENTRY_ENV,
    "all on": {**TRACER_ENV, **SENTRY_ENV},
}
VARIANT_TARGET = 1.5  # issue: everything on ≤ 1.5 x the floor
I18N_PATH = "/api/v1/i18n/translate"
DOCS_PATH = "/api-docs.json"  # the document init built: the first request only sends it


def _i18n_event() -> dict[str, Any]:
    event = api_gateway_event("GET", I18N_PATH)
    event["rawQueryString"] = "key=common.save"
    event["queryStringParameters"] = {"key": "common.save"}
    return event


def scenarios() -> dict[str, dict[str, Any]]:
    """name → how to run it; `floor` names the scenario each function is compared with,
    `runtime` where it runs (see `Runtime`), `extra_env` what a variant adds to the
    function's environment (`base`: the function as it is today)."""
    track = api_gateway_event("POST", "/api/v1/analytics/track", TRACK_BODY, USER_CLAIMS)
    health = api_gateway_event("GET", "/health")
    i18n = _i18n_event()
    docs = api_gateway_event("GET", DOCS_PATH)
    sqs = _sqs_event()
    sqs_floor = _api_floor_code("sqs", "POST", "/api/v1/analytics/track", track)
    analytics = _function_code("analytics", "message_queue()", "sqs", track)
    base = _base_scenarios(track, health, i18n, sqs, sqs_floor, analytics)
    # docs makes no AWS call and builds no client: the i18n floor (FastAPI + Mangum) is its own.
    base["docs"] = {
        "code": _function_code("docs", None, None, docs),
        "env": "docs",
        "kind": "function",
        "floor": "floor: FastAPI+Mangum",
    }
    for function in FUNCTION_NAMES:
        for variant, extra in VARIANTS.items():
            base[f"{function} {variant}"] = {
                **base[function],
                "kind": "variant",
                "base": function,
                "variant": variant,
                "extra_env": extra,
            }
    return base


def _base_scenarios(
    track: dict[str, Any],
    health: dict[str, Any],
    i18n: dict[str, Any],
    sqs: dict[str, Any],
    sqs_floor: str,
    analytics: str,
) -> dict[str, dict[str, Any]]:
    return {
        "python -c pass": {"code": "pass", "env": "analytics", "kind": "interpreter"},
        "floor: FastAPI+Mangum+sqs": {"code": sqs_floor, "env": "analytics", "kind": "floor"},
        "analytics": {
            "code": analytics,
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
        # i18n makes no AWS call and builds no client: its floor is FastAPI + Mangum alone.
        "floor: FastAPI+Mangum": {
            "code": _api_floor_code(None, "GET", I18N_PATH, i18n),
            "env": "i18n",
            "kind": "floor",
        },
        "i18n": {
            "code": _function_code("i18n", None, None, i18n),
            "env": "i18n",
            "kind": "function",
            "floor": "floor: FastAPI+Mangum",
        },
        # For information, as measured before: the project's dev .venv, where aws-sam-cli
        # brings awscrt and pyOpenSSL, which botocore imports when it finds them.
        DEV_FLOOR: {"code": sqs_floor, "env": "analytics", "kind": "floor", "runtime": "dev"},
        "analytics (dev .venv)": {
            "code": analytics,
            "env": "analytics",
            "kind": "info",
            "floor": DEV_FLOOR,
            "runtime": "dev",
        },
    }


DEV_FLOOR = "floor: FastAPI+Mangum+sqs (dev .venv)"


@dataclass(frozen=True)
class Runtime:
    """Where a child runs: which interpreter, which directory holds the packages.

    * `layer` (the default, what the targets are measured on): an empty virtualenv of the
      same CPython, with only the layer on PYTHONPATH: `layers/common/requirements.txt`
      and `mysoulmate` copied into a `python/` dir, byte-compiled as `make build` does, and
      nothing written at run time (`/opt` is read-only on Lambda). No other package is
      importable, as on Lambda.
    * `layer-no-pyc`: the same directory before `compileall`, as `sam build` alone made it.
    * `dev`: the project's `.venv` (the package through its editable install), as the
      benchmark measured before; its extra packages (awscrt, pyOpenSSL, cryptography, from
      aws-sam-cli) are imported by botocore when present.
    """

    python: str
    pythonpath: str
    dont_write_bytecode: bool


def _child_env(function: str, runtime: Runtime) -> dict[str, str]:
    drop = (
        "AWS_",
        "POWERTOOLS_",
        "VIRTUAL_ENV",
        "PYTHONDONTWRITEBYTECODE",
        "LAMBDA_TASK_ROOT",
        "_X_AMZN_TRACE_ID",
        "SENTRY_",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(lambda_env(function))
    env["PYTHONPATH"] = runtime.pythonpath
    if runtime.dont_write_bytecode:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def make_runtimes(tmp: Path) -> dict[str, Runtime]:
    """The `Runtime`s above, built under ``tmp`` (a virtualenv and two layer copies)."""
    venv = tmp / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120
    )
    clean_python = str(venv / "bin" / "python")
    plain = build_layer(tmp / "plain", compiled=False)
    compiled = build_layer(tmp / "compiled", compiled=True)
    dev_path = os.pathsep.join(
        p for p in (str(LAYER), str(ROOT), os.environ.get("PYTHONPATH", "")) if p
    )
    return {
        "layer": Runtime(clean_python, str(compiled), dont_write_bytecode=True),
        "layer-no-pyc": Runtime(clean_python, str(plain), dont_write_bytecode=True),
        "dev": Runtime(sys.executable, dev_path, dont_write_bytecode=False),
    }


_WHAT_LOADED = """
import importlib.util, json, sys, sysconfig
spec = importlib.util.spec_from_file_location("app", sys.argv[1])
mod = importlib.util.module_from_spec(spec); sys.modules["app"] = mod; spec.loader.exec_module(mod)
stdlib = (sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["platstdlib"])
files = {n: getattr(m, "__file__", None) for n, m in list(sys.modules.items())}
print(json.dumps({
    "mysoulmate": sys.modules["mysoulmate"].__file__,
    "outside_layer_and_stdlib": sorted(
        n for n, f in files.items()
        if f and not f.startswith(stdlib) and not f.startswith(sys.argv[2])
        and not f.startswith(sys.argv[3])),
    "top_level": sorted({n.split(".")[0] for n in sys.modules if not n.startswith("_")}),
}))
"""


def what_loaded(
    function: str, runtime: Runtime, extra_env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Where the function's modules come from in ``runtime``: for `layer`, only the layer
    copy, the stdlib and functions/ (checked, so nothing from the dev .venv leaks in)."""
    proc = subprocess.run(
        [
            runtime.python,
            "-c",
            _WHAT_LOADED,
            str(FUNCTIONS / function / "app.py"),
            runtime.pythonpath.split(os.pathsep)[0],
            str(FUNCTIONS),
        ],
        env={**_child_env(function, runtime), **(extra_env or {})},
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode:
        raise RuntimeError(f"{function} does not import in {runtime}:\n{proc.stderr[-3000:]}")
    return dict(json.loads(proc.stdout))


def run_once(code: str, env: dict[str, str], python: str = sys.executable) -> dict[str, float]:
    """One fresh interpreter; returns milliseconds for each phase."""
    start = time.perf_counter()
    proc = subprocess.run(
        [python, "-c", code], env=env, capture_output=True, text=True, check=False
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
    # AWS client construction (boto3 import included) wherever it happens: inside the
    # functions' init, timed around the package's factory; after init for the floors.
    built = data.get("clients")
    if built:
        out["clients"] = sum(ms for _, ms in built)
        for service, ms in built:
            out[f"client_{service}"] = ms
    else:
        out["clients"] = out["client"]
    out["code"] = out["ready"] - out["clients"]
    out["first_request"] = (data["t3"] - data["t3s"]) * 1e3
    out["ready_plus_first"] = out["ready"] + out["first_request"]
    out["spawn_to_ready"] = (data["t2"] - start) * 1e3
    out["spawn_to_t0"] = (data["t0"] - start) * 1e3
    out["status"] = data["status"]
    out["aws_calls"] = len(data["aws_calls"])
    return out


def importtime(
    function: str, runtime: Runtime, runs: int = 3, top: int = 15, code: str | None = None
) -> dict[str, Any]:
    """`python -X importtime` of the function's entry point (or of ``code``, with that
    function's environment): median per module over runs."""
    path = FUNCTIONS / function / "app.py"
    code = code or (
        "import importlib.util, sys\n"
        f"s = importlib.util.spec_from_file_location('app', {str(path)!r})\n"
        "m = importlib.util.module_from_spec(s); sys.modules['app'] = m; s.loader.exec_module(m)\n"
    )
    cumulative: dict[str, list[int]] = defaultdict(list)
    self_us: dict[str, list[int]] = defaultdict(list)
    depth: dict[str, int] = {}
    for _ in range(runs):
        proc = subprocess.run(
            [runtime.python, "-X", "importtime", "-c", code],
            env=_child_env(function, runtime),
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
        "self_ms_by_package_all": {n: round(ms, 2) for n, ms in by_package.items()},
        "mysoulmate_modules": sorted(n for n in med_self if n.startswith("mysoulmate")),
        "loads": {
            package: any(n == package or n.startswith(package + ".") for n in med_self)
            for package in ("fastapi", "starlette", "anyio", "mangum", "pydantic_settings")
        },
    }


def _package_diff(function: dict[str, Any], floor: dict[str, Any], top: int = 10) -> dict[str, Any]:
    """Import self time by top-level package, function minus floor, largest first."""
    f, b = function["self_ms_by_package_all"], floor["self_ms_by_package_all"]
    rows = {
        p: {
            "function": f.get(p, 0.0),
            "floor": b.get(p, 0.0),
            "difference": f.get(p, 0.0) - b.get(p, 0.0),
        }
        for p in set(f) | set(b)
    }
    ranked = sorted(rows.items(), key=lambda kv: kv[1]["difference"], reverse=True)
    return {
        "top": ranked[:top],
        "function_total": sum(f.values()),
        "floor_total": sum(b.values()),
        "difference": sum(f.values()) - sum(b.values()),
    }


def build_layer(target: Path, *, compiled: bool) -> Path:
    """A Lambda-layer-like `python/` dir: the runtime requirements and the package, copied
    from the dev .venv the way `sam build` lays them out (aws-lambda-builders unpacks wheels,
    .dist-info included, and copies sources without any .pyc), optionally byte-compiled
    afterwards as `make build` does."""
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
            if parts[0] == ".." or parts[0] == "bin":
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


def bytecode(rounds: int, runtimes: dict[str, Runtime]) -> dict[str, Any]:
    """Analytics cold start from the layer as `sam build` makes it (no .pyc, and /opt is
    read-only on Lambda, so nothing is ever cached) vs the same layer byte-compiled."""
    spec = scenarios()["analytics"]
    layers = {
        "layer as sam build makes it (no .pyc)": runtimes["layer-no-pyc"],
        "same layer + compileall (make build)": runtimes["layer"],
    }
    envs = {name: _child_env("analytics", rt) for name, rt in layers.items()}
    samples: dict[str, list[dict[str, float]]] = {n: [] for n in layers}
    for name, rt in layers.items():
        check = run_once(spec["code"], envs[name], rt.python)
        if check.get("status") != 202:
            raise RuntimeError(f"{name}: first request answered {check.get('status')}")
    for r in range(rounds):
        for name in layers if r % 2 == 0 else list(reversed(layers)):
            samples[name].append(run_once(spec["code"], envs[name], layers[name].python))
    out: dict[str, Any] = {}
    for name in layers:
        out[name] = {m: summary([x[m] for x in samples[name]]) for m in ("import", "ready", "wall")}
    return out


def _observability_costs(
    specs: dict[str, dict[str, Any]],
    samples: dict[str, list[dict[str, float]]],
    comparisons: dict[str, Any],
) -> dict[str, Any]:
    """What each observability piece adds to a function's ready time: median over rounds of
    (variant - the function as it is today), in ms and as a share of the floor; and the
    variant's ready ÷ floor against the target."""
    out: dict[str, Any] = {}
    rows = []
    for function in FUNCTION_NAMES:
        floor = specs[function]["floor"]
        entry: dict[str, Any] = {
            "floor": floor,
            "floor_ready_ms": median([x["ready"] for x in samples[floor]]),
            "today_ready_ms": median([x["ready"] for x in samples[function]]),
            "today_vs_floor": comparisons[function]["ready"],
        }
        row: list[Any] = [function, entry["floor_ready_ms"], entry["today_ready_ms"]]
        row.append(entry["today_vs_floor"])
        for variant in VARIANTS:
            name = f"{function} {variant}"
            trios = list(zip(samples[name], samples[function], samples[floor], strict=True))
            added = [v["ready"] - b["ready"] for v, b, _ in trios]
            added_share = [(v["ready"] - b["ready"]) / f["ready"] for v, b, f in trios]
            p25, p75 = spread(added)
            entry[variant] = {
                "ready_ms": median([x["ready"] for x in samples[name]]),
                "added_ms": median(added),
                "added_ms_p25_p75": [p25, p75],
                "added_x_floor": median(added_share),
                "vs_floor": comparisons[name]["ready"],
                "vs_floor_p25_p75": comparisons[name]["ready_p25_p75"],
                "first_request_ms": median([x["first_request"] for x in samples[name]]),
                "verdict": comparisons[name]["verdict"],
            }
            row += [median(added), entry[variant]["vs_floor"]]
        row.append(entry["all on"]["verdict"])
        out[function] = entry
        rows.append(row)
    headers = ["function", "floor ms", "today ms", "today ÷ floor"]
    for variant in VARIANTS:
        headers += [f"{variant} +ms", f"{variant} ÷ floor"]
    headers.append(f"all on ≤{VARIANT_TARGET}x")
    print_table(
        headers,
        rows,
        title="Observability pieces at cold start (ready; +ms = median per-round difference "
        "from the function as it is today: Logger + Metrics)",
    )
    return out


def run(quick: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="mysoulmate-cold-") as tmp:
        print("building the layer copies (requirements + mysoulmate, with and without .pyc)")
        runtimes = make_runtimes(Path(tmp))
        loaded = {fn: what_loaded(fn, runtimes["layer"]) for fn in FUNCTION_NAMES}
        loaded |= {
            f"{fn} all on": what_loaded(fn, runtimes["layer"], VARIANTS["all on"])
            for fn in FUNCTION_NAMES
        }
        for fn, info in loaded.items():
            if info["outside_layer_and_stdlib"]:
                raise RuntimeError(f"{fn} loads modules from outside the layer: {info}")
        return _run(quick, runtimes, loaded)


FUNCTION_NAMES = ("analytics", "health", "consumer", "i18n", "docs")


def _run(quick: bool, runtimes: dict[str, Runtime], loaded: dict[str, Any]) -> dict[str, Any]:
    rounds = 5 if quick else 21
    specs = scenarios()
    names = list(specs)
    rts = {n: runtimes[s.get("runtime", "layer")] for n, s in specs.items()}
    envs = {n: {**_child_env(s["env"], rts[n]), **s.get("extra_env", {})} for n, s in specs.items()}
    print(f"cold start: {rounds} rounds x {len(names)} scenarios (fresh interpreter each)")
    for name in names:  # warm-up: fill the page cache (and the dev .venv's .pyc)
        run_once(specs[name]["code"], envs[name], rts[name].python)
    samples: dict[str, list[dict[str, float]]] = {n: [] for n in names}
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        if r % 2:
            order.reverse()
        for name in order:
            samples[name].append(run_once(specs[name]["code"], envs[name], rts[name].python))
        print(f"  round {r + 1}/{rounds} done", flush=True)

    metrics = (
        "import",
        "client",
        "ready",
        "clients",
        "client_sqs",
        "client_dynamodb",
        "code",
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
                med(name, "clients"),
                med(name, "code"),
                med(name, "first_request"),
                med(name, "spawn_to_ready"),
                med(name, "wall"),
                "/".join(results[name]["first_request_status"]),
            ]
        )
    print_table(
        [
            "scenario (median ms)",
            "init",
            "+client",
            "ready",
            "clients",
            "code",
            "1st req",
            "spawn→ready",
            "wall",
            "status",
        ],
        rows,
        title=f"Cold start, median of {rounds} fresh interpreters (ms)",
    )
    print(
        "init = module import, app.py's module-level code included; +client = after init;"
        "\nready = init + client; clients = AWS client construction (boto3 import included);"
        "\ncode = ready - clients"
    )
    for name in names:
        per_service = [
            f"{m.removeprefix('client_')} {med(name, m):.0f} ms"
            for m in ("client_sqs", "client_dynamodb")
            if m in results[name]["ms"]
        ]
        if per_service:
            print(
                f"  {name}: AWS clients built (timed around aws_client): {', '.join(per_service)}"
            )

    comparisons: dict[str, Any] = {}
    rows = []
    for name in names:
        floor = specs[name].get("floor")
        if not floor:
            continue
        # Paired by round: a function and its floor run one after the other in each round,
        # so a burst of noise on the shared VM hits both; the median of the per-round
        # ratios is steadier than the ratio of the medians (kept too, for reference).
        pairs = list(zip(samples[name], samples[floor], strict=True))
        comp: dict[str, Any] = {}
        for m in ("ready", "code", "clients", "ready_plus_first", "spawn_to_ready", "wall"):
            per_round = [f[m] / b[m] for f, b in pairs]
            comp[m] = median(per_round)
            comp[f"{m}_p25_p75"] = spread(per_round)
            comp[f"{m}_ratio_of_medians"] = ratio(med(name, m), med(floor, m))
        variant = specs[name].get("variant")
        target = VARIANT_TARGET if variant else TARGET
        comp["info_only"] = specs[name]["kind"] == "info" or variant not in (None, "all on")
        comp["target"] = target
        comp["target_metric"] = "ready"
        comp["verdict"] = verdict(comp["ready"], target)
        for m in ("ready", "code", "clients"):
            comp[f"extra_ms_{m}"] = median([f[m] - b[m] for f, b in pairs])
        comp["target_ms_ready"] = target * med(floor, "ready")
        comparisons[name] = comp
        rows.append(
            [
                name,
                comp["ready"],
                "…".join(f"{x:.2f}" for x in comp["ready_p25_p75"]),
                comp["code"],
                comp["clients"],
                comp["ready_plus_first"],
                comp["spawn_to_ready"],
                comp["wall"],
                comp["extra_ms_ready"],
                comp["verdict"],
            ]
        )
    print_table(
        [
            "function ÷ floor*",
            "ready",
            "p25…p75",
            "code",
            "clients",
            "ready+1st",
            "spawn→ready",
            "wall",
            "+ms ready",
            f"target ready≤{TARGET}x ({VARIANT_TARGET}x with pieces)",
        ],
        rows,
        title="Ratios against the floor measured in the same run",
    )
    print("* median over rounds of (function ÷ its floor in the same round)")
    observability = _observability_costs(specs, samples, comparisons)

    print("\npython -X importtime of the entry points (median of 3 runs)")
    imports = {fn: importtime(fn, runtimes["layer"], runs=3) for fn in FUNCTION_NAMES}
    # The floors up to "ready" (their import and client), to see what a function imports
    # that its floor does not, package by package.
    floor_imports = {
        fn: importtime(
            fn,
            runtimes["layer"],
            runs=3,
            code=specs[specs[fn]["floor"]]["code"].split("_t2 = time.perf_counter()")[0],
        )
        for fn in FUNCTION_NAMES
    }
    import_diff = {fn: _package_diff(imports[fn], floor_imports[fn]) for fn in FUNCTION_NAMES}
    for fn in ("analytics", "consumer"):
        print_table(
            [f"module ({fn})", "cumulative ms", "self ms"],
            [
                ["  " * e["depth"] + e["module"], e["cumulative_ms"], e["self_ms"]]
                for e in imports[fn]["top_cumulative_ms"]
            ],
            title=f"{fn}: top 15 cumulative imports (total {imports[fn]['total_ms']:.0f} ms)",
        )
        print_table(
            ["top-level package", "self ms (sum)"],
            [[e["package"], e["self_ms"]] for e in imports[fn]["self_ms_by_top_level_package"]],
            title=f"{fn}: import time by top-level package",
        )
    for fn in FUNCTION_NAMES:
        diff = import_diff[fn]
        print_table(
            ["top-level package", f"{fn} ms", "floor ms", "difference"],
            [[p, d["function"], d["floor"], d["difference"]] for p, d in diff["top"]]
            + [["total", diff["function_total"], diff["floor_total"], diff["difference"]]],
            title=f"{fn} vs its floor, import self time by package (-X importtime)",
        )

    bytecode_rounds = 3 if quick else 5
    print(f"\nBytecode: analytics from a layer without .pyc vs compiled ({bytecode_rounds} rounds)")
    layer_runs = bytecode(bytecode_rounds, runtimes)
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
        "target_metric": "ready = init + client construction (in-child perf_counter)",
        "runtimes": {name: vars(rt) for name, rt in runtimes.items()},
        "modules_loaded": loaded,
        "scenarios": results,
        "comparisons": comparisons,
        "observability": observability,
        "importtime": imports,
        "importtime_floors": floor_imports,
        "importtime_vs_floor": import_diff,
        "bytecode": layer_runs,
    }


if __name__ == "__main__":
    standalone_main("cold_start", run)
