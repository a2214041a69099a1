"""Bulkheads: bounded threads per dependency, a breaker that fails fast, 503 + Retry-After."""

from __future__ import annotations

import threading

import anyio
import pytest
from mysoulmate.core.bulkhead import Bulkhead
from mysoulmate.core.errors import DependencyUnavailableError


class Down(RuntimeError):
    pass


def make(clock: list[float] | None = None, capacity: int = 2, wait: float = 0.2) -> Bulkhead:
    now = clock if clock is not None else [0.0]
    return Bulkhead(
        "db",
        capacity=capacity,
        wait_seconds=wait,
        cooldown_seconds=5.0,
        trip_on=(Down,),
        clock=lambda: now[0],
    )


def test_a_failure_opens_the_breaker_and_calls_fail_fast_until_the_cooldown_ends() -> None:
    clock = [100.0]
    bulkhead = make(clock)
    calls: list[str] = []

    def down() -> None:
        calls.append("down")
        raise Down

    def up() -> str:
        calls.append("up")
        return "ok"

    async def scenario() -> None:
        with pytest.raises(Down):
            await bulkhead.run(down)
        with pytest.raises(DependencyUnavailableError) as refused:
            await bulkhead.run(up)
        assert refused.value.status_code == 503
        assert refused.value.headers["Retry-After"] == "5"
        assert refused.value.params["dependency"] == "db"
        clock[0] += 5.0
        assert await bulkhead.run(up) == "ok"

    anyio.run(scenario)
    assert calls == ["down", "up"]  # the refused call never reached the dependency


def test_errors_it_does_not_trip_on_leave_it_closed() -> None:
    bulkhead = make()

    def bug() -> None:
        raise KeyError("x")

    async def scenario() -> None:
        with pytest.raises(KeyError):
            await bulkhead.run(bug)
        assert not bulkhead.is_open

    anyio.run(scenario)


def test_at_most_capacity_calls_run_and_a_call_waiting_too_long_is_refused() -> None:
    bulkhead = make(capacity=2, wait=0.2)
    release = threading.Event()
    running: list[int] = []
    peak = [0]

    def slow() -> None:
        running.append(1)
        peak[0] = max(peak[0], len(running))
        release.wait(5)
        running.pop()

    outcomes: list[str] = []

    async def one() -> None:
        try:
            await bulkhead.run(slow)
            outcomes.append("ran")
        except DependencyUnavailableError:
            outcomes.append("refused")

    async def scenario() -> None:
        async with anyio.create_task_group() as tasks:
            for _ in range(3):
                tasks.start_soon(one)
            await anyio.sleep(0.5)  # the third waited past wait_seconds by now
            release.set()

    anyio.run(scenario)
    assert sorted(outcomes) == ["ran", "ran", "refused"]
    assert peak[0] == 2


def test_a_full_storage_bulkhead_leaves_other_bulkheads_their_threads() -> None:
    storage = make(capacity=1, wait=0.1)
    queue = Bulkhead("queue", capacity=1, wait_seconds=1, cooldown_seconds=1, trip_on=(Down,))
    release = threading.Event()

    async def scenario() -> str:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(storage.run, release.wait, 5)
            await anyio.sleep(0.05)
            answer = await queue.run(lambda: "queued")
            release.set()
        return answer

    assert anyio.run(scenario) == "queued"
