"""Proposed package changes, measured before they are made.

Each proposal in docs/performance.md ("Findings") is written here as an edit applied to a
*temporary copy* of the layer (the package itself is never touched). The copy is checked
(every function imports; track → 202, validation → 422, no claims → 401, unknown path →
404, all in the error envelope; /health → 200; the consumer stores a record), then measured
against the current package in the same run, interleaved:

* cold start of analytics, health and consumer (import, and import + client), in fresh
  interpreters as bench.cold_start does;
* warm µs per `POST /api/v1/analytics/track` through the full Lambda handler, each side in
  its own interpreter (one package per process), alternating, each against its own floor.

A proposal whose edit no longer applies (the code changed, or it has been adopted) is
reported as such and left out.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench._common import (
    LAYER,
    ROOT,
    median,
    print_table,
    ratio,
    spread,
    standalone_main,
    summary,
)

Patch = Callable[[Path], None]


class NotApplicable(Exception):
    """The code this proposal edits is not there any more (changed or already adopted)."""


def _replace(path: Path, old: str, new: str, *, regex: bool = False) -> None:
    text = path.read_text()
    if regex:
        updated, n = re.subn(old, new, text, count=1, flags=re.MULTILINE)
    else:
        n = text.count(old)
        updated = text.replace(old, new, 1)
    if not n:
        raise NotApplicable(f"{path.name}: {old[:60]!r} not found")
    path.write_text(updated)


def async_dependencies(pkg: Path) -> None:
    """api/dependencies.py: `async def` for get_queue/get_store, so FastAPI calls them on the
    event loop instead of starting a worker thread per request (Mangum runs every invocation
    as a new task, and anyio stops a task's worker threads when it ends)."""
    deps = pkg / "api" / "dependencies.py"
    _replace(deps, r"^def get_queue\(", "async def get_queue(", regex=True)
    _replace(deps, r"^def get_store\(", "async def get_store(", regex=True)


_FRAMEWORK_IMPORTS = {
    "from fastapi import FastAPI, Request\n": ("FastAPI", "Request"),
    "from fastapi.exceptions import RequestValidationError\n": ("RequestValidationError",),
    "from starlette.exceptions import HTTPException as StarletteHTTPException\n": (
        "StarletteHTTPException",
    ),
    "from starlette.responses import JSONResponse\n": ("JSONResponse",),
}


def consumer_without_fastapi(pkg: Path) -> None:
    """lambda_runtime.py imports `APIRouter` only for typing; errors.py imports FastAPI and
    Starlette only inside the functions that build responses. The consumer then never loads
    FastAPI (storage.base → errors is its only path to it)."""
    runtime = pkg / "lambda_runtime.py"
    _replace(
        runtime,
        "from typing import Any\n\nfrom fastapi import APIRouter\n",
        "from typing import TYPE_CHECKING, Any\n\n"
        "if TYPE_CHECKING:\n    from fastapi import APIRouter\n",
    )
    errors = pkg / "errors.py"
    text = errors.read_text()
    missing = [
        line for line in (*_FRAMEWORK_IMPORTS, "from typing import Any\n") if line not in text
    ]
    if missing:
        raise NotApplicable(f"errors.py: {missing[0].strip()!r} not found")
    for line in _FRAMEWORK_IMPORTS:
        text = text.replace(line, "", 1)
    text = text.replace(
        "from typing import Any\n",
        "from typing import TYPE_CHECKING, Any\n\nif TYPE_CHECKING:\n"
        + "".join("    " + line for line in _FRAMEWORK_IMPORTS),
        1,
    )
    errors.write_text(_defer_imports(text, _FRAMEWORK_IMPORTS))


def _defer_imports(text: str, imports: dict[str, tuple[str, ...]]) -> str:
    """Add a local import of each name a top-level function's *body* uses at run time."""
    lines = text.splitlines(keepends=True)
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not re.match(r"(async )?def \w+\(", line):
            out.append(line)
            i += 1
            continue
        # The signature may span lines; it ends at the first line ending with ':'.
        while not lines[i].rstrip().endswith(":"):
            out.append(lines[i])
            i += 1
        out.append(lines[i])
        i += 1
        body_start = i
        while i < len(lines) and (lines[i].startswith((" ", "\n")) or not lines[i].strip()):
            i += 1
        body = "".join(lines[body_start:i])
        code = re.sub(r"#[^\n]*", "", body)  # comments name things too
        needed = [
            stmt
            for stmt, names in imports.items()
            if any(re.search(rf"(?<![\w.]){name}\b", code) for name in names)
        ]
        out.extend("    " + stmt for stmt in needed)
        out.extend(lines[body_start:i])
    return "".join(out)


def health_without_analytics_models(pkg: Path) -> None:
    """storage/base.py imports the analytics models only for typing (the port's signatures),
    so the health function no longer builds the analytics pydantic models at cold start."""
    base = pkg / "storage" / "base.py"
    text = base.read_text()
    match = re.search(r"^from mysoulmate\.analytics\.models import ([^\n]+)\n", text, re.M)
    if not match or "TYPE_CHECKING" in text:
        raise NotApplicable("storage/base.py: no top-level analytics.models import")
    names = match.group(1)
    text = text.replace(match.group(0), "", 1)
    text = re.sub(
        r"^from typing import ([^\n]+)\n",
        lambda m: f"from typing import TYPE_CHECKING, {m.group(1)}\n",
        text,
        count=1,
        flags=re.M,
    )
    # After the last top-level import.
    imports = list(re.finditer(r"^(from|import) [^\n]+\n", text, re.M))
    at = imports[-1].end()
    text = (
        text[:at]
        + f"\nif TYPE_CHECKING:\n    from mysoulmate.analytics.models import {names}\n"
        + text[at:]
    )
    # Module-level aliases evaluated at import need the names as strings.
    text = text.replace(
        "ProfileUpdate = Callable[[Profile | None], Profile]",
        'ProfileUpdate = Callable[["Profile | None"], "Profile"]',
    )
    base.write_text(text)


_SETTINGS_SHIM = '''from typing import Any as _Any

from pydantic import BaseModel as _BaseModel
from pydantic import ConfigDict as SettingsConfigDict


class NoDecode:
    """Marker kept for the field annotations; plain models never JSON-decode strings."""


class BaseSettings(_BaseModel):
    """Each field from the same-named environment variable (case-insensitive; an alias
    names the variable), keyword arguments first: the part of pydantic-settings we use."""

    def __init__(self, **values: _Any) -> None:
        env = {k.lower(): v for k, v in os.environ.items()}
        for name, info in type(self).model_fields.items():
            key = info.alias or name
            if key not in values and key.lower() in env:
                values[key] = env[key.lower()]
        super().__init__(**values)
'''


def settings_without_pydantic_settings(pkg: Path) -> None:
    """settings.py: the same pydantic model, filled from os.environ by a ten-line base class
    instead of pydantic-settings, whose import (with python-dotenv, argparse, email) costs
    every function ~45 ms at cold start. Validation and error messages are unchanged."""
    _replace(
        pkg / "settings.py",
        "from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict\n",
        _SETTINGS_SHIM,
    )


PROPOSALS: dict[str, Patch] = {
    "async-dependencies": async_dependencies,
    "consumer-without-fastapi": consumer_without_fastapi,
    "health-without-analytics-models": health_without_analytics_models,
    "settings-without-pydantic-settings": settings_without_pydantic_settings,
}


# Which functions' cold start each proposal can change (the attribution pass measures these).
AFFECTS = {
    "async-dependencies": (),  # per request, not at import: see the warm comparison
    "consumer-without-fastapi": ("consumer",),
    "health-without-analytics-models": ("health",),
    "settings-without-pydantic-settings": ("analytics", "health", "consumer"),
}


def build_copy(target: Path, only: str | None = None) -> dict[str, str]:
    """Copy the layer's package to ``target`` and apply every proposal that still applies
    (or just ``only``)."""
    shutil.copytree(
        LAYER / "mysoulmate", target / "mysoulmate", ignore=shutil.ignore_patterns("__pycache__")
    )
    status: dict[str, str] = {}
    for name, patch in PROPOSALS.items():
        if only and name != only:
            continue
        pkg = target / "mysoulmate"
        backup = target / f".backup-{name}"
        shutil.copytree(pkg, backup)
        try:
            patch(pkg)
            status[name] = "applied"
        except NotApplicable as exc:
            shutil.rmtree(pkg)
            backup.rename(pkg)
            status[name] = f"not applicable: {exc}"
            continue
        shutil.rmtree(backup)
    return status


_CHECK = r"""
import io, json, sys, warnings, contextlib
warnings.simplefilter("ignore")
from bench._common import (apply_env, lambda_env, api_gateway_event, FakeLambdaContext,
                           TRACK_BODY, USER_CLAIMS, FUNCTIONS)
from bench.warm import MemorySqsClient
import runpy
out = {}
apply_env(lambda_env("analytics", __LAYER__))
health = runpy.run_path(str(FUNCTIONS / "health" / "app.py"))["handler"]
out["health_loads_analytics_models"] = "mysoulmate.analytics.models" in sys.modules
analytics = runpy.run_path(str(FUNCTIONS / "analytics" / "app.py"))["handler"]
import mysoulmate, mysoulmate.backends as b
out["package"] = mysoulmate.__file__
sink = []
b.message_queue()._client = MemorySqsClient(sink)
ctx = FakeLambdaContext()
TRACK = "/api/v1/analytics/track"
cases = {
    "track": (analytics, api_gateway_event("POST", TRACK, TRACK_BODY, USER_CLAIMS)),
    "validation": (analytics, api_gateway_event("POST", TRACK, '{"event": ""}', USER_CLAIMS)),
    "bad_json": (analytics, api_gateway_event("POST", TRACK, '{nope', USER_CLAIMS)),
    "no_claims": (analytics, api_gateway_event("POST", TRACK, TRACK_BODY, None)),
    "unknown_path": (analytics, api_gateway_event("GET", "/nope", None, USER_CLAIMS)),
    "health": (health, api_gateway_event("GET", "/health")),
}
with contextlib.redirect_stdout(io.StringIO()):
    for name, (handler, event) in cases.items():
        r = handler(event, ctx)
        body = json.loads(r["body"])
        out[name] = [r["statusCode"], (body.get("error") or {}).get("code")]
out["queued"] = len(sink)
print("BENCH_CHILD " + json.dumps(out))
"""

_CONSUMER_CHECK = r"""
import io, json, sys, contextlib
from bench._common import apply_env, lambda_env, FUNCTIONS
apply_env(lambda_env("consumer", __LAYER__))
import runpy
handler = runpy.run_path(str(FUNCTIONS / "consumer" / "app.py"))["handler"]
print("BENCH_CHILD " + json.dumps({"consumer_loads_fastapi": "fastapi" in sys.modules}))
"""


def _child_json(code: str, layer: Path) -> dict[str, Any]:
    code = "from pathlib import Path\n" + code.replace("__LAYER__", f"Path({str(layer)!r})")
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        env=_env(),
    )
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH_CHILD ")), None)
    if proc.returncode or line is None:
        return {"error": (proc.stderr or proc.stdout)[-1500:]}
    return dict(json.loads(line[len("BENCH_CHILD ") :]))


