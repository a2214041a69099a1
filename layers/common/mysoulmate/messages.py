"""Human-readable text for each error code.

Codes are the stable contract; these English texts are the fallback the localized
catalogs (``locales/*.json``, ``errors.*``) replace per request.
"""

from __future__ import annotations

from typing import Any

ERROR_MESSAGES: dict[str, str] = {
    "bad_request": "The request could not be understood.",
    "invalid_json": "The request body is not valid JSON.",
    "validation_error": "Some fields are missing or invalid: {fields}.",
    "timestamp_in_future": (
        "The event timestamp {timestamp} is more than {limit} seconds in the future "
        "after clock-skew correction."
    ),
    "user_id_mismatch": (
        "The userId in the body must match the signed-in user; only admin or server "
        "tokens may track for another user."
    ),
    "invalid_cursor": "The pagination cursor is malformed or belongs to another query.",
    "unauthorized": "Authentication is required: send an 'Authorization: Bearer <token>' header.",
    "invalid_token": "The bearer token is invalid: {reason}.",
    "token_expired": "The bearer token has expired; sign in again to get a new one.",
    "forbidden": "You do not have permission to do this.",
    "forbidden_other_user": "You may only read your own data; reading another user's needs admin.",
    "admin_required": "This needs the admin role.",
    "invalid_range": "The range is empty: 'from' ({start}) is after 'to' ({end}).",
    "range_too_long": "The range spans {days} days; the maximum is {limit} days.",
    "invalid_window": (
        "The window {value!r} is not a duration such as 30m, 12h or 7d between 1s and {limit}."
    ),
    "invalid_steps": "A funnel needs 2 to 10 comma-separated, non-empty step names; got {count}.",
    "not_found": "Nothing exists at this address.",
    "method_not_allowed": "This method is not allowed here.",
    "not_acceptable": "The requested representation is not available.",
    "payload_too_large": "The request body is too large: the limit is {limit} bytes.",
    "unsupported_media_type": "Send the request body as application/json.",
    "too_many_requests": "Too many requests; slow down and retry later.",
    "http_error": "The request failed with HTTP status {status}.",
    "service_unavailable": "A backing service is unavailable: {dependency}. Retry shortly.",
    "queue_unavailable": "The event could not be queued; it was not accepted. Retry shortly.",
    "internal_error": "Something went wrong on our side. Quote the request id when reporting it.",
}


def render_message(code: str, params: dict[str, Any]) -> str:
    """The message for ``code`` with ``params`` filled in; unknown params stay visible."""
    template = ERROR_MESSAGES.get(code, ERROR_MESSAGES["bad_request"])
    try:
        return template.format(**params)
    except (KeyError, IndexError, ValueError):
        return template
