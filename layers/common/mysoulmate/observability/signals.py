"""The one facade the code reports numbers through: `count`, `observe` and `http_request`.

Each signal is declared once in `signal_catalog.SIGNALS`, with its CloudWatch metric (name, unit,
dimensions) and its Prometheus family (name, type, labels). Where the numbers go depends
on the shape, not on the caller:

* on Lambda, to CloudWatch as EMF: each call prints its own EMF document at once, from a
  template Powertools builds once per metric and dimension values (a Metrics set shares
  one dimension set per flush, so a route dimension would leak onto every other metric;
  and serializing the set per invocation cost more than the request's other metrics);
* everywhere else, to Prometheus (`observability.prometheus`, scraped at ``GET /metrics``).

prometheus_client is imported on first use outside Lambda only, so a function never pays
for it at cold start.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from mysoulmate.core import concurrency
from mysoulmate.observability.signal_catalog import (
    KNOWN_METHODS,
    SIGNALS,
    Kind,
    Signal,
    UnknownSignalError,
)

if TYPE_CHECKING:
    from mysoulmate.observability.prometheus import PrometheusSignals

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
    # Printed at once, dimensionless signals too: adding one to Powertools' metric set and
    # having `log_metrics` serialize the set cost ~38 µs per API request, the cached document
    # ~4 µs (bench/warm.py).
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
