"""Per-caller rate limits, as FastAPI dependencies on the routes they guard.

Three policies (token buckets, `core.rate_limits`), each configured by a rate and a burst:

* ``ingest``: `/track`, `/identify` (and the `/v1/*` write-key routes): per user id, or
  per write key;
* ``read``: every other authenticated route, per user id;
* ``public``: routes that need no sign-in (i18n), per client IP, at the read rate.

Health probes and `/metrics` are not limited (orchestrators and scrapers call them). A
refused request gets 429 in the error envelope with ``Retry-After`` and, like every limited
response, the ``RateLimit-Policy`` and ``RateLimit`` headers (IETF draft
"RateLimit header fields for HTTP"). It is refused before its body is queued or stored.
"""

from __future__ import annotations

import math
import time
from typing import Annotated

from fastapi import Depends, Request, Response

from mysoulmate.api.auth import current_principal
from mysoulmate.core.errors import ApiError
from mysoulmate.core.principal import Principal
from mysoulmate.core.rate_limits import BucketStore, Decision, Limit, MemoryBuckets
from mysoulmate.core.settings import get_settings
from mysoulmate.observability.signals import count


class RateLimitedError(ApiError):
    status_code = 429
    code = "rate_limited"


_store: BucketStore = MemoryBuckets()


def use_bucket_store(store: BucketStore) -> None:
    """Installed by the composition root (Redis in containers); memory otherwise."""
    global _store
    _store = store


def _limit(name: str) -> Limit | None:
    settings = get_settings()
    if name == "ingest":  # "public" shares the read rate, in buckets of its own
        rate, burst = settings.rate_limit_ingest_per_second, settings.rate_limit_ingest_burst
    else:
        rate, burst = settings.rate_limit_read_per_second, settings.rate_limit_read_burst
    return Limit(name, rate, burst) if rate > 0 else None


def _headers(limit: Limit, decision: Decision) -> dict[str, str]:
    return {
        "RateLimit-Policy": f'"{limit.name}";q={limit.burst};w={limit.window_seconds}',
        "RateLimit": f'"{limit.name}";r={decision.remaining};t={math.ceil(decision.reset)}',
    }


async def take(name: str, key: str) -> dict[str, str]:
    """Take one request from ``key``'s bucket of policy ``name``: the headers that describe
    the limit (none when the policy is off), or `RateLimitedError` when it is spent."""
    limit = _limit(name)
    if limit is None:
        return {}
    decision = await _store.take(key, limit, time.time())
    headers = _headers(limit, decision)
    if not decision.allowed:
        count("RateLimited", policy=name)
        retry_after = str(max(1, math.ceil(decision.retry_after)))
        raise RateLimitedError(
            headers={**headers, "Retry-After": retry_after},
            retry_after=retry_after,
            policy=name,
        )
    return headers


async def _check(name: str, key: str, response: Response) -> None:
    response.headers.update(await take(name, key))


def client_ip(request: Request) -> str:
    """The caller's address: API Gateway's sourceIp on Lambda (Mangum puts it in the scope),
    uvicorn's peer otherwise (X-Forwarded-For only from trusted proxies, FORWARDED_ALLOW_IPS)."""
    client = request.scope.get("client")
    return str(client[0]) if client else "unknown"


async def limit_ingest(
    response: Response, caller: Annotated[Principal, Depends(current_principal)]
) -> None:
    await _check("ingest", "user:" + caller.subject, response)


async def limit_read(
    response: Response, caller: Annotated[Principal, Depends(current_principal)]
) -> None:
    await _check("read", "user:" + caller.subject, response)


async def limit_public(request: Request, response: Response) -> None:
    await _check("public", "ip:" + client_ip(request), response)


MAX_LIMITED_ANONYMOUS_IDS = 20  # per request: a batch is one request, not one per visitor


async def limit_source(
    request: Request, response: Response, kind: str, source_id: str, anonymous_ids: set[str]
) -> None:
    """Segment-compatible ingest: a client key is public (shared by every install of an
    app), so it is limited per client IP and per anonymous id; a server key per source."""
    if kind != "client":
        await _check("ingest", "source:" + source_id, response)
        return
    await _check("ingest", "ip:" + client_ip(request), response)
    for anonymous_id in sorted(anonymous_ids)[:MAX_LIMITED_ANONYMOUS_IDS]:
        await _check("ingest", "anon:" + anonymous_id, response)
