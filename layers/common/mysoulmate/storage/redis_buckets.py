"""Rate-limit buckets in Redis, shared by every pod of the container shape.

One Lua script per request reads, refills, takes and writes the bucket atomically, with
Redis' own clock (pods' clocks may drift apart). Keys expire once a bucket would be full
again, so idle callers cost nothing.

Redis is a guard, not a dependency of ingest: if it cannot answer within
``timeout_seconds``, the pod falls back to its own in-memory buckets for
``fallback_seconds`` (each pod then limits alone, which is looser but never unlimited),
and says so in its log and the ``RateLimitFallbacks`` signal.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from typing import TYPE_CHECKING, Any

from mysoulmate.core.rate_limits import Decision, Limit, MemoryBuckets, decision
from mysoulmate.observability import count, get_logger

if TYPE_CHECKING:
    from redis.asyncio import Redis

KEY_PREFIX = "mysoulmate:ratelimit:"
_SCRIPT = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local bucket = redis.call('HMGET', KEYS[1], 't', 'u')
local tokens = tonumber(bucket[1])
local updated = tonumber(bucket[2])
if tokens == nil or updated == nil then
  tokens = burst
  updated = now
end
tokens = math.min(burst, tokens + math.max(0, now - updated) * rate)
local allowed = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
end
redis.call('HSET', KEYS[1], 't', tostring(tokens), 'u', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {allowed, tostring(tokens)}
"""


class RedisBuckets:
    def __init__(
        self,
        url: str,
        *,
        timeout_seconds: float = 0.25,
        fallback_seconds: float = 5.0,
        client: Redis | None = None,
    ) -> None:
        self._url = url
        self._timeout = timeout_seconds
        self._fallback_seconds = fallback_seconds
        self._client = client
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Redis] = (
            weakref.WeakKeyDictionary()
        )
        self._scripts: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = (
            weakref.WeakKeyDictionary()
        )
        self._local = MemoryBuckets()
        self._fallback_until = 0.0

    def _redis(self) -> Any:
        """The script bound to a client of the running event loop (asyncio clients belong
        to the loop that made them; a server has one loop, tests may have several)."""
        loop = asyncio.get_running_loop()
        script = self._scripts.get(loop)
        if script is None:
            from redis.asyncio import Redis  # imported only when Redis buckets are configured

            client = self._client or Redis.from_url(
                self._url,
                socket_timeout=self._timeout,
                socket_connect_timeout=self._timeout,
                retry_on_timeout=False,
            )
            self._client = None  # an injected client serves its own loop only
            self._clients[loop] = client
            script = self._scripts[loop] = client.register_script(_SCRIPT)
        return script

    async def take(self, key: str, limit: Limit, now: float) -> Decision:
        if time.monotonic() < self._fallback_until:
            return self._local.take_now(key, limit, now)
        try:
            allowed, tokens_text = await self._redis()(
                keys=[KEY_PREFIX + limit.name + ":" + key], args=[limit.rate, limit.burst]
            )
        except Exception as exc:  # noqa: BLE001 - any Redis failure: limit locally for a while
            self._fallback_until = time.monotonic() + self._fallback_seconds
            count("RateLimitFallbacks")
            get_logger().warning(
                "rate-limit store unavailable; limiting per process",
                extra={"error": type(exc).__name__, "seconds": self._fallback_seconds},
            )
            return self._local.take_now(key, limit, now)
        return decision(bool(allowed), float(tokens_text), limit)

    async def close(self) -> None:
        """Close the client of the running loop."""
        client = self._clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()
