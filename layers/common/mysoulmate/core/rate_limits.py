"""Token buckets: how many requests a caller may make, with bursts.

A bucket holds up to ``burst`` tokens and refills at ``rate`` tokens per second; a request
takes one token or is refused with how long until one is back. The arithmetic is here
(pure); where buckets live is a `BucketStore`: `MemoryBuckets` in one process (the laptop,
and on Lambda per warm container), Redis when several pods must share them
(`storage.redis_buckets`).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Limit:
    """A named policy: ``rate`` tokens per second, at most ``burst`` at once."""

    name: str
    rate: float
    burst: int

    @property
    def window_seconds(self) -> int:
        """The time a full bucket takes to refill: the policy's window in the headers."""
        return max(1, math.ceil(self.burst / self.rate))


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    remaining: int  # whole tokens left after this request
    retry_after: float  # seconds until a token is back (0 when allowed)
    reset: float  # seconds until the bucket is full again


def take_token(tokens: float, updated: float, now: float, limit: Limit) -> tuple[float, Decision]:
    """The bucket after one request at ``now`` (tokens, last update): new tokens and the
    decision. Shared by every store so they all count alike."""
    tokens = min(float(limit.burst), tokens + max(0.0, now - updated) * limit.rate)
    allowed = tokens >= 1.0
    if allowed:
        tokens -= 1.0
    return tokens, decision(allowed, tokens, limit)


def decision(allowed: bool, tokens: float, limit: Limit) -> Decision:
    """What the client is told, from the tokens left after the request."""
    reset = (limit.burst - tokens) / limit.rate
    if allowed:
        return Decision(True, int(tokens), 0.0, reset)
    return Decision(False, 0, (1.0 - tokens) / limit.rate, reset)


class BucketStore(Protocol):
    async def take(self, key: str, limit: Limit, now: float) -> Decision:
        """Take one token from the bucket ``key`` of ``limit``."""
        ...


class MemoryBuckets:
    """Buckets in this process's memory, the least recently used forgotten beyond
    ``max_keys`` (a forgotten bucket comes back full: generous, never wrong the other way
    for more than one burst). Used from the event loop only, so no lock is needed."""

    def __init__(self, max_keys: int = 100_000) -> None:
        self._max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    async def take(self, key: str, limit: Limit, now: float) -> Decision:
        return self.take_now(key, limit, now)

    def take_now(self, key: str, limit: Limit, now: float) -> Decision:
        bucket = f"{limit.name}:{key}"  # each policy counts apart
        tokens, updated = self._buckets.pop(bucket, (float(limit.burst), now))
        tokens, decision = take_token(tokens, updated, now, limit)
        self._buckets[bucket] = (tokens, now)
        if len(self._buckets) > self._max_keys:
            self._buckets.popitem(last=False)
        return decision
