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
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

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

from mysoulmate.observability.scrape_sources import QueueDepth as QueueDepth
from mysoulmate.observability.scrape_sources import ScrapeSources as ScrapeSources
from mysoulmate.observability.scrape_sources import current_sources
from mysoulmate.observability.scrape_sources import register_sources as register_sources
from mysoulmate.observability.signal_catalog import SIGNALS, Signal
from mysoulmate.observability.store_figures import ActiveUsersCollector as ActiveUsersCollector
from mysoulmate.observability.store_figures import PerfRegressionCollector

# No `<name>_created` series: they double the series count and no rule or panel reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]

# The classic text format every Prometheus version and prometheus_client's parser read.
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4


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
        hits, misses = current_sources().catalog_counts()
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
        queue = current_sources().local_queue()
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
        for provider, queue in sorted(current_sources().forward_queues().items()):
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
        stats = current_sources().pool_stats()
        if stats is not None:
            connections.add_metric(("max",), stats.get("pool_max", 0))
            connections.add_metric(("open",), stats.get("pool_size", 0))
            connections.add_metric(("idle",), stats.get("pool_available", 0))
            waiting.add_metric((), stats.get("requests_waiting", 0))
        yield connections
        yield waiting


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
