"""Lambda entry point for the i18n endpoint group (API Gateway HTTP API, public routes).

Catalogs ship inside the layer (`mysoulmate/i18n/locales`) and load lazily, one locale at a
time, on first use: init pays for FastAPI and the router, not for eight catalogs.
"""

from mysoulmate.runtime.lambda_init import lambda_init

with lambda_init():
    from mysoulmate.api.i18n import router
    from mysoulmate.runtime.lambda_handlers import http_handler

    handler = http_handler(router)
