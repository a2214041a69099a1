"""Forwarding: provider HTTP requests per 1,000 events, and the forwarder's events/s.

Both providers (`MixpanelProvider` through the official library, `Ga4Provider`) send through
the real `Forwarder` (eligibility checks, a SQLite ledger, chunking, tenacity, pybreaker) to
a local sink: a threaded HTTP server on 127.0.0.1 answering as each provider does (Mixpanel
``{"status": 1}``, GA4 an empty 2xx), counting requests and bytes.

1. **Requests per 1,000 events** (issue goals: Mixpanel ≤ 21, GA4 ≤ 41), for two traffic mixes:
   ``realistic``: 100 people with 10 messages each, 5 % of them identifies (one per person
   for 50 people) and 2 % purchases with revenue; ``dense``: 40 people with 25 track events
   each. GA4 takes one person per request, so its floor is one request per person (100 in the
   realistic mix) whatever the batching: the table shows that floor next to the count.
2. **Events/s** through the forwarder, 5,000 events per round, against a floor measured in
   the same run: the same number of HTTP requests with the same bodies sent by a bare client
   (requests for Mixpanel, urllib for GA4, as the providers use) to the same sink.
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
import urllib.request
from collections.abc import Collection, Sequence
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from bench._common import median, print_table, ratio, standalone_main, verdict

GOALS = {"mixpanel": 21, "ga4": 41}


class Sink:
    """Answers every POST like the provider; remembers each request's path and body."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.requests: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                data = self.rfile.read(length)
                with sink._lock:
                    sink.requests.append((self.path, data))
                self.send_response(200)
                self.send_header("Content-Length", str(len(sink.body)))
                self.end_headers()
                self.wfile.write(sink.body)

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def take(self) -> list[tuple[str, bytes]]:
        with self._lock:
            taken, self.requests = self.requests, []
        return taken


class NoGuard:
    """Nobody erased, nobody opted out (the checks still run)."""

    def erased_users(self, users: Collection[str]) -> dict[str, datetime]:
        return {}

    def get_profile(self, user_id: str) -> None:
        return None


