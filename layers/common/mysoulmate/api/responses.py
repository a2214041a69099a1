"""What the API answers besides success, declared once for the OpenAPI document: the one error
envelope, its stable codes, and the error responses each route lists in ``responses=``.

The routers import this module (not `api.openapi`, which imports the routers).
"""

from __future__ import annotations

from typing import Any

from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field

# Every stable error code, and when a client gets it. `errors.<code>` in the catalogs holds
# the localized message; `tests` check that the two lists agree.
ERROR_CODES: dict[str, str] = {
    "bad_request": "The request is malformed (e.g. a query parameter cannot be parsed).",
    "validation_error": "Fields are missing or invalid; `details` lists each one.",
    "invalid_json": "The body is not valid JSON.",
    "nesting_too_deep": "The body nests objects or arrays deeper than 64 levels.",
    "timestamp_in_future": "The event time is more than MAX_FUTURE_SECONDS ahead.",
    "timestamp_too_old": "The event time is before 2000-01-01.",
    "timestamp_out_of_range": "The event time cannot be corrected for clock skew.",
    "invalid_cursor": "The pagination cursor is malformed or belongs to another query.",
    "invalid_range": "`from` is after `to`.",
    "range_too_long": "The date range is longer than allowed.",
    "invalid_window": "The funnel window is not a duration like 30m, 12h or 7d.",
    "invalid_steps": "A funnel needs 2 to 10 step names.",
    "invalid_params": "i18n `params` is not a flat JSON object of strings and numbers.",
    "unknown_locale": "The locale is not supported.",
    "unknown_namespace": "The catalog has no such namespace.",
    "unknown_key": "The catalog has no such key.",
    "unauthorized": "No bearer token was sent.",
    "invalid_token": "The bearer token cannot be verified; the message says why.",
    "token_expired": "The bearer token has expired.",
    "forbidden": "The caller may not do this.",
    "forbidden_other_user": "Only the user themself (or an admin) may read or change this user.",
    "admin_required": "The operation needs the admin role.",
    "user_id_mismatch": "`userId` names another user; only admin or server tokens may.",
    "not_found": "Nothing exists at this address.",
    "method_not_allowed": "The path exists, the method does not.",
    "not_acceptable": "No representation matches the Accept header.",
    "payload_too_large": "The body exceeds 1 MiB (500 KB on `/v1/*`, also once decompressed).",
    "unsupported_media_type": "The body is not `application/json`.",
    "rate_limited": "A per-caller limit was reached; retry after `Retry-After` seconds.",
    "too_many_requests": "Too many requests.",
    "queue_unavailable": "The event could not be queued and was not accepted; retry.",
    "service_unavailable": "A backing service is unavailable; retry after `Retry-After`.",
    "internal_error": "An unexpected error; quote the request id when reporting it.",
    "no_user_anon_id": "A message has neither `userId` nor `anonymousId`.",
    "invalid_write_key": "The write key is missing, unknown or revoked (`/v1/*`).",
    "invalid_batch": "The body is not a JSON object with a `batch` array.",
    "batch_too_large": "A batch holds more than 2,500 messages.",
    "message_too_large": "A message is larger than 32 KB as JSON.",
    "unsupported_type": "A message's `type` is not a Segment message type.",
    "reserved_event_name": "A track event name starts with `$page` or `$screen`.",
    "reserved_user_id": "A `userId` starts with `anon:`, the prefix of anonymous visitors.",
    "unsupported_encoding": "The `Content-Encoding` is neither gzip nor identity.",
    "invalid_gzip": "The gzip body cannot be decompressed.",
    "source_not_found": "No source has this id.",
    "invalid_width": "An image width `w` is not on the ladder; `details.widths` lists it.",
    "image_not_found": "No original image exists under this key.",
    "image_too_large": "The original image is larger than MEDIA_MAX_ORIGINAL_BYTES.",
    "image_too_many_pixels": "The original's header claims more pixels than MEDIA_MAX_PIXELS.",
    "image_unreadable": "The original image is truncated or corrupt.",
    "image_type_unsupported": "The original is not JPEG, PNG, WebP or GIF (AVIF/HEIF if built in).",
    "signature_required": "The image needs a signed URL (`sig` and `exp`).",
    "invalid_signature": "The image URL's signature does not match its key and parameters.",
    "signature_expired": "The signed image URL has expired (`exp` is past).",
    "http_error": "Another HTTP error.",
}


