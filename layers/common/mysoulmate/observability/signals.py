"""Signals the code reports (events accepted, stored, …): CloudWatch EMF on Lambda."""

from __future__ import annotations

from mysoulmate import concurrency
from mysoulmate.observability.powertools import get_metrics


def count(name: str, value: float = 1) -> None:
    """Add to a CloudWatch metric, flushed as EMF by the Lambda handler's log_metrics.

    Outside Lambda nothing would flush them (containers expose Prometheus metrics instead),
    so they are not collected there.
    """
    if not concurrency.ON_LAMBDA:
        return
    from aws_lambda_powertools.metrics import MetricUnit

    get_metrics().add_metric(name=name, unit=MetricUnit.Count, value=value)
