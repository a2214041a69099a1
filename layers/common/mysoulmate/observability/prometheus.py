"""Prometheus metrics of the container and laptop shapes (never imported on Lambda).

Two kinds of families:

* the signals of `observability.signals` (counters and histograms updated as things
  happen), one prometheus_client metric per `SIGNALS` entry;
* figures read at scrape time (queue depth and age, active users, i18n catalog cache,
  process memory and CPU), by collectors that ask the source when scraped.

Several uvicorn workers: when ``PROMETHEUS_MULTIPROC_DIR`` is set (before the process
starts; prometheus_client reads it at import), every worker writes its counters and
histograms to memory-mapped files in that directory and a scrape, whichever worker serves
it, adds up all workers' files (prometheus_client's multiprocess mode). The directory must
be empty when the server starts (the container entrypoint wipes it). Figures read at
scrape time come from shared sources (the queue and storage) and are the same in every
worker; process memory and CPU are summed over the workers' processes.
"""

from __future__ import annotations

import math
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from mysoulmate.observability.signal_catalog import SIGNALS, Signal

# No `<name>_created` series: they double the series count and no rule or panel reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]

# The classic text format every Prometheus version and prometheus_client's parser read.
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
ACTIVE_USERS_TTL_SECONDS = 60.0


class QueueDepth(Protocol):
    """What the queue collector reads from the local durable queue."""

    def depth(self) -> tuple[int, int]: ...
    def oldest_sent_at(self) -> float | None: ...


def _nothing() -> None:
    return None


@dataclass
class ScrapeSources:
    """Where the figures read at scrape time come from. Observability sits below storage,
    the queue and the domains, so the composition root hands these in at start-up
    (`register_sources`); until then those families have no samples."""

    local_queue: Callable[[], QueueDepth | None] = _nothing
    pool_stats: Callable[[], dict[str, int] | None] = _nothing
    # (the store, so the cache is per store; its active users by window, from the rollups)
    store: Callable[[], object | None] = _nothing
    active_users: Callable[[Any], dict[str, int]] | None = None
    # (the store → every screen's latest p90 render time and change, `perf.ScreenChange`s)
    perf_screens: Callable[[Any], list[Any]] | None = None
    catalog_counts: Callable[[], tuple[int, int]] = lambda: (0, 0)  # (hits, misses)
    # Each provider's local forward queue (the laptop shape), by provider name.
    forward_queues: Callable[[], dict[str, QueueDepth]] = dict


_sources = ScrapeSources()


def register_sources(sources: ScrapeSources) -> None:
    global _sources
    _sources = sources


def multiprocess_dir() -> Path | None:
    value = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    return Path(value) if value else None


class PrometheusSignals:
    """The prometheus_client metric behind every signal, and the hot paths that update it."""

    def __init__(self, registry: CollectorRegistry, signals: dict[str, Signal]) -> None:
        self._counters: dict[str, Counter] = {}
        self._histograms: dict[str, Histogram] = {}
        for name, spec in signals.items():
            if spec.kind == "counter":
                self._counters[name] = Counter(
                    spec.family, spec.help, spec.labels, registry=registry
                )
            else:
                self._histograms[name] = Histogram(
                    spec.family, spec.help, spec.labels, registry=registry, buckets=spec.buckets
                )
        self._requests = self._counters["Requests"]
        self._latency = self._histograms["Latency"]
        # (route, method, status) -> the two children: one dict lookup per request.
        self._http_children: dict[tuple[str, str, str], tuple[Counter, Histogram]] = {}
        self.catalog = CatalogCacheSync(registry)
        self._sync_catalog_per_request = multiprocess_dir() is not None

    def add(self, signal: str, value: float, labels: dict[str, str]) -> None:
        counter = self._counters.get(signal)
        if counter is not None:
            (counter.labels(**labels) if labels else counter).inc(value)
            return
        histogram = self._histograms[signal]
        (histogram.labels(**labels) if labels else histogram).observe(value)

    def http_request(self, route: str, method: str, status: str, seconds: float) -> None:
        key = (route, method, status)
        children = self._http_children.get(key)
        if children is None:
            children = (self._requests.labels(*key), self._latency.labels(*key))
            self._http_children[key] = children
        children[0].inc()
        children[1].observe(seconds)
        if self._sync_catalog_per_request:
            # Each worker publishes its own catalog counters; see CatalogCacheSync.
            self.catalog.sync()


