"""Shared fixtures: an isolated environment per test, the PostgreSQL test database and store,
and the HTTP client over the server app.

The suite runs under pytest-xdist (addopts in pyproject.toml), tests handed out one at a time
to a worker process per core. What a test uses outside its process is therefore its own or
per worker: a temporary DATA_DIR, a free port, a scratch database (one migrated database per
worker session, below), RabbitMQ queues named per test, moto inside the worker. Tests that
must share something else run on one worker, marked ``@pytest.mark.xdist_group(name)``: the
Redis database of the rate-limit tests, the schemathesis draw cache of the API contract.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from mysoulmate.observability.powertools import PACKAGE_LOGGER
from mysoulmate.runtime.backends import reset_backends

from tests.support.helpers import TEST_SECRET
from tests.support.postgres import scratch_database, truncate_all

if TYPE_CHECKING:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient
    from mysoulmate.storage.postgres.store import PostgresEventStore

# Variables the suite sets per test; anything inherited from the shell would leak in.
_MANAGED = (
    "STAGE",
    "DATA_DIR",
    "JWT_SECRET",
    "JWKS_URL",
    "AUTH_MODE",
    "STORAGE_BACKEND",
    "QUEUE_BACKEND",
    "LOG_FORMAT",
    "SLOW_QUERY_MS",
    "PERF_REGRESSION_THRESHOLD",
    "PERF_MIN_COUNT",
    "PERF_REGRESSION_DAYS",
    "WORKER_METRICS_PORT",
    "MEDIA_STORAGE",
    "MEDIA_ORIGINALS_DIR",
    "MEDIA_CACHE_DIR",
    "MEDIA_ORIGINALS_BUCKET",
    "MEDIA_ORIGINALS_PREFIX",
    "MEDIA_DERIVATIVES_BUCKET",
    "MEDIA_DERIVATIVES_PREFIX",
    "MEDIA_MAX_ORIGINAL_BYTES",
    "MEDIA_MAX_PIXELS",
    "MEDIA_SIGNING_SECRET",
    "MEDIA_SIGNING_SECRET_PARAMETER",
    "MEDIA_REQUIRE_SIGNED",
    "MEDIA_REDIRECT_OVER_BYTES",
    "MEDIA_PRESIGN_SECONDS",
    "MEDIA_RENDER_CONCURRENCY",
    "REPORTS_BUCKET",
    "REPORTS_DIR",
    "REPORT_LOCALE",
    "LOG_LEVEL",
    "RABBITMQ_URL",
    "RABBITMQ_QUEUE",
    "EVENTS_TABLE",
    "EVENTS_QUEUE_URL",
    "AWS_ENDPOINT_URL",
    "CORS_ALLOW_ORIGINS",
    "WORKER_ENABLED",
    "DATABASE_URL",
    "DATABASE_HOST",
    "DATABASE_SECRET_ARN",
    "DEFAULT_FUNNEL",
    "DEFAULT_LOCALE",
    "SUPPORTED_LOCALES",
    "MIXPANEL_TOKEN",
    "MIXPANEL_API_HOST",
    "MIXPANEL_API_SECRET",
    "MIXPANEL_GDPR_TOKEN",
    "GA_MEASUREMENT_ID",
    "GA_API_SECRET",
    "GA_ENDPOINT",
    "FORWARD_ALLOWED_PROPERTIES",
    "MIXPANEL_TOKEN_PARAMETER",
    "MIXPANEL_API_SECRET_PARAMETER",
    "MIXPANEL_GDPR_TOKEN_PARAMETER",
    "GA_API_SECRET_PARAMETER",
    "MIXPANEL_FORWARD_QUEUE_URL",
    "GA4_FORWARD_QUEUE_URL",
    "FORWARD_PROVIDER",
    "FORWARD_DLQ_URL",
    # Tracing would be on where LAMBDA_TASK_ROOT is set (observability/powertools.py).
    "LAMBDA_TASK_ROOT",
    "_X_AMZN_TRACE_ID",
    "POWERTOOLS_TRACE_DISABLED",
    "POWERTOOLS_LOGGER_SAMPLE_RATE",
    "SENTRY_DSN",
    "SENTRY_DSN_PARAMETER",
    "SENTRY_TRACES_SAMPLE_RATE",
    "SENTRY_PROFILES_SAMPLE_RATE",
    "SENTRY_ENVIRONMENT",
    "SENTRY_IGNORED_ERRORS",
    "PROMETHEUS_MULTIPROC_DIR",
    "SLACK_WEBHOOK_URL",
    "SLACK_WEBHOOK_PARAMETER",
    "EVENTS_DLQ_URL",
    "PII_FILTER",
    "PII_CONTACT_MODE",
    "RATE_LIMIT_INGEST_PER_SECOND",
    "RATE_LIMIT_INGEST_BURST",
    "RATE_LIMIT_READ_PER_SECOND",
    "RATE_LIMIT_READ_BURST",
    "RATE_LIMIT_STORE",
    "REDIS_URL",
    "HTTP_HEADER_TIMEOUT_SECONDS",
    "HTTP_BODY_TIMEOUT_SECONDS",
    "QUEUE_VISIBILITY_TIMEOUT_SECONDS",
    "QUEUE_MAX_RECEIVE_COUNT",
    "TRACK_API_REQUESTS",
    "TRACK_API_REQUESTS_SAMPLE_RATE",
)


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Every test starts from the laptop defaults with its own DATA_DIR and no AWS creds."""
    for name in _MANAGED:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("STAGE", "test")
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("JWT_SECRET", TEST_SECRET)
    monkeypatch.setenv("WORKER_ENABLED", "false")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "MySoulmate")
    reset_process_state()
    # `configure_process_logs` (serve, worker, report) sets the package logger's level and
    # its reset leaves it: a test at LOG_LEVEL=WARNING would hide INFO records from whatever
    # test its pytest-xdist worker runs next. Each test leaves the level as it found it.
    package_logger = logging.getLogger(PACKAGE_LOGGER)
    level = package_logger.level
    yield tmp_path / "data"
    reset_process_state()
    package_logger.setLevel(level)


