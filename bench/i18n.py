"""i18n: µs per `t()` call, µs per translated request and per localized 422 through the real
Lambda handlers, and catalog load time per locale.

* **`t()`** in process, catalogs loaded: a simple key, a plural with `count` (CLDR category
  from Babel, count formatted for the locale), interpolation, the region → language
  fallback (`pt-BR` → `pt`), and a missing key (answered with the key itself). For reference,
  the floor of any lookup: one `dict.get` on the flattened catalog.
* **Requests**, in process, interleaved round by round, with an API Gateway HTTP API event
  from `tests/events/apigw-http-api-proxy.json`:
  * `GET /api/v1/i18n/translate?key=…` through `functions/i18n/app.py` (Powertools Logger
    and Metrics, Mangum, the package's app), English and French, a plural with `count`;
  * a localized 422 (`POST /api/v1/analytics/track` with an invalid body,
    `Accept-Language: fr`) through `functions/analytics/app.py`: validation error envelope
    with its French messages (no AWS call is reached);
  * floor: a bare FastAPI app with one `async def` GET route in `Mangum(lifespan="off")`,
    same event shape.
* **Catalog load** per locale, cold: a fresh `CatalogStore` reads, parses and flattens the
  file (median of many loads), and in fresh interpreters the first `t()` with a count (the
  translate module, the catalogs and Babel's locale data imported/loaded on first use),
  to compare with the i18n function's cold start: catalogs load lazily, per locale, in the
  first request that needs them, and must not dominate it.

No target was set for these; the ratios to the floor are reported for regressions.
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
    ROOT,
    FakeLambdaContext,
    apply_env,
    lambda_env,
    load_entry_point,
    median,
    per_call_us,
    print_table,
    spread,
    standalone_main,
    summary,
)

EVENT_FILE = ROOT / "tests" / "events" / "apigw-http-api-proxy.json"
TRANSLATE = "/api/v1/i18n/translate"
TRACK = "/api/v1/analytics/track"
LOCALES = ("en", "fr", "es", "de", "it", "pt", "ja", "zh")
USER_CLAIMS = {"sub": "user-123", "roles": "[user]"}

T_CALLS: dict[str, tuple[tuple[Any, ...], dict[str, Any]]] = {
    "simple key (en)": (("common.save", "en"), {}),
    "simple key (ja)": (("common.save", "ja"), {}),
    "plural with count (fr, 3)": (("chat.messagesUnread", "fr"), {"count": 3}),
    "plural with count (en, 1)": (("chat.messagesUnread", "en"), {"count": 1}),
    "interpolation (de, 1 param)": (("companion.companionCreated", "de"), {"companionName": "Ava"}),
    "plural + interpolation (es)": (
        ("notifications.newMessagesBody", "es"),
        {"count": 5, "companionName": "Ava"},
    ),
    "fallback region → language (pt-BR → pt)": (("common.save", "pt-BR"), {}),
    "missing key (→ the key)": (("common.noSuchKey", "fr"), {}),
}


def http_event(
    method: str,
    path: str,
    query: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    body: str | None = None,
    claims: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The `sam local generate-event apigateway http-api-proxy` event, for this request."""
    event: dict[str, Any] = json.loads(EVENT_FILE.read_text())
    event["routeKey"] = f"{method} {path}"
    event["rawPath"] = path
    event["rawQueryString"] = "&".join(f"{k}={v}" for k, v in (query or {}).items())
    for name in ("cookies", "pathParameters", "stageVariables", "queryStringParameters"):
        event.pop(name, None)
    if query:
        event["queryStringParameters"] = dict(query)
    event["headers"] = {"accept": "application/json", "user-agent": "bench", **(headers or {})}
    context = event["requestContext"]
    context["http"]["method"] = method
    context["http"]["path"] = path
    context["routeKey"] = event["routeKey"]
    if claims is None:
        context.pop("authorizer", None)
    else:
        context["authorizer"] = {"jwt": {"claims": claims, "scopes": None}}
    if body is None:
        event.pop("body", None)
    else:
        event["headers"]["content-type"] = "application/json"
        event["body"] = body
    event["isBase64Encoded"] = False
    return event


