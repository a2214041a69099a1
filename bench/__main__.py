"""`python -m bench [--quick] [NAME ...]`: run the benchmarks, print ratios, write JSON.

Each benchmark runs in its own interpreter (they set different Lambda environments, and
settings and `ON_LAMBDA` are fixed once per process); results are merged into
bench/results/latest.json, keeping the last figures of benchmarks not run this time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._common import ROOT, machine, merge_results, source_state
from bench.goals import print_goals

BENCHMARKS = {
    "cold_start": (
        "cold start of analytics, health, consumer, i18n, docs vs floors; + tracer, sentry"
    ),
    "warm": "µs per POST /api/v1/analytics/track through the Lambda handler vs a bare route",
    "consumer": "records/s into SQLite vs executemany; DynamoDB calls per 1,000 events",
    "read_side": "dashboard, funnel and cohort latency at 10k and 1M events, SQLite and PostgreSQL",
    "pg_ingest": "consumer ingest into PostgreSQL vs raw COPY→stage→INSERT",
    "i18n": "µs per t(), per translated request and localized 422 vs a bare route; catalog loads",
    "ingest": "AWS calls per 1,000 events end to end; events/s through the local /v1/batch",
    "http_ingest": "mysoulmate serve, 1 event per request, 32 clients vs a durable-insert floor",
    "forwarding": "provider HTTP requests per 1,000 events; forwarder events/s vs a bare client",
    "reports": "weekly reports/s over a year of data at 10k and 1M stored events (SQLite)",
    "media": "images resized/s vs Pillow directly; cache-hit µs through the Lambda; peak memory",
    "perf": "perf measurements/s: consumer vs raw rows, summary at 100k/1M, POST /api/v1/perf",
    "user_reads": "GET /user/{id}?limit=1 for a user with 20k vs 40k events, SQLite and PostgreSQL",
    "dynamo_sets": "a DynamoDB user set filled to 1M users (moto); 10M placed; spill calls",
}


def _resolve(names: list[str]) -> list[str]:
    chosen = []
    for name in names:
        matches = [b for b in BENCHMARKS if b == name or b.startswith(name.replace("-", "_"))]
        if len(matches) != 1:
            raise SystemExit(f"unknown or ambiguous benchmark {name!r}; one of {list(BENCHMARKS)}")
        chosen.append(matches[0])
    return chosen


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", metavar="NAME", help="benchmarks to run (default all)")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (smoke run)")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = parser.parse_args()
    if args.list:
        for name, what in BENCHMARKS.items():
            print(f"{name:12} {what}")
        return 0
    names = _resolve(args.names) if args.names else list(BENCHMARKS)
    info = machine()
    print(
        f"machine: {info['nproc']} CPU(s), {info['cpu_model']}, Python {info['python']}, "
        f"load average {', '.join(f'{x:.2f}' for x in info['loadavg_now'] or [])}"
    )
    state = source_state()
    print(f"source: commit {state['commit']}, layer {state['layer']}")
    results: dict[str, Any] = {}
    failed = []
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    with tempfile.TemporaryDirectory(prefix="mysoulmate-bench-") as tmp:
        for name in names:
            print(f"\n=== {name}: {BENCHMARKS[name]} ===", flush=True)
            out = Path(tmp) / f"{name}.json"
            cmd = [sys.executable, "-m", f"bench.{name}", "--out", str(out)]
            started = time.perf_counter()
            load_before = list(os.getloadavg())
            proc = subprocess.run(
                cmd + (["--quick"] if args.quick else []), cwd=ROOT, env=env, check=False
            )
            if proc.returncode or not out.exists():
                print(f"!!! {name} failed (exit {proc.returncode})", flush=True)
                failed.append(name)
                continue
            results[name] = json.loads(out.read_text())
            results[name]["load_average_before"] = load_before
            results[name]["load_average_after"] = list(os.getloadavg())
            print(f"--- {name}: {time.perf_counter() - started:.0f} s", flush=True)
    print(f"\nload average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if results:
        path = merge_results(results)
        print(f"results: {path.relative_to(ROOT)}")
        print()
        missed = print_goals(json.loads(path.read_text())["benchmarks"])
        print(f"\n{missed} goal(s) missed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