def reset_process_state() -> None:
    """What a process keeps between requests: adapters, settings, breakers, rate buckets."""
    from mysoulmate.api.auth import VERIFIED
    from mysoulmate.api.rate_limit import use_bucket_store
    from mysoulmate.core.bulkhead import Bulkhead
    from mysoulmate.core.rate_limits import MemoryBuckets
    from mysoulmate.observability import powertools
    from mysoulmate.observability.process_logs import reset_process_logs

    reset_backends()
    VERIFIED.clear()
    Bulkhead.reset_all()
    use_bucket_store(MemoryBuckets())
    # A Lambda handler built in a test routes the package's loggers through its Powertools
    # logger (no propagation to the root): later tests reading logs with caplog need it undone.
    if powertools._routed_propagate:
        powertools.unroute_package_loggers()
        powertools.get_logger.cache_clear()
    # `serve`/`worker`/CLI tests point the package's log handler at their streams (a CLI
    # runner's is closed afterwards): put it back, onto a live stream.
    reset_process_logs()
    for handler in logging.getLogger(powertools.PACKAGE_LOGGER).handlers:
        stream = getattr(handler, "stream", None)
        if stream is not None and getattr(stream, "closed", False):
            handler.stream = sys.stdout  # type: ignore[attr-defined]


# -- PostgreSQL (the real server at 127.0.0.1:5432) -------------------------------------


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """The conninfo of a database migrated to head, shared by the whole session (one per
    pytest-xdist worker: its name is random)."""
    from mysoulmate.storage.postgres.migrate import migrate

    with scratch_database() as conninfo:
        migrate(conninfo)
        yield conninfo


@pytest.fixture
def postgres_store(postgres_database: str) -> Iterator[PostgresEventStore]:
    """A store over the session database, emptied before the test."""
    from mysoulmate.storage.postgres.store import PostgresEventStore

    truncate_all(postgres_database)
    store = PostgresEventStore(postgres_database, pool_size=2)
    try:
        yield store
    finally:
        store.close()


# -- HTTP: the server app through Starlette's TestClient -----------------------------------


@pytest.fixture
def make_client() -> Callable[..., TestClient]:
    """Build a TestClient over ``app`` (by default the server app, built from the environment
    as it is at the call); ``options`` go to TestClient as they are. Use it as a context
    manager to run the app's lifespan. For tests that change the environment first."""
    from fastapi.testclient import TestClient
    from mysoulmate.runtime.server import create_server_app

    def make(app: FastAPI | None = None, **options: Any) -> TestClient:
        return TestClient(app if app is not None else create_server_app(), **options)

    return make


@pytest.fixture
def app() -> FastAPI:
    """The server app as `mysoulmate serve` builds it. A test module overrides this fixture
    to configure it (environment, test-only routes); `client` then serves the override."""
    from mysoulmate.runtime.server import create_server_app

    return create_server_app()


@pytest.fixture
def client(make_client: Callable[..., TestClient], app: FastAPI) -> Iterator[TestClient]:
    """A started client over `app`; a server error comes back as a 500 response, as a real
    client would see it, rather than as an exception in the test."""
    with make_client(app, raise_server_exceptions=False) as test_client:
        yield test_client
