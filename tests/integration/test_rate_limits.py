"""Limits per caller: token buckets per user (ingest and reads apart) and per IP on public
routes; 429 with Retry-After and the RateLimit headers; a refused event is never queued;
buckets shared by pods through the real Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient
from mysoulmate.api import rate_limit
from mysoulmate.core.rate_limits import Limit, MemoryBuckets
from mysoulmate.runtime.backends import local_queue, reset_backends
from mysoulmate.storage.redis_buckets import RedisBuckets

from tests.support.helpers import auth_header

REDIS_URL = "redis://127.0.0.1:6379/15"

MakeClient = Callable[..., TestClient]


@pytest.fixture
def limited(monkeypatch: pytest.MonkeyPatch, make_client: MakeClient) -> Iterator[TestClient]:
    """A server whose ingest allows bursts of 3, then 1 per second; reads 2, then 1/s."""
    monkeypatch.setenv("RATE_LIMIT_INGEST_PER_SECOND", "1")
    monkeypatch.setenv("RATE_LIMIT_INGEST_BURST", "3")
    monkeypatch.setenv("RATE_LIMIT_READ_PER_SECOND", "1")
    monkeypatch.setenv("RATE_LIMIT_READ_BURST", "2")
    reset_backends()
    rate_limit.use_bucket_store(MemoryBuckets())
    with make_client() as client:
        yield client
    rate_limit.use_bucket_store(MemoryBuckets())


def track(client: TestClient, user: str) -> object:
    return client.post("/api/v1/analytics/track", json={"event": "tap"}, headers=auth_header(user))


def test_ingest_beyond_the_burst_is_refused_with_429_and_never_queued(
    limited: TestClient,
) -> None:
    accepted = [track(limited, "ann") for _ in range(3)]
    assert [r.status_code for r in accepted] == [202, 202, 202]  # type: ignore[attr-defined]
    assert accepted[0].headers["RateLimit-Policy"] == '"ingest";q=3;w=3'  # type: ignore[attr-defined]
    assert accepted[-1].headers["RateLimit"].startswith('"ingest";r=0;')  # type: ignore[attr-defined]

    refused = limited.post(
        "/api/v1/analytics/track",
        json={"event": "tap"},
        headers={**auth_header("ann"), "Accept-Language": "fr"},
    )
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "1"
    assert refused.headers["RateLimit-Policy"] == '"ingest";q=3;w=3'
    assert refused.headers["RateLimit"].startswith('"ingest";r=0;t=')
    error = refused.json()["error"]
    assert error["code"] == "rate_limited"
    assert "Réessayez" in error["message"]
    assert error["requestId"]
    assert local_queue().depth() == (3, 0)  # the refused event was never queued


def test_each_user_and_each_policy_has_its_own_bucket(limited: TestClient) -> None:
    for _ in range(3):
        track(limited, "ann")
    assert track(limited, "ann").status_code == 429  # type: ignore[attr-defined]
    assert track(limited, "bob").status_code == 202  # type: ignore[attr-defined]
    read = limited.get("/api/v1/analytics/user/ann", headers=auth_header("ann"))
    assert read.status_code == 200
    assert read.headers["RateLimit-Policy"] == '"read";q=2;w=2'


def test_public_routes_are_limited_per_ip(limited: TestClient) -> None:
    statuses = [limited.get("/api/v1/i18n/locales").status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    assert limited.get("/health").status_code == 200  # probes are never limited


def test_tokens_come_back_at_the_configured_rate() -> None:
    buckets = MemoryBuckets()
    limit = Limit("ingest", rate=2.0, burst=2)
    start = 1000.0

    def take(at: float) -> bool:
        return asyncio.run(buckets.take("k", limit, at)).allowed

    assert [take(start), take(start), take(start)] == [True, True, False]
    assert take(start + 0.4) is False  # 0.8 of a token
    assert take(start + 0.5) is True
    refused = asyncio.run(buckets.take("k", limit, start + 0.5))
    assert refused.retry_after == pytest.approx(0.5)


def test_a_zero_rate_turns_a_policy_off(
    monkeypatch: pytest.MonkeyPatch, make_client: MakeClient
) -> None:
    monkeypatch.setenv("RATE_LIMIT_INGEST_PER_SECOND", "0")
    reset_backends()
    rate_limit.use_bucket_store(MemoryBuckets())
    with make_client() as client:
        statuses = {track(client, "ann").status_code for _ in range(300)}  # type: ignore[attr-defined]
    assert statuses == {202}


# -- Redis: buckets shared by pods ------------------------------------------------------------


@pytest.fixture
def redis_available() -> None:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).flushdb()
    except redis.RedisError as exc:
        import os

        if os.environ.get("CI") == "true":
            raise
        pytest.skip(f"Redis is not reachable at {REDIS_URL}: {exc}")


# Both tests empty Redis database 15 and reuse bucket keys: under pytest-xdist they run on one
# worker, one after the other.
@pytest.mark.xdist_group("redis-db-15")
def test_two_pods_share_one_bucket_through_redis(redis_available: None) -> None:
    limit = Limit("ingest", rate=0.001, burst=5)

    async def scenario() -> list[bool]:
        pod_a, pod_b = RedisBuckets(REDIS_URL), RedisBuckets(REDIS_URL)
        outcomes = []
        for index in range(8):
            pod = pod_a if index % 2 else pod_b
            outcomes.append((await pod.take("user:ann", limit, time.time())).allowed)
        await pod_a.close()
        await pod_b.close()
        return outcomes

    assert asyncio.run(scenario()) == [True] * 5 + [False] * 3


@pytest.mark.xdist_group("redis-db-15")
def test_the_server_uses_redis_when_told(
    redis_available: None, monkeypatch: pytest.MonkeyPatch, make_client: MakeClient
) -> None:
    monkeypatch.setenv("RATE_LIMIT_STORE", "redis")
    monkeypatch.setenv("REDIS_URL", REDIS_URL)
    monkeypatch.setenv("RATE_LIMIT_INGEST_PER_SECOND", "0.001")
    monkeypatch.setenv("RATE_LIMIT_INGEST_BURST", "2")
    reset_backends()
    with make_client() as first, make_client() as second:
        statuses = [track(first, "cy").status_code, track(second, "cy").status_code]  # type: ignore[attr-defined]
        statuses.append(track(first, "cy").status_code)  # type: ignore[attr-defined]
    rate_limit.use_bucket_store(MemoryBuckets())
    assert statuses == [202, 202, 429]


def test_an_unreachable_redis_falls_back_to_per_process_limits() -> None:
    limit = Limit("ingest", rate=0.001, burst=2)

    async def scenario() -> list[bool]:
        buckets = RedisBuckets("redis://127.0.0.1:9/0", timeout_seconds=0.2)
        return [(await buckets.take("k", limit, time.time())).allowed for _ in range(3)]

    assert asyncio.run(scenario()) == [True, True, False]