def _env() -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if k != "BENCH_LAYER"}
    env["PYTHONPATH"] = str(ROOT)
    return env


def check(layer: Path) -> dict[str, Any]:
    result = _child_json(_CHECK, layer)
    result.update(_child_json(_CONSUMER_CHECK, layer))
    return result


EXPECTED = {
    "track": [202, None],
    "validation": [422, "validation_error"],
    "bad_json": [400, "invalid_json"],
    "no_claims": [401, "unauthorized"],
    "unknown_path": [404, "not_found"],
    "health": [200, None],
    "queued": 1,
}


def cold(current: Path, proposed: Path, rounds: int) -> dict[str, Any]:
    from bench.cold_start import _child_env, run_once, scenarios

    specs = scenarios()
    functions = ("analytics", "health", "consumer")
    sides = {"current": current, "proposed": proposed}
    samples: dict[tuple[str, str], list[dict[str, float]]] = {
        (f, s): [] for f in functions for s in sides
    }
    floors = {f: specs[f]["floor"] for f in functions}
    for f in functions:
        samples[(f, "floor")] = []
    runs = [(f, s) for f in functions for s in (*sides, "floor")]

    def once(f: str, s: str) -> dict[str, float]:
        if s == "floor":
            return run_once(specs[floors[f]]["code"], _child_env(specs[floors[f]]["env"]))
        return run_once(specs[f]["code"], _child_env(f, sides[s]))

    for f, s in runs:  # warm-up: .pyc for both copies
        once(f, s)
    for r in range(rounds):
        order = runs if r % 2 == 0 else list(reversed(runs))
        for f, s in order:
            samples[(f, s)].append(once(f, s))
    out: dict[str, Any] = {}
    rows = []
    for f in functions:
        entry: dict[str, Any] = {}
        for metric in ("import", "ready", "first_request", "ready_plus_first"):
            cur = median([x[metric] for x in samples[(f, "current")]])
            new = median([x[metric] for x in samples[(f, "proposed")]])
            floor = median([x[metric] for x in samples[(f, "floor")]])
            # Runs of one round were adjacent: the median of paired differences is steadier
            # than the difference of medians on a shared machine.
            paired = [
                a[metric] - b[metric]
                for a, b in zip(samples[(f, "current")], samples[(f, "proposed")], strict=True)
            ]
            entry[metric] = {
                "current_ms": cur,
                "proposed_ms": new,
                "floor_ms": floor,
                "saved_ms": median(paired),
                "saved_ms_p25_p75": spread(paired),
                "proposed_over_current": ratio(new, cur),
                "current_over_floor": ratio(cur, floor),
                "proposed_over_floor": ratio(new, floor),
            }
        out[f] = entry
        rows.append(
            [
                f,
                entry["import"]["current_ms"],
                entry["import"]["proposed_ms"],
                entry["import"]["saved_ms"],
                entry["first_request"]["current_ms"],
                entry["first_request"]["proposed_ms"],
                entry["ready_plus_first"]["saved_ms"],
                entry["ready"]["current_over_floor"],
                entry["ready"]["proposed_over_floor"],
            ]
        )
    print_table(
        [
            "cold start (median ms)",
            "import now",
            "proposed",
            "saved*",
            "1st req now",
            "proposed",
            "saved to 1st resp.*",
            "ready/floor now",
            "proposed",
        ],
        rows,
        title=f"Cold start, current package vs proposals, {rounds} interleaved rounds",
    )
    print("* median of the per-round differences (current - proposed), runs side by side")
    return out


