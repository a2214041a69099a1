"""Every signal the code reports, declared once: its CloudWatch metric (name, unit,
dimensions) and its Prometheus family (name, type, labels).

Its own module so that the facade (`signals`) and the Prometheus exporter (`prometheus`)
both read it without importing each other.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

Kind = Literal["counter", "histogram"]

# Seconds. Dense below 100 ms where API latency lives; long tail for exports and reports.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
UNMATCHED_ROUTE = "unmatched"
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class Signal(NamedTuple):
    kind: Kind
    family: str  # Prometheus family; counters are exposed as ``<family>_total``
    help: str
    labels: tuple[str, ...] = ()
    emf: str | None = None  # CloudWatch metric name; None: not sent from Lambda
    emf_unit: str = "Count"
    emf_dimensions: tuple[str, ...] = ()  # labels that become CloudWatch dimensions
    emf_scale: float = 1.0  # e.g. 1000: seconds observed, milliseconds sent
    buckets: tuple[float, ...] = LATENCY_BUCKETS


class UnknownSignalError(KeyError):
    """A signal name (or kind) that `SIGNALS` does not declare: a bug, fail loudly."""


SIGNALS: dict[str, Signal] = {
    # HTTP (reported together by `http_request`, once per request, from the middleware).
    "Requests": Signal(
        "counter",
        "http_requests",
        "HTTP requests by route template, method and status.",
        ("route", "method", "status"),
        emf="Requests",
        emf_dimensions=("route", "method", "status_class"),
    ),
    "Latency": Signal(
        "histogram",
        "http_request_duration_seconds",
        "HTTP request duration by route template, method and status.",
        ("route", "method", "status"),
        emf="Latency",
        emf_unit="Milliseconds",
        emf_dimensions=("route", "method", "status_class"),
        emf_scale=1000.0,
    ),
    # Ingest.
    "EventsAccepted": Signal(
        "counter",
        "mysoulmate_events_accepted",
        "Track events durably queued (answered 202).",
        emf="EventsAccepted",
    ),
    "IdentifiesAccepted": Signal(
        "counter",
        "mysoulmate_identifies_accepted",
        "Identify calls durably queued (answered 202).",
        emf="IdentifiesAccepted",
    ),
    "PerfMeasurementsAccepted": Signal(
        "counter",
        "mysoulmate_perf_measurements_accepted",
        "Client performance measurements durably queued (POST /api/v1/perf answered 202).",
        emf="PerfMeasurementsAccepted",
    ),
    "EventsStored": Signal(
        "counter",
        "mysoulmate_events_stored",
        "Messages stored for the first time by the consumer.",
        emf="EventsStored",
    ),
    "EventsDeduplicated": Signal(
        "counter",
        "mysoulmate_events_deduplicated",
        "Redelivered or re-sent messages the consumer found already stored.",
        emf="EventsDeduplicated",
    ),
    "ApiRequestEventsDropped": Signal(
        "counter",
        "mysoulmate_api_request_events_dropped",
        "Automatic api_request/api_error events that could not be queued (TRACK_API_REQUESTS).",
        emf="ApiRequestEventsDropped",
    ),
    "RateLimited": Signal(
        "counter",
        "mysoulmate_rate_limited",
        "Requests refused with 429 by a per-caller limit (policy: ingest, read, public).",
        ("policy",),
        emf="RateLimited",
        emf_dimensions=("policy",),
    ),
    "RateLimitFallbacks": Signal(
        "counter",
        "mysoulmate_rate_limit_fallbacks",
        "Times the shared rate-limit store (Redis) failed and a pod limited on its own.",
    ),
    "PiiFiltered": Signal(
        "counter",
        "mysoulmate_pii_filtered",
        "Values the PII policy dropped (secret, card) or rewrote (email, phone) before queueing.",
        ("kind",),
        emf="PiiFiltered",
        emf_dimensions=("kind",),
    ),
    "EventsErasedDropped": Signal(
        "counter",
        "mysoulmate_events_erased_dropped",
        "Messages the consumer dropped because their user was erased after they were received.",
        emf="EventsErasedDropped",
    ),
    "EventsDeadLettered": Signal(
        "counter",
        "mysoulmate_events_dead_lettered",
        "Messages moved to the local queue's dead letters after too many receives.",
        # On AWS SQS moves them: the DLQ's own CloudWatch metrics count them.
    ),
    "ConsumerRecordFailures": Signal(
        "counter",
        "mysoulmate_consumer_record_failures",
        "Records the consumer could not store (retried, then dead-lettered).",
        emf="ConsumerRecordFailures",
    ),
    "Revenue": Signal(
        "counter",
        "mysoulmate_revenue",
        "Revenue of newly stored track events, in units of the currency.",
        ("currency",),
        emf="Revenue",
        emf_unit="None",
        emf_dimensions=("currency",),
    ),
    # Read side and API.
    "GdprRequests": Signal(
        "counter",
        "mysoulmate_gdpr_requests",
        "GDPR exports and erasures served.",
        ("kind",),
        emf="GdprRequests",
        emf_dimensions=("kind",),
    ),
    "Errors": Signal(
        "counter",
        "mysoulmate_errors",
        "Error responses by error code and exception type.",
        ("code", "exception"),
        emf="Errors",
        emf_dimensions=("code",),
    ),
    # Forwarding to providers (providers/forwarder.py), per provider.
    "Forwarded": Signal(
        "counter",
        "mysoulmate_forwarded",
        "Messages a provider accepted.",
        ("provider",),
        emf="Forwarded",
        emf_dimensions=("provider",),
    ),
    "ForwardSkipped": Signal(
        "counter",
        "mysoulmate_forward_skipped",
        "Messages not sent to a provider on purpose, by reason (erased, opt_out, "
        "integrations, duplicate, too_old, a provider limit).",
        ("provider", "reason"),
        emf="ForwardSkipped",
        emf_dimensions=("provider", "reason"),
    ),
    "ForwardRetried": Signal(
        "counter",
        "mysoulmate_forward_retried",
        "Sends retried after a provider was unavailable (5xx, 429, timeout).",
        ("provider",),
        emf="ForwardRetried",
        emf_dimensions=("provider",),
    ),
    "ForwardFailed": Signal(
        "counter",
        "mysoulmate_forward_failed",
        "Batches a provider did not take (deferred to a redelivery, or refused).",
        ("provider",),
        emf="ForwardFailed",
        emf_dimensions=("provider",),
    ),
    "ForwardDeadLettered": Signal(
        "counter",
        "mysoulmate_forward_dead_lettered",
        "Forward queue messages moved to the provider's dead-letter queue.",
        ("provider",),
        emf="ForwardDeadLettered",
        emf_dimensions=("provider",),
    ),
    "ForwardLag": Signal(
        "histogram",
        "mysoulmate_forward_lag_seconds",
        "Age of the oldest message of each chunk a provider accepted (receipt to forward).",
        ("provider",),
        emf="ForwardLag",
        emf_unit="Seconds",
        emf_dimensions=("provider",),
        buckets=(0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 21600.0, 86400.0),
    ),
    # Images (media/service.py): how each request was answered, and what rendering costs.
    "ImageRequests": Signal(
        "counter",
        "mysoulmate_image_requests",
        "Image requests answered, by outcome (cache_hit, rendered, not_modified, redirect) "
        "and format.",
        ("outcome", "format"),
        emf="ImageRequests",
        emf_dimensions=("outcome",),
    ),
    "ImageRenderTime": Signal(
        "histogram",
        "mysoulmate_image_render_seconds",
        "Time to decode, resize and encode one derivative, by output format.",
        ("format",),
        emf="ImageRenderTime",
        emf_unit="Milliseconds",
        emf_dimensions=("format",),
        emf_scale=1000.0,
        buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    ),
    "StorageQuery": Signal(
        "histogram",
        "mysoulmate_storage_query_duration_seconds",
        "Duration of storage calls by operation.",
        ("operation",),
    ),
    "SlowStorageOperations": Signal(
        "counter",
        "mysoulmate_slow_storage_operations",
        "Storage operations slower than SLOW_QUERY_MS, by operation and backend.",
        ("operation", "backend"),
        emf="SlowStorageOperations",
        emf_dimensions=("operation",),
    ),
}
