"""Where the figures `/metrics` reads at scrape time come from (queue depth, the store,
catalog counters): handed in by the composition root, since observability sits below storage,
the queue and the domains."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol


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


def current_sources() -> ScrapeSources:
    return _sources
