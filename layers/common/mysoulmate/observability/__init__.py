"""The one observability module: logs, metrics, traces and error tracking, for every shape.

Nothing else constructs a Logger, Metrics, Tracer, Sentry client or Prometheus metric; code
reports through these functions. Each backend is imported on first use, so importing this
package costs a function nothing at cold start:

* `powertools`: Powertools Logger, Metrics (CloudWatch EMF) and Tracer (X-Ray) on Lambda;
* `signals`: business and HTTP signals (`count`, `observe`), sent as EMF on Lambda and as
  Prometheus metrics in containers and locally;
* `error_tracking`: Sentry, only when SENTRY_DSN is set, scrubbed before anything leaves.
"""

from __future__ import annotations

from mysoulmate.observability.error_tracking import capture_exception, init_error_tracking
from mysoulmate.observability.powertools import get_logger, get_metrics
from mysoulmate.observability.signals import count, observe

__all__ = [
    "capture_exception",
    "count",
    "get_logger",
    "get_metrics",
    "init_error_tracking",
    "observe",
]
