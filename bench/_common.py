"""What every benchmark shares: the Lambda-like environment, statistics, tables, results."""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# BENCH_LAYER points the benchmarks at another copy of the layer, to measure a proposed
# change to the package before making it (docs/performance.md, "Trying a change").
LAYER = Path(os.environ.get("BENCH_LAYER") or ROOT / "layers" / "common").resolve()
FUNCTIONS = ROOT / "functions"
RESULTS_DIR = Path(__file__).resolve().parent / "results"
LATEST = RESULTS_DIR / "latest.json"

QUEUE_URL = "https://sqs.us-east-1.amazonaws.com/123456789012/q"
EVENTS_TABLE = "mysoulmate-events-bench"


def lambda_env(function: str, layer: Path | None = None) -> dict[str, str]:
    """The variables template.yaml gives a function, plus dummy credentials (no network)."""
    layer = layer or LAYER
    return {
        "AWS_LAMBDA_FUNCTION_NAME": f"mysoulmate-bench-{function}",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
        "STAGE": "dev",
        "STORAGE_BACKEND": "dynamodb",
        "QUEUE_BACKEND": "sqs",
        "EVENTS_TABLE": EVENTS_TABLE,
        "EVENTS_QUEUE_URL": QUEUE_URL,
        "AUTH_MODE": "apigateway",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "POWERTOOLS_SERVICE_NAME": function,
        "POWERTOOLS_METRICS_NAMESPACE": "MySoulmate",
        "PYDANTIC_DISABLE_PLUGINS": "__all__",
        # One caller sends every request: limits high enough never to refuse, so the limiter
        # still runs (and is measured) on every request.
        "RATE_LIMIT_INGEST_PER_SECOND": "1000000000",
        "RATE_LIMIT_INGEST_BURST": "1000000000",
        "RATE_LIMIT_READ_PER_SECOND": "1000000000",
        "RATE_LIMIT_READ_BURST": "1000000000",
        "PYTHONPATH": os.pathsep.join(
            p for p in (str(layer), str(ROOT), os.environ.get("PYTHONPATH", "")) if p
        ),
    }


def apply_env(env: dict[str, str]) -> None:
    """Set ``env`` in this process and drop variables that would point the SDK elsewhere."""
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "DATA_DIR", "CORS_ALLOW_ORIGINS"):
        os.environ.pop(name, None)
    os.environ.update(env)
    for path in reversed(env.get("PYTHONPATH", "").split(os.pathsep)):
        if path and path not in sys.path:
            sys.path.insert(0, path)


class FakeLambdaContext:
    """The attributes Powertools' Logger and Mangum read from a Lambda context."""

    function_name = "mysoulmate-bench"
    function_version = "$LATEST"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:mysoulmate-bench"
    aws_request_id = "bench-request-id"
    log_group_name = "/aws/lambda/mysoulmate-bench"
    log_stream_name = "bench"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 30_000


