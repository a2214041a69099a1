"""Lambda entry point for the analytics endpoint group (API Gateway HTTP API)."""

from mysoulmate.api.analytics import router
from mysoulmate.lambda_runtime import http_handler

handler = http_handler(router)
