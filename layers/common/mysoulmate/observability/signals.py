"""The one facade the code reports numbers through: `count`, `observe` and `http_request`.

Each signal is declared once in `SIGNALS`, with its CloudWatch metric (name, unit,
dimensions) and its Prometheus family (name, type, labels). Where the numbers go depends
on the shape, not on the caller:

* on Lambda, to CloudWatch as EMF through Powertools. Signals without dimensions beyond
  ``service`` join the handler's metric set (flushed once per invocation by
  ``log_metrics``); signals with per-call dimensions (route, currency, …) are written as
  their own EMF document at once, because a Metrics set shares one dimension set per
  flush and a route dimension would otherwise leak onto every other metric;
* everywhere else, to Prometheus (`observability.prometheus`, scraped at ``GET /metrics``).

prometheus_client is imported on first use outside Lambda only, so a function never pays
for it at cold start.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from mysoulmate import concurrency

if TYPE_CHECKING:
    from mysoulmate.observability.prometheus import PrometheusSignals

Kind = Literal["counter", "histogram"]

# Seconds. Dense below 100 ms where API latency lives; long tail for exports and reports.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
UNMATCHED_ROUTE = "unmatched"
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


@dataclass(frozen=True, slots=True)
class Signal:
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
    "StorageQuery": Signal(
        "histogram",
        "mysoulmate_storage_query_duration_seconds",
        "Duration of storage calls by operation.",
        ("operation",),
    ),
}

_prometheus: PrometheusSignals | None = None


def count(signal: str, value: float = 1, **labels: str) -> None:
    """Add ``value`` to a counter signal (labels as its table entry names them)."""
    spec = _spec(signal, "counter")
    if concurrency.ON_LAMBDA:
        if spec.emf is not None:
            _emf(spec, value, labels)
        return
    _exporter().add(signal, value, labels)


def observe(signal: str, seconds: float, **labels: str) -> None:
    """Record one duration (seconds) of a histogram signal."""
    spec = _spec(signal, "histogram")
    if concurrency.ON_LAMBDA:
        if spec.emf is not None:
            _emf(spec, seconds, labels)
        return
    _exporter().add(signal, seconds, labels)


def http_request(route: str, method: str, status: int, seconds: float) -> None:
    """One served request: ``Requests`` and ``Latency`` together (the middleware's hot path).

    ``route`` is the matched route's template, never the raw path; unknown methods are
    folded into ``OTHER`` so a client cannot mint label values.
    """
    if method not in KNOWN_METHODS:
        method = "OTHER"
    if concurrency.ON_LAMBDA:
        dimensions = {"route": route, "method": method, "status_class": f"{status // 100}xx"}
        _emf_document(
            [
                ("Requests", "Count", 1.0),
                ("Latency", "Milliseconds", seconds * 1000.0),
            ],
            dimensions,
        )
        return
    _exporter().http_request(route, method, str(status), seconds)


def _spec(signal: str, kind: Kind) -> Signal:
    spec = SIGNALS.get(signal)
    if spec is None or spec.kind != kind:
        raise UnknownSignalError(f"no {kind} signal named {signal!r} in SIGNALS")
    return spec


def _exporter() -> PrometheusSignals:
    global _prometheus
    if _prometheus is None:
        from mysoulmate.observability.prometheus import signals_exporter

        _prometheus = signals_exporter()
    return _prometheus


# -- Lambda: CloudWatch EMF through Powertools ----------------------------------------------


def _emf(spec: Signal, value: float, labels: dict[str, str]) -> None:
    assert spec.emf is not None
    value *= spec.emf_scale
    if not spec.emf_dimensions:
        from mysoulmate.observability.powertools import get_metrics

        get_metrics().add_metric(name=spec.emf, unit=spec.emf_unit, value=value)
        return
    dimensions = {name: str(labels[name]) for name in spec.emf_dimensions}
    _emf_document([(spec.emf, spec.emf_unit, value)], dimensions)


def _emf_document(metrics: list[tuple[str, str, float]], dimensions: dict[str, str]) -> None:
    """Print one EMF document now: these metrics with these dimensions (plus ``service``).

    Powertools' EMF provider builds and validates the document the first time a set of
    metric names and dimension values is seen, on a set of its own so that the handler's
    shared metric set keeps its dimensions. Later calls reuse that document, serialized
    once, with fresh values and timestamp: this runs on every request, and building the
    provider and serializing each time costs ~20x more (docs/observability.md).
    """
    key = (tuple((name, unit) for name, unit, _ in metrics), tuple(dimensions.items()))
    template = _emf_templates.get(key)
    if template is None:
        template = _emf_template(metrics, dimensions)
        if len(_emf_templates) >= _MAX_EMF_TEMPLATES:
            _emf_templates.clear()
        _emf_templates[key] = template
    if template is _DISABLED:
        return
    head, tail, names = template
    values = ",".join(f"{name}:[{float(m[2])!r}]" for name, m in zip(names, metrics, strict=True))
    print(f"{head}{int(time.time() * 1000)}{tail},{values}}}")  # EMF: CloudWatch reads stdout


_MAX_EMF_TEMPLATES = 1024
_DISABLED: tuple[str, str, tuple[str, ...]] = ("", "", ())
# (metric names and units, dimensions) -> the document's JSON around Timestamp and values.
_emf_templates: dict[tuple[Any, ...], tuple[str, str, tuple[str, ...]]] = {}


def _emf_template(
    metrics: list[tuple[str, str, float]], dimensions: dict[str, str]
) -> tuple[str, str, tuple[str, ...]]:
    from aws_lambda_powertools.metrics.functions import is_metrics_disabled
    from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import (
        AmazonCloudWatchEMFProvider,
    )

    from mysoulmate.observability.powertools import get_metrics

    if is_metrics_disabled():
        return _DISABLED
    shared = get_metrics()
    provider = AmazonCloudWatchEMFProvider(namespace=shared.namespace, service=shared.service)
    for name, unit, value in metrics:
        provider.add_metric(name=name, unit=unit, value=value)
    for name, dimension in dimensions.items():
        provider.add_dimension(name=name, value=dimension)
    document: dict[str, Any] = dict(provider.serialize_metric_set())
    aws = document.pop("_aws")
    for name, _, _ in metrics:
        del document[name]
    definitions = json.dumps(aws["CloudWatchMetrics"], separators=(",", ":"))
    rest = json.dumps(document, separators=(",", ":"))[1:-1]
    names = tuple(json.dumps(name) for name, _, _ in metrics)
    return '{"_aws":{"Timestamp":', f',"CloudWatchMetrics":{definitions}}},{rest}', names