class CatalogCacheSync:
    """The i18n catalog cache's hits and misses (plain ints on `CatalogStore`) as counters.

    `sync()` adds what the store counted since the last sync. A scrape syncs first, so a
    single process is always exact; under several workers each worker also syncs after
    every request it serves, so the summed counters are current across workers too.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self._hits = Counter(
            "mysoulmate_i18n_catalog_cache_hits",
            "Catalog lookups served from the in-process cache.",
            registry=registry,
        )
        self._misses = Counter(
            "mysoulmate_i18n_catalog_cache_misses",
            "Catalog lookups that (re)loaded a locale file.",
            registry=registry,
        )
        self._seen = (0, 0)
        self._lock = threading.Lock()

    def sync(self) -> None:
        hits, misses = _sources.catalog_counts()
        if (hits, misses) == self._seen:
            return
        with self._lock:
            seen_hits, seen_misses = self._seen
            if hits > seen_hits:
                self._hits.inc(hits - seen_hits)
            if misses > seen_misses:
                self._misses.inc(misses - seen_misses)
            self._seen = (max(hits, seen_hits), max(misses, seen_misses))


class QueueCollector(Collector):
    """Depth and age of the local durable queue, read when scraped (SQS: CloudWatch has them)."""

    def collect(self) -> Iterator[Metric]:
        queue = _sources.local_queue()
        if queue is None:
            return
        waiting, dead = queue.depth()
        oldest = queue.oldest_sent_at()
        age = max(time.time() - oldest, 0.0) if oldest is not None else 0.0
        yield GaugeMetricFamily(
            "mysoulmate_queue_messages",
            "Messages in the local queue, waiting or in flight.",
            value=waiting,
        )
        yield GaugeMetricFamily(
            "mysoulmate_queue_dead_letters",
            "Messages in the local queue's dead letters.",
            value=dead,
        )
        yield GaugeMetricFamily(
            "mysoulmate_queue_oldest_message_age_seconds",
            "Age of the oldest message in the local queue (0 when empty).",
            value=age,
        )


class ForwardQueueCollector(Collector):
    """Each provider's local forward queue, read when scraped: the forward lag is the age of
    its oldest message, i.e. of the oldest stored event the provider does not have yet. It
    grows during an outage, when no chunk is accepted to feed the `ForwardLag` histogram."""

    def collect(self) -> Iterator[Metric]:
        waiting = GaugeMetricFamily(
            "mysoulmate_forward_queue_messages",
            "Messages in a provider's forward queue, waiting or in flight.",
            labels=["provider"],
        )
        dead = GaugeMetricFamily(
            "mysoulmate_forward_queue_dead_letters",
            "Messages in a provider's forward dead letters.",
            labels=["provider"],
        )
        oldest = GaugeMetricFamily(
            "mysoulmate_forward_oldest_age_seconds",
            "Age of the oldest message waiting for a provider (0 when none): the forward lag.",
            labels=["provider"],
        )
        now = time.time()
        for provider, queue in sorted(_sources.forward_queues().items()):
            queued, dead_letters = queue.depth()
            sent = queue.oldest_sent_at()
            waiting.add_metric([provider], queued)
            dead.add_metric([provider], dead_letters)
            oldest.add_metric([provider], max(now - sent, 0.0) if sent is not None else 0.0)
        yield waiting
        yield dead
        yield oldest


class StoragePoolCollector(Collector):
    """The PostgreSQL connection pool of this process, read when scraped. The families are
    always declared; they have samples only with STORAGE_BACKEND=postgres."""

    def collect(self) -> Iterator[Metric]:
        connections = GaugeMetricFamily(
            "mysoulmate_storage_pool_connections",
            "PostgreSQL pool connections: max (the limit), open, and idle (available).",
            labels=("state",),
        )
        waiting = GaugeMetricFamily(
            "mysoulmate_storage_pool_requests_waiting",
            "Requests queued for a PostgreSQL connection.",
            labels=(),
        )
        stats = _sources.pool_stats()
        if stats is not None:
            connections.add_metric(("max",), stats.get("pool_max", 0))
            connections.add_metric(("open",), stats.get("pool_size", 0))
            connections.add_metric(("idle",), stats.get("pool_available", 0))
            waiting.add_metric((), stats.get("requests_waiting", 0))
        yield connections
        yield waiting


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
        sources = self._own_sources or _sources
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


class WorkerProcessesCollector(Collector):
    """process_resident_memory_bytes and process_cpu_seconds_total summed over the workers
    that write to the multiprocess directory (its files are named after their pids)."""

    def __init__(self, directory: Path) -> None:
        self._dir = directory

    def collect(self) -> Iterator[Metric]:
        pids = {int(p.stem.rsplit("_", 1)[1]) for p in self._dir.glob("*_*.db") if _pid_of(p)}
        pids.add(os.getpid())
        totals: dict[str, float] = {}
        for pid in sorted(pids):
            if not Path(f"/proc/{pid}").exists():
                continue
            for family in _process_collector(pid).collect():
                for sample in family.samples:
                    if sample.name in _SUMMED_PROCESS_SAMPLES:
                        totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
        for name, (kind, help_text) in _SUMMED_PROCESS_SAMPLES.items():
            if name not in totals:
                continue
            if kind == "counter":
                from prometheus_client.metrics_core import CounterMetricFamily

                yield CounterMetricFamily(name.removesuffix("_total"), help_text, totals[name])
            else:
                yield GaugeMetricFamily(name, help_text, totals[name])


def _process_collector(pid: int) -> Collector:
    from prometheus_client import ProcessCollector

    return ProcessCollector(pid=lambda: pid, registry=None)


_SUMMED_PROCESS_SAMPLES = {
    "process_resident_memory_bytes": ("gauge", "Resident memory of all worker processes."),
    "process_cpu_seconds_total": ("counter", "CPU time of all worker processes (seconds)."),
}


def _pid_of(path: Path) -> bool:
    return path.stem.rsplit("_", 1)[-1].isdigit()


# -- the process's registries ---------------------------------------------------------------


# Built once per process; the worker thread and request threads may ask at the same time,
# and registering a family twice is an error, hence the lock around the builders.
_build_lock = threading.RLock()


@lru_cache(maxsize=1)
def _signals_registry() -> CollectorRegistry:
    """Where the signals' metrics live (in multiprocess mode: only to name them; the values
    are in the mmapped files)."""
    directory = multiprocess_dir()
    if directory is not None:
        directory.mkdir(parents=True, exist_ok=True)
    return CollectorRegistry(auto_describe=True)


def signals_exporter() -> PrometheusSignals:
    with _build_lock:
        return _signals_exporter()


@lru_cache(maxsize=1)
def _signals_exporter() -> PrometheusSignals:
    return PrometheusSignals(_signals_registry(), SIGNALS)


def scrape_registry() -> CollectorRegistry:
    """What ``GET /metrics`` exposes: the signals (this process's, or every worker's) plus
    the figures read at scrape time."""
    with _build_lock:
        return _scrape_registry()


@lru_cache(maxsize=1)
def _scrape_registry() -> CollectorRegistry:
    signals_exporter()  # every signal family exists before the first scrape
    directory = multiprocess_dir()
    if directory is None:
        registry = _signals_registry()
        from prometheus_client import ProcessCollector

        ProcessCollector(registry=registry)
    else:
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=str(directory))  # type: ignore[no-untyped-call]
        registry.register(WorkerProcessesCollector(directory))
    registry.register(QueueCollector())
    registry.register(ForwardQueueCollector())
    registry.register(StoragePoolCollector())
    registry.register(ActiveUsersCollector())
    registry.register(PerfRegressionCollector())
    return registry


def exposition() -> bytes:
    """The Prometheus text exposition (blocking: scrape-time collectors read storage)."""
    signals_exporter().catalog.sync()
    return generate_latest(scrape_registry())


def snapshot() -> list[dict[str, Any]]:
    """The same families as plain data, for ``GET /api/v1/metrics``."""
    signals_exporter().catalog.sync()
    return [_family_data(family) for family in scrape_registry().collect()]


def _family_data(family: Metric) -> dict[str, Any]:
    return {
        "name": family.name,
        "type": family.type,
        "help": family.documentation,
        "samples": [
            {"name": s.name, "labels": dict(s.labels), "value": s.value}
            for s in family.samples
            if math.isfinite(s.value)  # JSON has no NaN; bucket bounds are labels ("+Inf")
        ],
    }


def serve_metrics(port: int, host: str = "0.0.0.0") -> None:  # noqa: S104 - a pod's port
    """Expose ``GET /metrics`` on ``port`` from a daemon thread: the worker process, which
    serves no HTTP otherwise, is scraped like the API (its batches, forwarding, storage)."""
    from prometheus_client import start_http_server

    signals_exporter().catalog.sync()
    start_http_server(port, addr=host, registry=scrape_registry())
