"""Lambda entry point for the health endpoint group (API Gateway HTTP API)."""

from mysoulmate.api.health import router
from mysoulmate.lambda_runtime import http_handler

handler = http_handler(router)
