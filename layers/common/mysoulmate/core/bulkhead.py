"""Bulkheads: a dependency's blocking calls get their own bounded pool of threads and a
breaker, so a dependency that is down or slow cannot take the whole service with it.

Without them every blocking call shares anyio's one thread pool: during a database outage,
80 waiting reads held every thread and a `/track` that only needs the queue waited 16 s.
With them:

* each bulkhead runs at most ``capacity`` calls at once, on threads of its own (an anyio
  `CapacityLimiter`); a call that cannot get a slot within ``wait_seconds`` fails at once;
* a call that fails with one of the ``trip_on`` errors opens the breaker for
  ``cooldown_seconds``: calls in that time fail immediately, without touching the
  dependency; after it, calls go through again (the first success closes it for good);
* a refused call raises `DependencyUnavailableError` (503) with ``Retry-After``.

On Lambda a container serves one request at a time: calls run inline (no thread hop), and
the breaker still spares each request the dependency's connect timeout during an outage.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar, ParamSpec, TypeVar

from mysoulmate.core import concurrency
from mysoulmate.core.errors import DependencyUnavailableError

if TYPE_CHECKING:
    from anyio import CapacityLimiter

P = ParamSpec("P")
T = TypeVar("T")


class Bulkhead:
    instances: ClassVar[list[Bulkhead]] = []  # every bulkhead of the process (`reset_all`)

    def __init__(
        self,
        name: str,
        *,
        capacity: int,
        wait_seconds: float,
        cooldown_seconds: float,
        trip_on: tuple[type[BaseException], ...],
        code: str = "service_unavailable",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.capacity = capacity
        self.wait_seconds = wait_seconds
        self.cooldown_seconds = cooldown_seconds
        self._trip_on = trip_on
        self._code = code
        self._clock = clock
        self._open_until = 0.0
        # Built in the event loop, on first use.
        self._slots: CapacityLimiter | None = None
        self._threads: CapacityLimiter | None = None
        Bulkhead.instances.append(self)

    def reset(self) -> None:
        """Close the breaker and forget the limiters (tests; a new event loop)."""
        self._open_until = 0.0
        self._slots = self._threads = None

    @classmethod
    def reset_all(cls) -> None:
        for bulkhead in cls.instances:
            bulkhead.reset()

    @property
    def is_open(self) -> bool:
        return self._clock() < self._open_until

    def _refuse(self, retry_after: float) -> DependencyUnavailableError:
        seconds = max(1, math.ceil(retry_after))
        return DependencyUnavailableError(
            code=self._code, dependency=self.name, headers={"Retry-After": str(seconds)}
        )

    def _check_closed(self) -> None:
        remaining = self._open_until - self._clock()
        if remaining > 0:
            raise self._refuse(remaining)

    def _trip(self) -> None:
        self._open_until = self._clock() + self.cooldown_seconds

    async def run(self, func: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``func(*args, **kwargs)`` in this bulkhead, or a 503 if it is full or open."""
        self._check_closed()
        try:
            if concurrency.ON_LAMBDA:
                return func(*args, **kwargs)
            return await self._in_thread(functools.partial(func, *args, **kwargs))
        except self._trip_on:
            self._trip()
            raise

    async def _in_thread(self, call: Callable[[], T]) -> T:
        import anyio
        from anyio import to_thread

        if self._slots is None:
            self._slots = anyio.CapacityLimiter(self.capacity)
            # Threads of our own, as many as slots: never anyio's pool shared by everyone.
            self._threads = anyio.CapacityLimiter(self.capacity)
        slots = self._slots
        try:
            slots.acquire_nowait()  # the usual case: a free slot, no timer to arm
        except anyio.WouldBlock:
            with anyio.move_on_after(self.wait_seconds) as waiting:
                await slots.acquire()
            if waiting.cancelled_caught:
                raise self._refuse(self.wait_seconds) from None
        try:
            return await to_thread.run_sync(call, limiter=self._threads)
        finally:
            slots.release()
