"""FastAPI dependencies that hand routes their adapters (overridable in tests).

The API layer does not build adapters: the composition root (`mysoulmate.runtime`) passes
the factories to `create_app`, which installs them here with `provide_adapters`.

`async def` on purpose: FastAPI runs a plain `def` dependency in a worker thread, which
under Mangum costs a thread hand-off on every request (measured: 1,120 → 410 µs per track).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the ports load the analytics models: the i18n function never needs them
    from mysoulmate.analytics.gdpr import ErasureHook
    from mysoulmate.analytics.ports import EventStore, MessageQueue, SourceStore


@dataclass(frozen=True)
class Adapters:
    """Factories of the process's adapters (each returns the same built instance)."""

    store: Callable[[], EventStore]
    queue: Callable[[], MessageQueue]
    sources: Callable[[], SourceStore] | None = None  # write keys (Segment-compatible ingest)
    # Providers asked to erase a person along with us (Mixpanel's GDPR API, when configured).
    erasure_hooks: Callable[[], Sequence[ErasureHook]] | None = None


_adapters: Adapters | None = None


def provide_adapters(adapters: Adapters) -> None:
    global _adapters
    _adapters = adapters


def _installed() -> Adapters:
    if _adapters is None:
        raise RuntimeError("no adapters: build the app with create_app(..., adapters=...)")
    return _adapters


async def get_queue() -> MessageQueue:
    return _installed().queue()


async def get_store() -> EventStore:
    return _installed().store()


async def get_erasure_hooks() -> Sequence[ErasureHook]:
    hooks = _installed().erasure_hooks
    return hooks() if hooks is not None else ()


async def get_sources() -> SourceStore:
    sources = _installed().sources
    if sources is None:
        raise RuntimeError("no source store: pass sources= in Adapters")
    return sources()
