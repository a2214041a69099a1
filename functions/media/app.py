"""Lambda entry point for the media endpoint group (API Gateway HTTP API, public routes).

Originals and derivatives live in S3 (`MEDIA_ORIGINALS_BUCKET`, `MEDIA_DERIVATIVES_BUCKET`);
Pillow is imported on the first render, not at init. Derivatives over
`MEDIA_REDIRECT_OVER_BYTES` (4 MB: the 6 MB response cap, base64) answer 302 to S3.
"""

from mysoulmate.runtime.lambda_init import lambda_init

with lambda_init():
    from mysoulmate.api.media import router
    from mysoulmate.runtime.lambda_handlers import http_handler
    from mysoulmate.runtime.media import install_media, media_service

    install_media()
    handler = http_handler(router)
    media_service()  # the S3 client is built during init (SnapStart, unbilled), not per request
