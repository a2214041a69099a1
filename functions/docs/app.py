"""Lambda entry point for the API documentation (API Gateway HTTP API, public routes).

The only function that imports every router: it serves the whole API's OpenAPI document
(`mysoulmate.api.openapi`), so the other functions never pay for building it.
"""

from mysoulmate.runtime.lambda_init import lambda_init

with lambda_init():
    from mysoulmate.api.docs import router, spec_bytes
    from mysoulmate.runtime.lambda_handlers import http_handler

    handler = http_handler(router)
    # The spec is built (and cached) during init, which SnapStart snapshots, not in the
    # first request: every router's schema generation is the bulk of this function's work.
    spec_bytes()