class ErrorBody(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "code": "validation_error",
                    "message": "Some fields are missing or invalid: event.",
                    "details": [
                        {
                            "field": "event",
                            "type": "string_too_short",
                            "message": "Must have at least 1 character.",
                            "constraint": {"min_length": 1},
                        }
                    ],
                    "requestId": "2f1c6a52-8a1e-4a4c-9a53-3b0f1c2d4e5f",
                }
            ]
        }
    )

    code: str = Field(
        description="Stable, machine-readable code (one of `ErrorCode`).",
        json_schema_extra={"enum": list(sorted(ERROR_CODES))},
    )
    message: str = Field(description="For people, in the negotiated language (Content-Language).")
    details: Any = Field(
        default=None,
        description="Validation errors (field, type, message, constraint), or other context.",
    )
    requestId: str = Field(description="Also in the X-Request-Id header; quote it in reports.")


class ErrorEnvelope(BaseModel):
    """Every error of the API: one envelope, a stable `code`, a localized `message`."""

    error: ErrorBody


_STATUS = {
    400: ("The request is malformed.", "invalid_json"),
    401: ("No valid bearer token.", "unauthorized"),
    403: ("The token does not allow this.", "forbidden_other_user"),
    404: ("Not found.", "not_found"),
    413: ("The body exceeds 1 MiB.", "payload_too_large"),
    415: ("The body is not JSON.", "unsupported_media_type"),
    422: ("Fields are missing or invalid.", "validation_error"),
    429: ("A per-caller rate limit was reached.", "rate_limited"),
    500: ("Unexpected error.", "internal_error"),
    503: ("A backing service is unavailable.", "service_unavailable"),
}


def _header(description: str, kind: str = "string") -> dict[str, Any]:
    return {"description": description, "schema": {"type": kind}}


_HEADERS = {
    429: {
        "Retry-After": _header("Seconds until a request may succeed.", "integer"),
        "RateLimit-Policy": _header("The limit: its quota (q) and window in seconds (w)."),
        "RateLimit": _header("Remaining quota (r) and seconds until it is full again (t)."),
    },
    503: {"Retry-After": _header("Seconds until a retry may succeed.", "integer")},
}


# The routes name the envelope by reference, not as a `model`: for a model FastAPI builds a
# serializer per route and status (over 200 of them, about 40 ms of the analytics Lambda's
# cold start) that only the OpenAPI document uses. `api.openapi` builds them for the document.
ERROR_ENVELOPE_REF = "#/components/schemas/ErrorEnvelope"


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` entries for these error statuses (500 is always added)."""
    declared: dict[int | str, dict[str, Any]] = {}
    for status in sorted({*statuses, 500}):
        description, code = _STATUS[status]
        entry: dict[str, Any] = {
            "description": description,
            "content": {
                "application/json": {
                    "example": {
                        "error": {
                            "code": code,
                            "message": ERROR_CODES[code],
                            "details": None,
                            "requestId": "2f1c6a52-8a1e-4a4c-9a53-3b0f1c2d4e5f",
                        }
                    },
                    "schema": {"$ref": ERROR_ENVELOPE_REF},
                }
            },
        }
        if status in _HEADERS:
            entry["headers"] = _HEADERS[status]
        declared[status] = entry
    return declared


# `openapi_extra` of routes that need a bearer token, and of those that need the admin role.
BEARER: dict[str, Any] = {"security": [{"bearerAuth": []}]}
ADMIN: dict[str, Any] = {"security": [{"bearerAuth": []}], "x-required-roles": ["admin"]}
# What every authenticated read can answer besides success.
READ_ERRORS = (400, 401, 403, 422, 429, 503)
INGEST_ERRORS = (400, 401, 403, 413, 415, 422, 429, 503)


def ok(example: dict[str, Any], status: int = 200) -> dict[int | str, dict[str, Any]]:
    """The success response's example, next to the schema FastAPI derives from the model."""
    return {status: {"content": {"application/json": {"example": example}}}}


def operation_id(route: APIRoute) -> str:
    """Stable operationIds: the route function's name (`track`, `dashboard`, …)."""
    return route.name
