"""The OpenAPI document of the whole API, from every router, whatever shape serves it.

FastAPI generates paths and schemas from the routes and models (descriptions, examples and
declared responses live there, next to the code); this module adds what spans the API: the
introduction, security scheme, servers, contact, and the error code list.
`mysoulmate openapi` prints it; `docs/openapi.json` (shipped in the package as
`api/openapi.json`) is that output, checked by a test. `api.openapi_document` completes it for
a deployment.
"""

from __future__ import annotations

import copy
from typing import Any

from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from fastapi.utils import create_model_field

from mysoulmate.analytics.models import JSON_VALUE_SCHEMA_NAME, NO_NUL_PATTERN
from mysoulmate.api import analytics, health, i18n, media, metrics, perf, segment, sources
from mysoulmate.api.responses import ERROR_CODES, ERROR_ENVELOPE_REF, ErrorEnvelope

ROUTERS = (
    health.router,
    analytics.router,
    perf.router,
    segment.router,
    sources.router,
    i18n.router,
    media.router,
    metrics.router,
)
TITLE = "MySoulmate platform services"
INTRODUCTION = """
Analytics ingest and read side, client performance telemetry, internationalization, images,
health and metrics of MySoulmate.

**Authentication.** Every `/api/v1/analytics/*`, `/api/v1/perf*` and `/api/v1/metrics` operation
needs a bearer
token (JWT): `Authorization: Bearer <token>`. The token's `sub` is the user; the `admin` role may
read and erase any user's data and read the dashboard, funnels, cohorts, performance summaries
and the audit log; the
`server` role may track for any user. Locally, `mysoulmate token --user alice` prints a token.
i18n, images, health and `/metrics` are public.

**Segment-compatible ingest.** `/v1/track`, `/identify`, `/page`, `/screen`, `/group`, `/alias`
and `/batch` speak Segment's HTTP Tracking API, so the stock Segment and RudderStack SDKs work
unmodified. They take a write key (`writeKey`: the Basic-auth user name with an empty
password, or `writeKey` in the body) instead of a JWT; admins create and revoke keys under
`/api/v1/admin/sources`. Page and screen views are named `$page:<name>` and `$screen:<name>` in
reads, funnels and dashboards; a visitor known only by an `anonymousId` is the user
`anon:<anonymousId>`.

**Errors.** Every error has one envelope, `{"error": {"code", "message", "details",
"requestId"}}`: `code` is stable (see `ErrorCode`), `message` is in the negotiated language
(`?lang=`, `X-Locale`, `Accept-Language`; echoed in `Content-Language`).

**Pagination.** Lists return `nextCursor`; pass it back as `cursor` for the next page. A cursor
belongs to the query that issued it.

**Limits.** Bodies up to 1 MiB and 64 levels of nesting; properties, traits and context up to
32 levels, 255 keys and 32 KiB (context 8 KiB); event times after clock-skew correction from
2000-01-01 to one hour ahead; `revenue` within ±1,000,000,000. Per-caller rate limits answer 429
with `Retry-After`, `RateLimit-Policy` and `RateLimit`.
""".strip()


def canonical_spec() -> dict[str, Any]:
    """The document as generated from the routers, without what depends on a deployment
    (version, servers, contact): what `docs/openapi.json` holds."""
    routes = [
        _with_error_fields(route)
        for router in ROUTERS
        for route in router.routes
        if isinstance(route, APIRoute)
    ]
    spec = get_openapi(
        title=TITLE,
        version="0.0.0",
        description=INTRODUCTION,
        routes=routes,
        tags=[
            {"name": "analytics", "description": "Track, identify, and read analytics back."},
            {
                "name": "segment",
                "description": "Segment's HTTP Tracking API (write key): what the stock "
                "Segment and RudderStack SDKs send.",
            },
            {
                "name": "performance",
                "description": "The apps' performance measurements (render time, FPS, dropped "
                "frames, operations, app start, bundle size) as quantile sketches; slowest "
                "screens and regressions between app versions.",
            },
            {"name": "sources", "description": "Write keys per source (admin)."},
            {"name": "i18n", "description": "Catalogs and translations (public)."},
            {
                "name": "media",
                "description": "Images resized for the device: ladder widths, presets, AVIF/WebP "
                "negotiation, immutable caching, optional signed URLs (public).",
            },
            {"name": "health", "description": "Liveness and readiness (public)."},
            {
                "name": "metrics",
                "description": "Prometheus metrics and their JSON snapshot (containers and the"
                " laptop; on AWS, metrics are in CloudWatch).",
            },
        ],
    )
    components = spec.setdefault("components", {})
    components.setdefault("securitySchemes", {})["bearerAuth"] = {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "A JWT whose `sub` is the user; roles in `roles` (or `cognito:groups`).",
    }
    components["securitySchemes"]["writeKey"] = {
        "type": "http",
        "scheme": "basic",
        "description": "Segment-style: the write key as the user name, an empty password.",
    }
    schemas = components.setdefault("schemas", {})
    schemas[JSON_VALUE_SCHEMA_NAME] = {
        "description": "Any JSON value without NUL characters, nested at most 32 levels.",
        "anyOf": [
            {"type": "string", "pattern": NO_NUL_PATTERN},
            {"type": "number"},
            {"type": "boolean"},
            {"type": "null"},
            {"type": "array", "items": {"$ref": f"#/components/schemas/{JSON_VALUE_SCHEMA_NAME}"}},
            {
                "type": "object",
                "propertyNames": {"pattern": NO_NUL_PATTERN},
                "additionalProperties": {"$ref": f"#/components/schemas/{JSON_VALUE_SCHEMA_NAME}"},
            },
        ],
    }
    schemas["ErrorCode"] = {
        "type": "string",
        "enum": sorted(ERROR_CODES),
        "description": "Stable error codes:\n\n"
        + "\n".join(f"- `{code}`: {meaning}" for code, meaning in sorted(ERROR_CODES.items())),
    }
    return spec


def _with_error_fields(route: APIRoute) -> APIRoute:
    """A copy of the route with a response field for each error it declares: FastAPI documents
    a response's schema (and lists the envelope's components) from such fields. The routes
    themselves reference the envelope without one (`responses.ERROR_ENVELOPE_REF`)."""
    fields = dict(route.response_fields)
    for status, entry in route.responses.items():
        media = entry.get("content", {}).get("application/json", {})
        if media.get("schema") == {"$ref": ERROR_ENVELOPE_REF}:
            fields[status] = create_model_field(
                name=f"Response_{status}_{route.unique_id}",
                type_=ErrorEnvelope,
                mode="serialization",
            )
    documented = copy.copy(route)
    documented.response_fields = fields
    return documented
