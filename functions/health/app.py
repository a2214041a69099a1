"""Lambda entry point for the health endpoint group (API Gateway HTTP API)."""

from mysoulmate.lambda_init import lambda_init

with lambda_init():
    from mysoulmate.api.health import router
    from mysoulmate.backends import event_store, message_queue
    from mysoulmate.lambda_runtime import http_handler

    handler = http_handler(router)
    message_queue()  # AWS clients are built during init (snapshotted by SnapStart)
    event_store()