def api_gateway_event(
    method: str, path: str, body: str | None = None, claims: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A minimal API Gateway HTTP API (payload 2.0) event, as the JWT authorizer passes it."""
    request_context: dict[str, Any] = {
        "accountId": "123456789012",
        "apiId": "bench",
        "domainName": "bench.execute-api.us-east-1.amazonaws.com",
        "domainPrefix": "bench",
        "http": {
            "method": method,
            "path": path,
            "protocol": "HTTP/1.1",
            "sourceIp": "192.0.2.1",
            "userAgent": "bench",
        },
        "requestId": "bench-req-0001",
        "routeKey": "$default",
        "stage": "$default",
        "time": "01/Jan/2026:00:00:00 +0000",
        "timeEpoch": 1767225600000,
    }
    if claims is not None:
        request_context["authorizer"] = {"jwt": {"claims": claims, "scopes": None}}
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {
            "host": "bench.execute-api.us-east-1.amazonaws.com",
            "content-type": "application/json",
            "accept": "application/json",
        },
        "requestContext": request_context,
        "isBase64Encoded": False,
    }
    if body is not None:
        event["body"] = body
        event["headers"]["content-length"] = str(len(body.encode()))
    return event


TRACK_BODY = json.dumps(
    {
        "event": "Song Played",
        "properties": {"songId": "s-123", "durationMs": 183000, "genre": "synthwave"},
        "platform": "ios",
        "context": {"app": {"version": "3.2.1"}, "locale": "en-US"},
    }
)
USER_CLAIMS = {"sub": "user-123", "roles": "[user]", "iss": "https://issuer", "aud": "mysoulmate"}


# -- statistics and output ------------------------------------------------------------


def sqs_event(bodies: list[str], first: int = 0) -> dict[str, Any]:
    """An SQS event source batch as Lambda delivers it, one record per body."""
    return {
        "Records": [
            {
                "messageId": f"00000000-0000-4000-8000-{first + n:012d}",
                "receiptHandle": f"rh-{first + n}",
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
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:mysoulmate-events",
                "awsRegion": "us-east-1",
            }
            for n, body in enumerate(bodies)
        ]
    }


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def spread(values: Sequence[float]) -> tuple[float, float]:
    """(p25, p75): how much the runs disagreed, next to the median."""
    if len(values) < 2:
        v = values[0] if values else float("nan")
        return v, v
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[0], q[2]


def summary(values: Sequence[float]) -> dict[str, Any]:
    p25, p75 = spread(values)
    return {
        "median": median(values),
        "p25": p25,
        "p75": p75,
        "min": min(values) if values else None,
        "n": len(values),
        "samples": [round(v, 4) for v in values],
    }


def ratio(value: float, floor: float) -> float:
    return value / floor if floor else float("nan")


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], title: str = "") -> None:
    cells = [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    if title:
        print(f"\n{title}")
    print(
        "  ".join(
            h.ljust(w) if i == 0 else h.rjust(w)
            for i, (h, w) in enumerate(zip(headers, widths, strict=True))
        )
    )
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    sys.stdout.flush()


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if value != value:  # NaN
            return "-"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if abs(value) >= 100:
            return f"{value:.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    return str(value)


def verdict(value: float, target: float) -> str:
    return "met" if value <= target else f"MISSED by {value / target - 1:.0%}"


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        model = platform.processor()
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "loadavg_now": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def source_state() -> dict[str, Any]:
    """Which code was measured: the commit, and package files changed since (others edit)."""
    import subprocess

    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args], cwd=ROOT, capture_output=True, text=True, check=False
            ).stdout.strip()
        except OSError:
            return ""

    return {
        "commit": git("rev-parse", "--short", "HEAD"),
        "uncommitted_package_files": git(
            "status", "--porcelain", "--", "layers", "functions"
        ).splitlines(),
        "layer": str(LAYER),
    }


def headline(benchmarks: dict[str, Any]) -> dict[str, Any]:
    """The figures the targets are about, from whatever benchmarks have results."""
    out: dict[str, Any] = {}
    cold = benchmarks.get("cold_start")
    if cold:
        out["cold_start_ready_vs_floor"] = {
            name: {"ratio": round(c["ready"], 3), "target": c["target"], "verdict": c["verdict"]}
            for name, c in cold["comparisons"].items()
            if not c.get("info_only")
        }
    warm = benchmarks.get("warm", {}).get("lambda")
    if warm:
        out["warm_track_us"] = {
            name: round(v["median"], 1) for name, v in warm["us_per_request"].items()
        }
        out["warm_track_vs_floor"] = {
            "ratio": round(warm["ratio_vs_floor"]["analytics handler (full)"], 3),
            "target": warm["target"],
            "verdict": warm["verdict"],
        }
    consumer = benchmarks.get("consumer")
    if consumer:
        out["consumer_records_per_second"] = {
            mix: {
                "ingest": round(v["records_per_second"]["ingest"]["median"]),
                "floor": round(v["records_per_second"]["floor"]["median"]),
            }
            for mix, v in consumer["sqlite_throughput"].items()
        }
        out["dynamodb_calls_per_1000_events"] = {
            mix: {"calls": v["calls_per_1000_events"], "verdict": v["verdict"]}
            for mix, v in consumer["dynamodb_calls"].items()
        }
    return out


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def standalone_main(name: str, run: Callable[[bool], dict[str, Any]]) -> None:
    """`python -m bench.<name> [--quick] [--out FILE]`: run one benchmark, write its JSON."""
    parser = argparse.ArgumentParser(prog=f"python -m bench.{name}")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--out", type=Path, help="write this benchmark's JSON here")
    args = parser.parse_args()
    started = time.perf_counter()
    result = run(args.quick)
    result["seconds"] = round(time.perf_counter() - started, 1)
    result["finished_at"] = now_iso()
    result["quick"] = args.quick
    if args.out:
        args.out.write_text(json.dumps(relative_to_checkout(result), indent=2, default=str))
    else:
        merge_results({name: result})


def relative_to_checkout(value: Any) -> Any:
    """``value`` with the checkout's absolute path taken out of every string: results say
    ``layers/common``, not where this clone happens to live."""
    if isinstance(value, Path):
        value = str(value)
    if isinstance(value, str):
        return value.replace(f"{ROOT}{os.sep}", "").replace(str(ROOT), ".")
    if isinstance(value, dict):
        return {key: relative_to_checkout(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [relative_to_checkout(item) for item in value]
    return value


def merge_results(results: dict[str, Any]) -> Path:
    """Update bench/results/latest.json with these benchmarks, keeping the others' last run."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = {}
    if LATEST.exists():
        try:
            data = json.loads(LATEST.read_text())
        except ValueError:
            data = {}
    data.setdefault("benchmarks", {}).update(results)
    # Forget benchmarks that no longer exist (their module is gone from bench/).
    here = Path(__file__).resolve().parent
    data["benchmarks"] = {
        name: value for name, value in data["benchmarks"].items() if (here / f"{name}.py").exists()
    }
    data["machine"] = machine()
    data["source"] = source_state()
    data["summary"] = headline(data["benchmarks"])
    data["updated_at"] = now_iso()
    tmp = LATEST.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(relative_to_checkout(data), indent=2, default=str) + "\n")
    tmp.replace(LATEST)
    return LATEST


def load_entry_point(name: str, instance: str) -> Any:
    """`functions/<name>/app.py` loaded as Lambda loads it (a fresh module per ``instance``)."""
    import importlib.util

    module_name = f"bench_{name}_app_{instance}"
    spec = importlib.util.spec_from_file_location(module_name, FUNCTIONS / name / "app.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def per_call_us(call: Callable[[], Any], iterations: int) -> float:
    """Mean µs per call over ``iterations`` back-to-back calls."""
    start = time.perf_counter()
    for _ in range(iterations):
        call()
    return (time.perf_counter() - start) / iterations * 1e6
