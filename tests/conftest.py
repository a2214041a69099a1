"""Shared fixtures: an isolated environment per test, tokens, and service checks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from mysoulmate.runtime.backends import reset_backends

from tests.helpers import TEST_SECRET

# Variables the suite sets per test; anything inherited from the shell would leak in.
_MANAGED = (
    "STAGE",
    "DATA_DIR",
    "JWT_SECRET",
    "JWKS_URL",
    "AUTH_MODE",
    "STORAGE_BACKEND",
    "QUEUE_BACKEND",
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
    reset_backends()
    yield tmp_path / "data"
    reset_backends()
