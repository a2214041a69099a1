"""Lambda entry point for the health endpoint group (API Gateway HTTP API)."""

from mysoulmate.api.health import router
from mysoulmate.backends import event_store, message_queue
from mysoulmate.lambda_runtime import http_handler

handler = http_handler(router)
# AWS clients are built during init (snapshotted by SnapStart), not in the first request.
message_queue()
event_store()
