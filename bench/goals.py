"""One table of every goal the benchmarks measure: measure, value, floor, ratio, goal, met.

`python -m bench` prints it after its runs (from bench/results/latest.json, so a goal whose
benchmark did not run this time shows its last figures, with the time they were taken);
`python -m bench.goals` prints it without running anything. A benchmark whose results lack a
figure (an older run, a failed one) leaves its rows out rather than inventing them.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from bench._common import ROOT, print_table

RESULTS = ROOT / "bench" / "results" / "latest.json"


@dataclass(frozen=True)
class Goal:
    benchmark: str
    measure: str
    value: float | None
    floor: float | None
    ratio: float | None
    goal: str
    met: bool | None  # None: information, no goal

    def row(self, when: str) -> list[Any]:
        verdict = "—" if self.met is None else ("met" if self.met else "MISSED")
        return [
            self.benchmark,
            self.measure,
            _figure(self.value),
            _figure(self.floor),
            "—" if self.ratio is None else f"{self.ratio:.2f}",
            self.goal,
            verdict,
            when,
        ]


def _figure(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def _median(stats: Any) -> float:
    return float(stats["median"] if isinstance(stats, dict) else stats)


def _cold_start(result: dict[str, Any]) -> Iterator[Goal]:
    for name, comparison in result["comparisons"].items():
        if comparison.get("info_only"):
            continue
        ratio, target = comparison["ready"], comparison["target"]
        yield Goal(
            "cold_start",
            f"{name}: init to ready",
            None,
            None,
            ratio,
            f"≤ {target} x",
            ratio <= target,
        )


def _warm(result: dict[str, Any]) -> Iterator[Goal]:
    warm = result["lambda"]
    # Issue 18's floor: a bare route that validates TrackRequest and sends to the same queue.
    ratio, target = warm["ratio"], warm["target"]
    us = warm["us_per_request"]
    yield Goal(
        "warm",
        "POST /track through the Lambda handler (µs)",
        _median(us[warm["full"]]),
        _median(us[warm["floor"]]),
        ratio,
        f"≤ {target} x",
        ratio <= target,
    )


def _consumer(result: dict[str, Any]) -> Iterator[Goal]:
    for mix, figures in result["dynamodb_calls"].items():
        calls, target = figures["calls_per_1000_events"], figures["target"]
        yield Goal(
            "consumer",
            f"DynamoDB calls per 1,000 events, {mix}",
            calls,
            None,
            None,
            f"≤ {target}",
            calls <= target,
        )


def _pg_ingest(result: dict[str, Any]) -> Iterator[Goal]:
    rates = result["events_per_second"]
    ratio, target = result["ingest_vs_floor"], result["target"]
    yield Goal(
        "pg_ingest",
        "PostgreSQL consumer ingest (events/s)",
        _median(rates["ingest"]),
        _median(rates["floor"]),
        ratio,
        f"≥ {target} x",
        ratio >= target,
    )


def _read_side(result: dict[str, Any]) -> Iterator[Goal]:
    for backend, table in result["tables"].items():
        for name, target in table.get("targets", {}).items():
            ratio = target["ratio"]
            yield Goal(
                "read_side",
                f"{backend}: {name}",
                None,
                None,
                ratio,
                f"≤ {target['target']} x" if "target" in target else "—",
                ratio <= target["target"] if "target" in target else None,
            )


def _ingest(result: dict[str, Any]) -> Iterator[Goal]:
    shapes = result["local_server"]["shapes"]
    floor = _median(shapes["floor: /v1/track, 1 msg"]["events_per_second"])
    for name, shape in shapes.items():
        if name.startswith("floor"):
            continue
        value = _median(shape["events_per_second"])
        yield Goal("ingest", f"{name} (events/s)", value, floor, value / floor, "—", None)


def _http_ingest(result: dict[str, Any]) -> Iterator[Goal]:
    shapes = result["shapes"]
    ratio, target = result["ratio_vs_floor"], result["target"]
    yield Goal(
        "http_ingest",
        f"one event per request, {result['clients']} clients (events/s)",
        _median(shapes[result["ours"]]["events_per_second"]),
        _median(shapes[result["floor"]]["events_per_second"]),
        ratio,
        f"≥ {target} x",
        ratio >= target,
    )


def _media(result: dict[str, Any]) -> Iterator[Goal]:
    throughput = result["throughput"]
    per_second = throughput["images_per_second"]
    ratio, target = throughput["ratio_vs_pillow_thumbnail"], throughput["goal"]
    yield Goal(
        "media",
        "images resized per second",
        _median(per_second["ours: MediaService.serve (cache miss)"]),
        _median(per_second["floor: Pillow thumbnail()"]),
        ratio,
        f"≥ {target} x",
        ratio >= target,
    )


def _perf(result: dict[str, Any]) -> Iterator[Goal]:
    for backend in ("sqlite", "postgres"):
        figures = result["consumer"][backend]
        rates = figures["measurements_per_second"]
        yield Goal(
            "perf",
            f"{backend}: measurements/s into the sketches",
            _median(rates["sketch"]),
            _median(rates["floor"]),
            figures["sketch_share_of_floor"],
            "—",
            None,
        )


def _user_reads(result: dict[str, Any]) -> Iterator[Goal]:
    for part, unit, what in (("growth", "ms", "ms"), ("dynamodb_items", "items", "items read")):
        for measure, figures in result.get(part, {}).items():
            if "target" not in figures:
                continue
            ratio, target = figures["ratio"], figures["target"]
            yield Goal(
                "user_reads",
                f"{measure}: {what} at 40k events, ÷ at 20k",
                figures[f"{unit}_40k"],
                None,
                ratio,
                f"≤ {target} x",
                ratio <= target,
            )


def _dynamo_sets(result: dict[str, Any]) -> Iterator[Goal]:
    for placed in result["placed"]:
        yield Goal(
            "dynamo_sets",
            f"DynamoDB set of 10M users, ids of {placed['id_bytes']} B: fullest item (KB)",
            round(placed["fullest_item_bytes"] / 1024, 1),
            None,
            None,
            "< 400",
            placed["under_limit"],
        )


EXTRACTORS: dict[str, Callable[[dict[str, Any]], Iterator[Goal]]] = {
    "cold_start": _cold_start,
    "warm": _warm,
    "consumer": _consumer,
    "pg_ingest": _pg_ingest,
    "read_side": _read_side,
    "ingest": _ingest,
    "http_ingest": _http_ingest,
    "media": _media,
    "perf": _perf,
    "user_reads": _user_reads,
    "dynamo_sets": _dynamo_sets,
}


def goals(benchmarks: dict[str, Any]) -> list[tuple[Goal, str]]:
    """Every goal found in the results, with when its benchmark ran."""
    found: list[tuple[Goal, str]] = []
    for name, extract in EXTRACTORS.items():
        result = benchmarks.get(name)
        if not result:
            continue
        try:
            rows = list(extract(result))
        except (KeyError, TypeError, ZeroDivisionError):
            continue  # an older layout of this benchmark's results: nothing to show
        when = str(result.get("finished_at", ""))[:16].replace("T", " ")
        found += [(row, when) for row in rows]
    return found


def print_goals(benchmarks: dict[str, Any]) -> int:
    """Print the table; return how many goals are missed."""
    rows = goals(benchmarks)
    print_table(
        ["benchmark", "measure", "value", "floor", "ratio", "goal", "met", "measured (UTC)"],
        [goal.row(when) for goal, when in rows],
        title="Goals",
    )
    return sum(1 for goal, _ in rows if goal.met is False)


def main() -> int:
    if not RESULTS.exists():
        print(f"no results yet: run `python -m bench` ({RESULTS.relative_to(ROOT)})")
        return 1
    missed = print_goals(json.loads(RESULTS.read_text())["benchmarks"])
    print(f"\n{missed} goal(s) missed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