def _interleaved(
    calls: dict[str, Callable[[], Any]], iterations: int, rounds: int
) -> dict[str, list[float]]:
    names = list(calls)
    for name in names:  # warm-up: catalogs, Babel data, lru caches
        per_call_us(calls[name], max(100, iterations // 4))
    samples: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            gc.collect()
            samples[name].append(per_call_us(calls[name], iterations))
    return samples


def _bare_route() -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    from fastapi import FastAPI
    from mangum import Mangum

    app = FastAPI()

    @app.get(TRANSLATE)
    async def route(key: str) -> dict[str, str]:
        return {"key": key, "text": key}

    return Mangum(app, lifespan="off")  # type: ignore[no-any-return]


def t_calls(iterations: int, rounds: int) -> dict[str, Any]:
    from mysoulmate.i18n.translate import catalogs, t

    flat = catalogs().get("fr").flat
    calls: dict[str, Callable[[], Any]] = {
        "floor: dict.get on the flat catalog": lambda: flat.get("common.save"),
    }
    for name, (args, kwargs) in T_CALLS.items():
        calls[name] = lambda args=args, kwargs=kwargs: t(*args, **kwargs)
    examples = {name: t(*args, **kwargs) for name, (args, kwargs) in T_CALLS.items()}
    samples = _interleaved(calls, iterations, rounds)
    rows = [
        [name, median(v), *spread(v), examples.get(name, "")[:48]] for name, v in samples.items()
    ]
    print_table(
        ["t() call", "µs/call", "p25", "p75", "result"],
        rows,
        title=f"t(): median of {rounds} rounds x {iterations} calls",
    )
    return {
        "us_per_call": {name: summary(v) for name, v in samples.items()},
        "results": examples,
    }


def requests(iterations: int, rounds: int) -> dict[str, Any]:
    i18n = load_entry_point("i18n", "i18n").handler
    analytics = load_entry_point("analytics", "i18n").handler
    floor = _bare_route()
    context = FakeLambdaContext()
    events = {
        "floor: bare FastAPI+Mangum GET route": (
            floor,
            http_event("GET", TRANSLATE, {"key": "common.save"}),
        ),
        "i18n translate, en (simple key)": (
            i18n,
            http_event("GET", TRANSLATE, {"key": "common.save"}),
        ),
        "i18n translate, fr (Accept-Language)": (
            i18n,
            http_event(
                "GET", TRANSLATE, {"key": "common.save"}, {"accept-language": "fr-FR,fr;q=0.9"}
            ),
        ),
        "i18n translate, fr plural count=3": (
            i18n,
            http_event(
                "GET", TRANSLATE, {"key": "chat.messagesUnread", "locale": "fr", "count": "3"}
            ),
        ),
        "analytics 422, fr (localized validation error)": (
            analytics,
            http_event(
                "POST",
                TRACK,
                headers={"accept-language": "fr"},
                body=json.dumps({"event": "", "platform": "toaster"}),
                claims=USER_CLAIMS,
            ),
        ),
        "analytics 422, en": (
            analytics,
            http_event(
                "POST",
                TRACK,
                body=json.dumps({"event": "", "platform": "toaster"}),
                claims=USER_CLAIMS,
            ),
        ),
    }
    checks: dict[str, Any] = {}
    for name, (handler, event) in events.items():
        handler(event, context)
        response = handler(event, context)
        body = json.loads(response["body"])
        checks[name] = {"status": response["statusCode"], "body": body}
        expected = 422 if "422" in name else 200
        if response["statusCode"] != expected:
            raise RuntimeError(f"{name}: answered {response['statusCode']}: {body}")
    french = checks["analytics 422, fr (localized validation error)"]["body"]["error"]["message"]
    english = checks["analytics 422, en"]["body"]["error"]["message"]
    if french == english:
        raise RuntimeError(f"the 422 is not localized: {french!r}")
    # The same event every call, as bench/warm.py does (neither Mangum nor the handlers
    # mutate it; checked above by answering it twice).
    calls: dict[str, Callable[[], Any]] = {
        name: (lambda h=handler, e=event: h(e, context))
        for name, (handler, event) in events.items()
    }
    samples = _interleaved(calls, iterations, rounds)
    floor_name = next(iter(events))
    paired = {
        name: [a / b for a, b in zip(samples[name], samples[floor_name], strict=True)]
        for name in samples
    }
    return {
        "us_per_request": {name: summary(v) for name, v in samples.items()},
        "ratio_vs_floor": {name: median(v) for name, v in paired.items()},
        "ratio_vs_floor_p25_p75": {name: spread(v) for name, v in paired.items()},
        "checks": {
            name: {"status": c["status"], "example": str(c["body"])[:300]}
            for name, c in checks.items()
        },
        "messages_422": {"fr": french, "en": english},
    }


def catalog_loads(repeats: int) -> dict[str, Any]:
    from mysoulmate.i18n.catalog import CatalogStore

    out: dict[str, Any] = {}
    rows = []
    for locale in LOCALES:
        times = []
        for _ in range(repeats):
            store = CatalogStore()
            start = time.perf_counter()
            catalog = store.get(locale)
            times.append((time.perf_counter() - start) * 1e3)
        size = len(catalog.raw)
        out[locale] = {"ms": summary(times), "bytes": size, "keys": len(catalog.flat)}
        rows.append([locale, median(times), *spread(times), size, len(catalog.flat)])
    print_table(
        ["locale", "load ms", "p25", "p75", "bytes", "keys"],
        rows,
        title=f"Catalog load (read + parse + flatten, fresh store), median of {repeats}",
    )
    return out


_FIRST_USE = """
import time, sys
_t0 = time.perf_counter()
from mysoulmate.i18n.translate import t
_t1 = time.perf_counter()
t("common.save", sys.argv[1])
_t2 = time.perf_counter()
t("chat.messagesUnread", sys.argv[1], count=3)
_t3 = time.perf_counter()
print("BENCH_I18N", (_t1 - _t0) * 1e3, (_t2 - _t1) * 1e3, (_t3 - _t2) * 1e3)
"""


def first_use(runs: int) -> dict[str, Any]:
    """Fresh interpreters: importing `t`, the first lookup (settings + the catalog), the first
    plural (Babel's locale data), per locale."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POWERTOOLS_"))}
    env.update(lambda_env("i18n"))
    out: dict[str, Any] = {}
    rows = []
    for locale in ("en", "fr", "ja"):
        parts: dict[str, list[float]] = {"import": [], "first t()": [], "first plural": []}
        for _ in range(runs):
            proc = subprocess.run(
                [sys.executable, "-c", _FIRST_USE, locale],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH_I18N"))
            values = [float(x) for x in line.split()[1:]]
            for key, value in zip(parts, values, strict=True):
                parts[key].append(value)
        out[locale] = {key: summary(v) for key, v in parts.items()}
        rows.append([locale, *(median(v) for v in parts.values())])
    print_table(
        ["locale", "import translate ms", "1st t() ms", "1st plural ms"],
        rows,
        title=f"First use in a fresh interpreter (dev .venv, layer {LAYER.name}), median of {runs}",
    )
    return out


def run(quick: bool) -> dict[str, Any]:
    apply_env(lambda_env("i18n"))
    warnings.filterwarnings("ignore", message="No application metrics to publish")
    iterations = 300 if quick else 1000
    rounds = 5 if quick else 15
    t_result = t_calls(iterations * 10, rounds)
    devnull = open(os.devnull, "w")  # noqa: SIM115 - Powertools prints EMF to stdout
    real_stdout = sys.stdout
    try:
        sys.stdout = devnull
        request_result = requests(iterations, rounds)
    finally:
        sys.stdout = real_stdout
        devnull.close()
    # requests() printed into devnull; print its tables again now.
    _reprint_requests(request_result, rounds, iterations)
    loads = catalog_loads(20 if quick else 100)
    first = first_use(3 if quick else 7)
    return {
        "t": t_result,
        "requests": request_result,
        "catalog_load": loads,
        "first_use": first,
        "rounds": rounds,
        "iterations": iterations,
    }


def _reprint_requests(result: dict[str, Any], rounds: int, iterations: int) -> None:
    rows = [
        [
            name,
            s["median"],
            s["p25"],
            s["p75"],
            result["ratio_vs_floor"][name],
        ]
        for name, s in result["us_per_request"].items()
    ]
    print_table(
        ["request through the Lambda handler", "µs/req", "p25", "p75", "x floor*"],
        rows,
        title=f"Requests: median of {rounds} rounds x {iterations} requests (same event each call)",
    )
    print("* median over rounds of (request ÷ floor in the same round)")
    for lang, message in result["messages_422"].items():
        print(f"  422 message ({lang}): {message}")


if __name__ == "__main__":
    standalone_main("i18n", run)