def attribute(status: dict[str, str], tmp: Path, rounds: int) -> dict[str, Any]:
    """Each applied proposal alone: import time saved, paired, on the functions it affects."""
    from bench.cold_start import _child_env, run_once, scenarios

    specs = scenarios()
    out: dict[str, Any] = {}
    rows = []
    for name, functions in AFFECTS.items():
        if status.get(name) != "applied" or not functions:
            continue
        copy = tmp / f"only-{name}"
        build_copy(copy, only=name)
        for f in functions:
            envs = (_child_env(f), _child_env(f, copy))
            for env in envs:
                run_once(specs[f]["code"], env)  # .pyc
            paired = []
            for r in range(rounds):
                order = envs if r % 2 == 0 else envs[::-1]
                a, b = (run_once(specs[f]["code"], env)["import"] for env in order)
                paired.append(a - b if r % 2 == 0 else b - a)
            out.setdefault(name, {})[f] = {"import_saved_ms": summary(paired)}
            p25, p75 = spread(paired)
            rows.append([name, f, median(paired), p25, p75])
    print_table(
        ["proposal alone", "function", "import saved ms*", "p25", "p75"],
        rows,
        title=f"Attribution: each proposal applied alone, {rounds} paired rounds",
    )
    return out


def warm(current: Path, proposed: Path, pairs: int, quick: bool) -> dict[str, Any]:
    from bench.warm import CHILD_MARK, FLOOR, MAIN

    sides = {"current": current, "proposed": proposed}
    samples: dict[str, dict[str, list[float]]] = {s: {"floor": [], "handler": []} for s in sides}
    for p in range(pairs):
        for side in list(sides) if p % 2 == 0 else list(reversed(sides)):
            env = _env()
            env["BENCH_LAYER"] = str(sides[side])
            args = [sys.executable, "-m", "bench.warm", "--lambda-child"]
            proc = subprocess.run(
                args + (["--quick"] if quick else []),
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            line = next((ln for ln in proc.stdout.splitlines() if ln.startswith(CHILD_MARK)), None)
            if proc.returncode or line is None:
                raise RuntimeError(f"warm child failed ({side}):\n{proc.stderr[-2000:]}")
            data = json.loads(line[len(CHILD_MARK) :])["us_per_request"]
            samples[side]["floor"].append(data[FLOOR]["median"])
            samples[side]["handler"].append(data[MAIN]["median"])
    out: dict[str, Any] = {}
    rows = []
    for side in sides:
        floor = median(samples[side]["floor"])
        handler = median(samples[side]["handler"])
        out[side] = {
            "floor_us": summary(samples[side]["floor"]),
            "handler_us": summary(samples[side]["handler"]),
            "ratio": ratio(handler, floor),
        }
        rows.append([side, floor, handler, ratio(handler, floor)])
    print_table(
        ["warm track, Lambda handler", "floor µs", "handler µs", "x floor"],
        rows,
        title=f"Warm POST /api/v1/analytics/track, current vs proposals ({pairs} processes each)",
    )
    return out


def run(quick: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="mysoulmate-proposed-") as tmp:
        proposed = Path(tmp) / "all"
        status = build_copy(proposed)
        for name, state in status.items():
            print(f"proposal {name}: {state}")
        checks = {"current": check(LAYER), "proposed": check(proposed)}
        problems = [
            f"{side}: {key} = {checks[side].get(key)!r}, expected {want!r}"
            for side in checks
            for key, want in EXPECTED.items()
            if checks[side].get(key) != want
        ]
        for problem in problems:
            print(f"  CHECK FAILED {problem}")
        print(
            "  health loads analytics models: "
            f"current {checks['current'].get('health_loads_analytics_models')}, "
            f"proposed {checks['proposed'].get('health_loads_analytics_models')}; "
            "consumer loads fastapi: "
            f"current {checks['current'].get('consumer_loads_fastapi')}, "
            f"proposed {checks['proposed'].get('consumer_loads_fastapi')}"
        )
        if not any(state == "applied" for state in status.values()):
            return {"proposals": status, "checks": checks}
        result: dict[str, Any] = {"proposals": status, "checks": checks, "check_problems": problems}
        result["cold_start"] = cold(LAYER, proposed, rounds=5 if quick else 15)
        result["attribution"] = attribute(status, Path(tmp), rounds=5 if quick else 11)
        result["warm"] = warm(LAYER, proposed, pairs=2 if quick else 3, quick=True)
        return result


if __name__ == "__main__":
    standalone_main("proposals", run)
