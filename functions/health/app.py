"""Lambda entry point for the health endpoint group (API Gateway HTTP API)."""

from mysoulmate.runtime.lambda_init import lambda_init

with lambda_init():
    from mysoulmate.api.health import router
    from mysoulmate.runtime.backends import event_store, message_queue
    from mysoulmate.runtime.lambda_handlers import http_handler

    handler = http_handler(router)
    message_queue()  # AWS clients are built during init (snapshotted by SnapStart)
    event_store()
