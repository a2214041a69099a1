"""`/api-docs`: Swagger UI, ReDoc and the OpenAPI document of the whole API.

The pages load nothing from the internet: Swagger UI's and ReDoc's files ship in the
`fastapi-offline` package and are served from `/api-docs/static/`. Public, read-only, no data:
on AWS this router is the `docs` function, the only one holding the full specification
(`api.openapi_document`), whatever group a client calls.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib.resources import files
from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import HTMLResponse

from mysoulmate.api.openapi_document import served_spec
from mysoulmate.core.concurrency import ON_LAMBDA
from mysoulmate.core.errors import NotFoundError

router = APIRouter(tags=["docs"], include_in_schema=False)

# The page's own code only (the initializer is a file, not inline): no 'unsafe-inline' scripts.
# Swagger UI and ReDoc set inline styles; ReDoc runs a worker from a blob.
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
STATIC_FILES = {
    "swagger-ui-bundle.js": "application/javascript",
    "swagger-ui.css": "text/css",
    "redoc.standalone.js": "application/javascript",
    "favicon.png": "image/png",
}
_SWAGGER_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>MySoulmate API</title>
<link rel="icon" type="image/png" href="/api-docs/static/favicon.png">
<link rel="stylesheet" href="/api-docs/static/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/api-docs/static/swagger-ui-bundle.js"></script>
<script src="/api-docs/swagger-initializer.js"></script>
</body>
</html>
"""
# Try-it-out with a bearer token: the Authorize dialog, kept across reloads (persistAuthorization).
_INITIALIZER = """window.ui = SwaggerUIBundle({
  url: "/api-docs.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  persistAuthorization: true,
  displayRequestDuration: true,
  tryItOutEnabled: false,
  filter: true,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout"
});
"""
_REDOC_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>MySoulmate API (ReDoc)</title>
<link rel="icon" type="image/png" href="/api-docs/static/favicon.png">
</head>
<body>
<redoc spec-url="/api-docs.json"></redoc>
<script src="/api-docs/static/redoc.standalone.js"></script>
</body>
</html>
"""


def _page(body: str, media_type: str = "text/html; charset=utf-8") -> Response:
    return Response(
        body,
        media_type=media_type,
        headers={"Content-Security-Policy": PAGE_CSP, "Cache-Control": "no-cache"},
    )


@router.get("/api-docs", response_class=HTMLResponse)
async def swagger_ui() -> Response:
    return _page(_SWAGGER_PAGE)


@router.get("/api-docs/swagger-initializer.js")
async def swagger_initializer() -> Response:
    return _page(_INITIALIZER, "application/javascript")


@router.get("/api-docs/redoc", response_class=HTMLResponse)
async def redoc() -> Response:
    return _page(_REDOC_PAGE)


@router.get("/api-docs/static/{name}")
async def static_file(name: str) -> Response:
    media_type = STATIC_FILES.get(name)
    if media_type is None:
        raise NotFoundError()
    return Response(
        _static(name),
        media_type=media_type,
        headers={"Cache-Control": "public, max-age=86400"},
    )


# ReDoc's sidebar always shows Redocly's logo from their CDN (no option turns it off): the page
# would ask the internet for it (the CSP blocks that, with a console error). An empty `data:`
# image fails to decode and ReDoc drops it (its onError); the "API docs by Redocly" link stays.
_OFFLINE_PATCHES = {
    "redoc.standalone.js": ((b'"https://cdn.redoc.ly/redoc/logo-mini.svg"', b'"data:,"'),),
}


@lru_cache(maxsize=len(STATIC_FILES))
def _static(name: str) -> bytes:
    content = (files("fastapi_offline") / "static" / name).read_bytes()
    for old, new in _OFFLINE_PATCHES.get(name, ()):
        content = content.replace(old, new)
    return content


@router.get("/api-docs.json")
async def openapi_document() -> Response:
    return Response(spec_bytes(), media_type="application/json")


@lru_cache(maxsize=1)
def spec_bytes() -> bytes:
    # On Lambda the shipped document (no router is imported); elsewhere the live one.
    spec: dict[str, Any] = served_spec(shipped=ON_LAMBDA)
    return json.dumps(spec, ensure_ascii=False).encode()
