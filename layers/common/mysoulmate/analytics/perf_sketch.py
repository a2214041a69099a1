"""Performance measurements as mergeable quantile sketches, stored as additive counters.

A DDSketch (`ddsketch`, Datadog's reference implementation) with relative accuracy a maps
each value v > 0 to the bucket ``ceil(log_g v)`` with g = (1 + a) / (1 - a); every quantile
it answers is within a of the exact one (relative to it). Its state is nothing but a count
per bucket (plus a count of zeros), so we store exactly that: one counter per (cell, bucket),
where a cell is (UTC day, metric, name, app version, platform, device class). Merging two
sketches is adding their counters, which every backend does atomically in the transaction
that records the message (no read-modify-write of a blob, no lost update between workers),
and any range of days, versions or device classes is one sum. A summary costs the buckets of
the cells read — at most a few hundred per cell — never the measurements behind them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import date
from typing import NamedTuple

from ddsketch import DDSketch
from ddsketch.mapping import LogarithmicMapping

from mysoulmate.analytics.models import QueuedMessage
from mysoulmate.analytics.perf_models import PerfPayload, Quantiles

RELATIVE_ACCURACY = 0.01
_MAPPING = LogarithmicMapping(RELATIVE_ACCURACY)
# Two counters of a cell that are not buckets: values too small for a bucket (0 fps, no
# dropped frames), and the sum of the values in thousandths (for the mean). Both lie far
# outside the bucket keys any float can map to (about ±37,000 at 1 %).
ZERO_BUCKET = -1_000_000
SUM_BUCKET = 1_000_000
SUM_SCALE = 1_000


class PerfCell(NamedTuple):
    day: date
    metric: str
    name: str
    app_version: str
    platform: str
    device_class: str


class PerfRow(NamedTuple):
    """One stored counter: how many measurements of the cell fell in ``bucket`` (for
    SUM_BUCKET: the sum of their values, in thousandths)."""

    cell: PerfCell
    bucket: int
    amount: int


PerfDelta = Counter[tuple[PerfCell, int]]


def bucket_of(value: float) -> int:
    """The sketch bucket of a measurement (ZERO_BUCKET for values too small for one)."""
    if value > _MAPPING.min_possible:
        return int(_MAPPING.key(value))
    return ZERO_BUCKET


def payload_of(message: QueuedMessage) -> PerfPayload:
    return PerfPayload.model_validate(message.properties)


def perf_delta(messages: Iterable[QueuedMessage]) -> PerfDelta:
    """What storing these ``perf`` messages for the first time adds to the counters.

    The consumer's hot loop (one pass per measurement): a message's measurements share its
    version, platform and device class, so each (day, metric, name) builds its cell once, and
    the counts go into a plain dict (a Counter's ``+=`` on a new key costs a Python call)."""
    counts: dict[tuple[PerfCell, int], int] = {}
    for message in messages:
        payload = payload_of(message)
        platform = message.platform or "unknown"
        version, device = payload.appVersion, payload.deviceClass
        batch_day = message.timestamp.date()
        cells: dict[tuple[date, str, str], PerfCell] = {}
        for measurement in payload.measurements:
            metric, name, value = measurement.metric, measurement.name, measurement.value
            day = batch_day if measurement.timestamp is None else measurement.timestamp.date()
            cell = cells.get((day, metric, name))
            if cell is None:
                cell = PerfCell(day, metric, name, version, platform, device)
                cells[(day, metric, name)] = cell
            counter = (cell, bucket_of(value))
            counts[counter] = counts.get(counter, 0) + 1
            counter = (cell, SUM_BUCKET)
            counts[counter] = counts.get(counter, 0) + round(value * SUM_SCALE)
    return Counter(counts)


def delta_rows(delta: PerfDelta) -> list[PerfRow]:
    """The delta as rows in a fixed order (cell, bucket): two writers touching the same
    counters lock them in the same order, so they cannot deadlock. (The cells are sorted
    once and each one's buckets after: the same order as sorting every (cell, bucket), for a
    few hundred cell comparisons instead of thousands.)"""
    by_cell: dict[PerfCell, list[tuple[int, int]]] = {}
    for (cell, bucket), n in delta.items():
        if n:
            by_cell.setdefault(cell, []).append((bucket, n))
    return [
        PerfRow(cell, bucket, n) for cell in sorted(by_cell) for bucket, n in sorted(by_cell[cell])
    ]


class Tally:
    """The counters of any set of cells, summed: a sketch's buckets and the values' sum."""

    def __init__(self) -> None:
        self.buckets: Counter[int] = Counter()
        self.total = 0  # thousandths

    def add(self, bucket: int, count: int) -> None:
        if bucket == SUM_BUCKET:
            self.total += count
        else:
            self.buckets[bucket] += count

    @property
    def count(self) -> int:
        return sum(self.buckets.values())

    def sketch(self) -> DDSketch:
        sketch = DDSketch(RELATIVE_ACCURACY)
        for bucket, count in self.buckets.items():
            if count > 0:
                sketch.add(0.0 if bucket == ZERO_BUCKET else _MAPPING.value(bucket), count)
        return sketch

    def quantiles(self) -> Quantiles:
        count = self.count
        if count == 0:
            return Quantiles(count=0, p50=None, p90=None, p99=None, mean=None)
        sketch = self.sketch()
        return Quantiles(
            count=count,
            p50=_rounded(sketch.get_quantile_value(0.5)),
            p90=_rounded(sketch.get_quantile_value(0.9)),
            p99=_rounded(sketch.get_quantile_value(0.99)),
            mean=_rounded(self.total / SUM_SCALE / count),
        )


def _rounded(value: float | None) -> float | None:
    """Six significant digits: readable, and far inside the sketch's own 1 % error."""
    return None if value is None else float(f"{value:.6g}")
