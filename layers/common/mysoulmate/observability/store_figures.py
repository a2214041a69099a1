"""Scrape-time figures computed from storage (active users, perf regressions), cached for a
while per store: a scrape every 15 s must not re-read a month of rollups."""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from mysoulmate.observability.scrape_sources import ScrapeSources, current_sources

ACTIVE_USERS_TTL_SECONDS = 60.0


class StoreFiguresCollector(Collector):
    """Figures computed from storage at scrape time, cached for ``ttl`` seconds: a scrape every
    15 s must not re-read a month of rollups. The cache belongs to one store (tests and
    `reset_backends` build new ones). Subclasses name their source and shape the families."""

    what = "figures"

    def __init__(
        self,
        ttl: float = ACTIVE_USERS_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        sources: ScrapeSources | None = None,
    ) -> None:
        self._ttl = ttl
        self._clock = clock
        self._own_sources = sources  # None: whatever the composition root registered
        self._cached: tuple[Callable[[], object], float, Any] | None = None
        self._lock = threading.Lock()

    def source(self, sources: ScrapeSources) -> Callable[[Any], Any] | None:
        raise NotImplementedError

    def figures(self) -> Any:
        sources = self._own_sources or current_sources()
        compute = self.source(sources)
        if compute is None:
            return None
        with self._lock:
            store = sources.store()
            now = self._clock()
            cached = self._cached
            # The store itself (weakly), not its id: a new store may reuse a freed one's id.
            same = cached is not None and cached[0]() is store
            if cached is not None and same and now - cached[1] < self._ttl:
                return cached[2]
            try:
                figures = compute(store)
            except Exception:  # noqa: BLE001 - a scrape must not fail on a storage hiccup
                from mysoulmate.observability.powertools import get_logger

                get_logger().warning("%s unavailable for /metrics", self.what, exc_info=True)
                return cached[2] if cached is not None and same else None
            self._cached = (_weak(store), now, figures)
            return figures


def _weak(store: object) -> Callable[[], object]:
    """A weak reference to the store (or to nothing, for stores that take none)."""
    try:
        return weakref.ref(store)
    except TypeError:
        return lambda: None


class ActiveUsersCollector(StoreFiguresCollector):
    """Distinct active users today and over the last 7 and 30 UTC days, from the rollups."""

    what = "active users"

    def source(self, sources: ScrapeSources) -> Callable[[Any], Any] | None:
        return sources.active_users

    def collect(self) -> Iterator[Metric]:
        figures: dict[str, int] | None = self.figures()
        if figures is None:
            return
        family = GaugeMetricFamily(
            "mysoulmate_active_users",
            "Distinct users with a track event in the window (UTC days, today included).",
            labels=("window",),
        )
        for window, users in figures.items():
            family.add_metric((window,), users)
        yield family


class PerfRegressionCollector(StoreFiguresCollector):
    """Each screen's p90 render time in its latest app version, its change since the version
    before, and whether that change is a regression (PERF_REGRESSION_THRESHOLD), from the
    perf sketches of the last PERF_REGRESSION_DAYS days. The families are always declared."""

    what = "perf regressions"

    def source(self, sources: ScrapeSources) -> Callable[[Any], Any] | None:
        return sources.perf_screens

    def collect(self) -> Iterator[Metric]:
        labels = ("screen", "platform", "version")
        p90 = GaugeMetricFamily(
            "mysoulmate_perf_render_p90_milliseconds",
            "p90 render time of a screen in its latest app version (sketch, 1 % accuracy).",
            labels=labels,
        )
        change = GaugeMetricFamily(
            "mysoulmate_perf_render_p90_change_ratio",
            "p90 render time of the latest app version / the previous version's, minus 1.",
            labels=(*labels, "previous"),
        )
        regressed = GaugeMetricFamily(
            "mysoulmate_perf_render_regressed",
            "1 when the screen's p90 render time grew by more than PERF_REGRESSION_THRESHOLD.",
            labels=labels,
        )
        for screen in self.figures() or ():
            key = (screen.name, screen.platform, screen.appVersion)
            p90.add_metric(key, screen.p90)
            regressed.add_metric(key, 1.0 if screen.regressed else 0.0)
            if screen.change is not None:
                change.add_metric((*key, screen.previousVersion or ""), screen.change)
        yield p90
        yield change
        yield regressed
