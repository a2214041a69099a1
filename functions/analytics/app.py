"""Lambda entry point for the analytics endpoint group (API Gateway HTTP API), client
performance telemetry (`/api/v1/perf*`) included."""

from mysoulmate.runtime.lambda_init import lambda_init

with lambda_init():
    from mysoulmate.api import analytics, perf, segment, sources
    from mysoulmate.runtime.backends import event_store, message_queue
    from mysoulmate.runtime.lambda_handlers import http_handler

    handler = http_handler(analytics.router, perf.router, segment.router, sources.router)
    # AWS clients are built during init, not in the first request: init is what SnapStart
    # snapshots, and it runs before the function is billed per request.
    message_queue()
    event_store()