def messages(mix: str, count: int, run: int) -> list[Any]:
    from mysoulmate.analytics.models import QueuedMessage

    now = datetime.now(UTC)
    people, per_person = (100, 10) if mix == "realistic" else (40, 25)
    built: list[QueuedMessage] = []
    for n in range(count):
        person = (n // per_person) % people
        index = n % per_person
        user = f"user-{run}-{n // (people * per_person)}-{person:03d}"
        common = {
            "messageId": f"m-{run}-{n:06d}",
            "userId": user,
            "timestamp": now - timedelta(minutes=30) + timedelta(seconds=n % 600),
            "receivedAt": now,
            "platform": "ios",
            "sessionId": f"s_{person}",
            "context": {"os": {"name": "iOS"}, "locale": "en-US"},
        }
        if mix == "realistic" and index == 0 and person % 2 == 0:
            built.append(
                QueuedMessage(type="identify", traits={"plan": "pro", "age": 30}, **common)
            )
        elif mix == "realistic" and n % 50 == 7:
            props = {"revenue": 9.99, "currency": "EUR", "orderId": f"o-{n}"}
            built.append(QueuedMessage(type="track", event="purchase", properties=props, **common))
        else:
            props = {"songId": f"s-{n}", "durationMs": 1000 + n, "genre": "synthwave"}
            built.append(
                QueuedMessage(type="track", event="Song Played", properties=props, **common)
            )
    return built


def build(name: str, sink: Sink, ledger_dir: Path) -> Any:
    from mysoulmate.providers.forwarder import Forwarder
    from mysoulmate.storage.sqlite.ledger import SqliteForwardLedger

    if name == "mixpanel":
        from mysoulmate.providers.mixpanel import MixpanelProvider

        provider: Any = MixpanelProvider("bench-token", sink.url, api_secret="bench-secret")
        size = 2000  # as runtime/forwarding.build_providers
    else:
        from mysoulmate.providers.ga4 import Ga4Provider

        provider = Ga4Provider("G-BENCH", "bench-secret", f"{sink.url}/mp/collect")
        size = 500  # as runtime/forwarding.build_providers
    ledger = SqliteForwardLedger(ledger_dir / f"{name}-{time.monotonic_ns()}.db")
    return Forwarder(provider, NoGuard(), ledger, batch_size=size)


def requests_per_thousand(name: str, sink: Sink, tmp: Path) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for mix in ("realistic", "dense"):
        forwarder = build(name, sink, tmp)
        batch = messages(mix, 1000, run=0)
        sink.take()
        outcome = forwarder.forward(batch)
        sent = sink.take()
        people = len({m.userId for m in batch})
        found[mix] = {
            "requests": len(sent),
            "by_path": _by_path(sent),
            "sent": outcome.sent,
            "skipped": dict(outcome.skipped),
            "people": people,
            "ga4_floor": people if name == "ga4" else None,
            "bytes": sum(len(body) for _, body in sent),
        }
    return found


def _by_path(sent: Sequence[tuple[str, bytes]]) -> dict[str, int]:
    paths: dict[str, int] = {}
    for path, _ in sent:
        key = path.split("?")[0]
        paths[key] = paths.get(key, 0) + 1
    return paths


def throughput(name: str, sink: Sink, tmp: Path, rounds: int, events: int) -> dict[str, Any]:
    import requests

    forwarded: list[float] = []
    floor: list[float] = []
    session = requests.Session()
    for run in range(rounds):
        forwarder = build(name, sink, tmp)
        batch = messages("realistic", events, run=run + 1)
        sink.take()
        started = time.perf_counter()
        forwarder.forward(batch)
        forwarded.append(events / (time.perf_counter() - started))
        sent = sink.take()
        started = time.perf_counter()
        for path, body in sent:  # the same requests and bodies, from a bare client
            if name == "mixpanel":
                session.post(f"{sink.url}{path}", data=body, timeout=10)
            else:
                request = urllib.request.Request(f"{sink.url}{path}", data=body, method="POST")
                with urllib.request.urlopen(request, timeout=10) as answer:
                    answer.read()
        floor.append(events / (time.perf_counter() - started))
        sink.take()
    return {
        "events_per_s": median(forwarded),
        "floor_events_per_s": median(floor),
        "ratio_to_floor": ratio(median(forwarded), median(floor)),
        "rounds": rounds,
        "events_per_round": events,
    }


def run(quick: bool) -> dict[str, Any]:
    results: dict[str, Any] = {}
    rounds, events = (2, 2000) if quick else (5, 5000)
    with tempfile.TemporaryDirectory(prefix="bench-forwarding-") as tmp:
        sinks = {"mixpanel": Sink(b'{"status": 1, "error": null}'), "ga4": Sink(b"")}
        for name, sink in sinks.items():
            results[name] = {
                "per_1000": requests_per_thousand(name, sink, Path(tmp)),
                "throughput": throughput(name, sink, Path(tmp), rounds, events),
            }
            sink.server.shutdown()
    rows = []
    for name, found in results.items():
        for mix, figures in found["per_1000"].items():
            rows.append(
                [
                    f"{name}, {mix}",
                    figures["people"],
                    figures["requests"],
                    json.dumps(figures["by_path"]),
                    figures["ga4_floor"] if figures["ga4_floor"] is not None else "-",
                    f"≤ {GOALS[name]}: {verdict(figures['requests'], GOALS[name])}",
                ]
            )
    print_table(
        ["provider, mix", "people", "requests", "by path", "GA4 floor", "goal"],
        rows,
        title="Provider HTTP requests per 1,000 events",
    )
    print_table(
        ["provider", "events/s", "floor events/s", "÷ floor"],
        [
            [
                name,
                found["throughput"]["events_per_s"],
                found["throughput"]["floor_events_per_s"],
                found["throughput"]["ratio_to_floor"],
            ]
            for name, found in results.items()
        ],
        title=f"Forwarder throughput ({rounds} rounds x {events} events, median)",
    )
    return results


if __name__ == "__main__":
    standalone_main("forwarding", run)
