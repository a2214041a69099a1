"""Settings read from the environment once per process and validated at start-up.

A bad value stops the process with a message naming the variable, instead of failing on
the first request that happens to need it. Each field is read from the upper-cased variable
of its name (or its alias). Plain pydantic, not pydantic-settings: that package costs every
Lambda 30-45 ms of cold start for features these settings do not use.
"""

from __future__ import annotations

import os
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator


class SettingsError(RuntimeError):
    """The environment holds a value the service cannot run with."""


class Settings(BaseModel):
    """Every environment variable the services read. README.md documents each one."""

    model_config = ConfigDict(extra="ignore", validate_by_name=True, validate_by_alias=True)

    stage: Literal["local", "dev", "staging", "prod", "test"] = "local"
    app_version: str = "0.1.0"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # `serve` and `worker`: readable lines on a terminal, JSON otherwise (auto), or forced.
    log_format: Literal["auto", "text", "json"] = "auto"
    # Read by Powertools itself (observability/powertools.py); validated here so a bad value
    # stops the function at init. Share of invocations logged at DEBUG; X-Ray off switch.
    log_sample_rate: float = Field(default=0.0, ge=0, le=1, alias="POWERTOOLS_LOGGER_SAMPLE_RATE")
    trace_disabled: bool = Field(default=False, alias="POWERTOOLS_TRACE_DISABLED")

    storage_backend: Literal["sqlite", "dynamodb", "postgres"] = "sqlite"
    queue_backend: Literal["local", "sqs", "rabbitmq"] = "local"
    data_dir: Path = Path(".data")
    events_table: str = "mysoulmate-events"
    events_queue_url: str = ""
    events_dlq_url: str = ""  # the SQS dead-letter queue, for `mysoulmate dlq list`
    # RabbitMQ (QUEUE_BACKEND=rabbitmq, the container shape): amqp://user:password@host:5672/vhost
    rabbitmq_url: str = Field(default="amqp://guest:guest@127.0.0.1:5672/%2F", repr=False)
    # The events queue; its dead-letter exchange and queue are named after it (-dlx, -dlq).
    rabbitmq_queue: str = Field(default="mysoulmate-events", pattern=r"^[A-Za-z0-9._:-]{1,200}$")
    aws_region: str = Field(default="us-east-1", alias="AWS_REGION")
    aws_endpoint_url: str | None = None

    # PostgreSQL (Aurora on AWS): a full URL, or on Lambda the RDS Proxy host plus the
    # Secrets Manager secret holding username/password (never a password in the template).
    database_url: str = Field(default="", repr=False)
    database_host: str = ""
    database_port: int = Field(default=5432, ge=1, le=65535)
    database_name: str = "mysoulmate"
    database_secret_arn: str = ""
    database_pool_size: int = Field(default=4, ge=1, le=100)

    # Internationalization: catalogs in mysoulmate/i18n/locales (the repository's locales/).
    default_locale: str = "en"
    supported_locales: list[str] = Field(
        default_factory=lambda: ["en", "fr", "es", "de", "it", "pt", "ja", "zh"]
    )

    # Scheduled reports (reports/, docs/reports.md): the locale they are written in; on AWS
    # the bucket they are stored in; on the laptop and in containers the directory.
    report_locale: Literal["en", "fr", "es", "de", "it", "pt", "ja", "zh"] = "en"
    reports_bucket: str = ""
    reports_dir: Path | None = None  # default: DATA_DIR/reports

    # Analytics read side.
    default_funnel: list[str] = Field(
        default_factory=lambda: ["signup", "companion_created", "message_sent", "purchase"]
    )

    # Local durable queue: the same knobs SQS has.
    queue_visibility_timeout_seconds: int = Field(default=30, ge=1, le=43200)
    queue_max_receive_count: int = Field(default=5, ge=1, le=1000)
    worker_enabled: bool = True
    worker_batch_size: int = Field(default=100, ge=1, le=10000)
    # Under a backlog the local worker doubles its receive up to this (`runtime.worker`).
    worker_max_batch_size: int = Field(default=500, ge=1, le=10000)
    worker_poll_interval_seconds: float = Field(default=0.2, gt=0, le=60)
    # `mysoulmate worker` serves /metrics on this port for Prometheus (0, the default: not at
    # all; the Helm chart sets 9102).
    worker_metrics_port: int = Field(default=0, ge=0, le=65535)

    # Authentication: HS256 with JWT_SECRET locally; RS256 against JWKS_URL for OIDC issuers.
    auth_mode: Literal["jwt", "apigateway"] = "jwt"
    jwt_secret: str = Field(default="", repr=False)
    jwt_issuer: str = "mysoulmate-local"
    jwt_audience: str = "mysoulmate"
    jwks_url: str = ""
    admin_role: str = "admin"
    server_role: str = "server"

    cors_allow_origins: list[str] = Field(default_factory=list)
    max_future_seconds: int = Field(default=3600, ge=0)
    # How far back a client write key (public, shipped in apps) may date an event; server
    # keys may backfill any age. Long enough for a phone that was offline for weeks.
    client_event_max_age_days: int = Field(default=30, ge=1, le=3650)
    # Per-caller token buckets (api/rate_limit.py): tokens per second and burst, for ingest
    # (per user or write key) and reads (per user; per IP on public routes). 0 turns a
    # policy off. Shared through Redis (RATE_LIMIT_STORE=redis) when pods run side by side.
    rate_limit_ingest_per_second: float = Field(default=50.0, ge=0)
    rate_limit_ingest_burst: int = Field(default=200, ge=1)
    rate_limit_read_per_second: float = Field(default=10.0, ge=0)
    rate_limit_read_burst: int = Field(default=40, ge=1)
    rate_limit_store: Literal["memory", "redis"] = "memory"
    redis_url: str = Field(default="redis://127.0.0.1:6379/0", repr=False)
    # `mysoulmate serve` against slow clients (runtime/http_protocol.py): request line and
    # headers within this time of the first byte, the body within this time of the headers.
    http_header_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    http_body_timeout_seconds: float = Field(default=30.0, gt=0, le=3600)
    # The API document (api/openapi.py): contact and servers, the seed's variable names.
    support_email: str = ""
    api_base_url: str = ""
    api_staging_url: str = ""
    api_production_url: str = ""
    # Automatic server-side events (api/request_events.py): each signed-in API request as an
    # `api_request` event (errors as `api_error`), sampled; off by default.
    track_api_requests: bool = False
    track_api_requests_sample_rate: float = Field(default=1.0, ge=0, le=1)
    # The PII policy of analytics messages (analytics/pii.py): on by default; how e-mail
    # addresses and phone numbers in event properties are rewritten.
    pii_filter: bool = True
    pii_contact_mode: Literal["hash", "mask"] = "hash"
    event_retention_days: int = Field(default=730, ge=0, le=3650)
    # A storage operation slower than this is logged as a warning and counted
    # (observability/storage_ops.py); 0 logs every one.
    slow_query_ms: int = Field(default=500, ge=0, le=600_000)
    # Client performance telemetry (analytics/perf.py): a screen's p90 render time more than
    # this fraction above the previous app version's is a regression (report, dashboard,
    # alarm), comparing only versions with at least PERF_MIN_COUNT measurements over the last
    # PERF_REGRESSION_DAYS days.
    perf_regression_threshold: float = Field(default=0.2, gt=0, le=10)
    perf_min_count: int = Field(default=50, ge=1, le=1_000_000)
    perf_regression_days: int = Field(default=14, ge=1, le=366)
    # Several uvicorn workers: where they share Prometheus metrics (prometheus_client reads
    # the variable itself at import; validated here). See docs/observability.md.
    prometheus_multiproc_dir: Path | None = Field(default=None, alias="PROMETHEUS_MULTIPROC_DIR")

    # Error tracking (Sentry): off unless SENTRY_DSN is set; see docs/observability.md.
    sentry_dsn: str = Field(default="", repr=False)
    sentry_dsn_parameter: str = ""  # AWS: the SSM parameter holding the DSN, read at init
    sentry_traces_sample_rate: float = Field(default=0.0, ge=0, le=1)
    sentry_profiles_sample_rate: float = Field(default=0.0, ge=0, le=1)
    sentry_environment: str = ""  # default: STAGE
    # Exception class names (or AWS error codes) of transient provider errors: not reported.
    sentry_ignored_errors: list[str] = Field(
        default_factory=lambda: [
            "ThrottlingException",
            "ProvisionedThroughputExceededException",
            "RequestLimitExceeded",
            "ServiceUnavailable",
            "EndpointConnectionError",
            "ConnectTimeoutError",
            "ReadTimeoutError",
        ]
    )

    # Alarm notifications (the alerts function): the Slack incoming-webhook URL is a secret.
    # On AWS only the NAME of the SSM SecureString parameter holding it is configured, and the
    # function reads it at first use; elsewhere the URL itself may be set.
    slack_webhook_url: str = Field(default="", repr=False)
    slack_webhook_parameter: str = ""

    # Forwarding to analytics providers (providers/): each is off until its token is set.
    # Mixpanel: the project token; MIXPANEL_API_HOST is a host name (api-eu.mixpanel.com
    # for EU residency) or a full base URL (http://127.0.0.1:PORT in tests).
    mixpanel_token: str = Field(default="", repr=False)
    mixpanel_api_host: str = "api.mixpanel.com"
    mixpanel_api_secret: str = Field(default="", repr=False)  # /import of events > 5 days old
    mixpanel_gdpr_token: str = Field(default="", repr=False)  # deletion requests on erasure
    # GA4 Measurement Protocol: both the measurement id and the API secret are needed.
    ga_measurement_id: str = ""
    ga_api_secret: str = Field(default="", repr=False)
    ga_endpoint: str = "https://www.google-analytics.com/mp/collect"
    # Trait names (comma-separated) and property names that may leave us although they look
    # like contact data (email, phone) or secrets; nothing else of that kind is forwarded.
    forward_allowed_properties: list[str] = Field(default_factory=list)
    # On AWS the secrets above come from SSM parameters these name (read at first use), each
    # provider's stored messages go to its own SQS queue, and each forwarder function serves
    # one provider (FORWARD_PROVIDER).
    mixpanel_token_parameter: str = ""
    mixpanel_api_secret_parameter: str = ""
    mixpanel_gdpr_token_parameter: str = ""
    ga_api_secret_parameter: str = ""
    mixpanel_forward_queue_url: str = ""
    ga4_forward_queue_url: str = ""
    forward_dlq_url: str = ""  # the forwarder function's dead-letter queue (refused batches)
    forward_provider: Literal["", "mixpanel", "ga4"] = ""

    @field_validator(
        "cors_allow_origins",
        "default_funnel",
        "forward_allowed_properties",
        "supported_locales",
        "sentry_ignored_errors",
        mode="before",
    )
    @classmethod
    def _split_list(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("default_funnel")
    @classmethod
    def _funnel_length(cls, value: list[str]) -> list[str]:
        if not 2 <= len(value) <= 10:
            raise ValueError("must name 2 to 10 comma-separated event names")
        return value

    @field_validator("sentry_dsn")
    @classmethod
    def _dsn_shape(cls, value: str) -> str:
        value = value.strip()
        if value and not (value.startswith(("https://", "http://")) and "@" in value):
            raise ValueError("must be a Sentry DSN (https://<key>@<host>/<project>)")
        return value

    @field_validator("prometheus_multiproc_dir", mode="before")
    @classmethod
    def _multiproc_dir(cls, value: object) -> object:
        # Set at all, even empty, puts prometheus_client in multiprocess mode.
        if isinstance(value, str) and not value.strip():
            raise ValueError("must be a directory path (or leave the variable unset)")
        return value

    @field_validator(
        "events_queue_url", "mixpanel_forward_queue_url", "ga4_forward_queue_url", "forward_dlq_url"
    )
    @classmethod
    def _queue_url_shape(cls, value: str) -> str:
        if value and not value.startswith(("https://", "http://")):
            raise ValueError("must be an SQS queue URL (https://sqs.<region>.amazonaws.com/...)")
        return value

    def require(self) -> Settings:
        """Check combinations that single-field validation cannot see."""
        problems = []
        if self.queue_backend == "sqs" and not self.events_queue_url:
            problems.append("QUEUE_BACKEND=sqs needs EVENTS_QUEUE_URL")
        if self.auth_mode == "jwt" and not (self.jwt_secret or self.jwks_url):
            problems.append("AUTH_MODE=jwt needs JWT_SECRET (HS256) or JWKS_URL (RS256)")
        if self.auth_mode == "jwt" and self.jwt_secret and len(self.jwt_secret) < 32:
            problems.append("JWT_SECRET must be at least 32 characters")
        if self.default_locale not in self.supported_locales:
            problems.append(
                f"DEFAULT_LOCALE={self.default_locale} must be one of SUPPORTED_LOCALES "
                f"({','.join(self.supported_locales)})"
            )
        if self.storage_backend == "postgres" and not (
            self.database_url or (self.database_host and self.database_secret_arn)
        ):
            problems.append(
                "STORAGE_BACKEND=postgres needs DATABASE_URL, or DATABASE_HOST with "
                "DATABASE_SECRET_ARN"
            )
        if problems:
            raise SettingsError("invalid configuration: " + "; ".join(problems))
        return self


def _local_jwt_secret(data_dir: Path) -> str:
    """A random per-machine secret for `make run`, so the laptop shape needs no configuration
    yet never runs with a well-known key. `mysoulmate token` reads the same file."""
    path = data_dir / "jwt-secret"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(48))
    return path.read_text().strip()


def _from_environment() -> dict[str, str]:
    values = {}
    for name, field in Settings.model_fields.items():
        variable = (field.alias or name).upper()
        if variable in os.environ:
            values[field.alias or name] = os.environ[variable]
    return values


def load_settings() -> Settings:
    """Build settings from the environment, turning pydantic's report into one clear message."""
    try:
        settings = Settings.model_validate(_from_environment())
        if (
            settings.auth_mode == "jwt"
            and not (settings.jwt_secret or settings.jwks_url)
            and settings.stage in ("local", "test")
        ):
            settings.jwt_secret = _local_jwt_secret(settings.data_dir)
        return settings.require()
    except ValidationError as exc:
        fields = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']).upper()}: {err['msg']}" for err in exc.errors()
        )
        raise SettingsError(f"invalid configuration: {fields}") from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
