"""How the API document describes the `/v1/*` bodies. The routes read the raw body (it may
be gzip-compressed, and each message is validated alone), so the schemas are declared here."""

from __future__ import annotations

from typing import Any

_STRING = {"type": "string"}
_OBJECT = {"type": "object", "additionalProperties": True}
_MESSAGE_FIELDS: dict[str, Any] = {
    "type": {
        "type": "string",
        "enum": ["track", "identify", "page", "screen", "group", "alias", "perf"],
        "description": "`perf` (batches only): the app's performance measurements in "
        "`properties.measurements` (as `POST /api/v1/perf` takes them), the app version in "
        "`context.app.version`, the device class in `properties.deviceClass`.",
    },
    "userId": {**_STRING, "description": "The user; `userId` or `anonymousId` is required."},
    "anonymousId": {**_STRING, "description": "The device or browser before sign-in."},
    "messageId": {**_STRING, "maxLength": 100, "description": "Deduplicates retries."},
    "timestamp": {**_STRING, "format": "date-time"},
    "sentAt": {**_STRING, "format": "date-time", "description": "Corrects clock skew."},
    "event": {**_STRING, "description": "track: the event's name."},
    "name": {**_STRING, "description": "page, screen: the view's name."},
    "category": {**_STRING, "description": "page: the page's category."},
    "groupId": {**_STRING, "description": "group: the account or team."},
    "previousId": {**_STRING, "description": "alias: the id the user had before."},
    "properties": _OBJECT,
    "traits": _OBJECT,
    "context": _OBJECT,
    "integrations": {
        **_OBJECT,
        "description": '`{"All": false}`: stored, never forwarded to a provider.',
    },
    "writeKey": {**_STRING, "description": "The write key, if not sent as Basic auth."},
}
_EXAMPLES: dict[str, dict[str, Any]] = {
    "track": {"userId": "u-1", "event": "companion_created", "properties": {"plan": "pro"}},
    "identify": {"userId": "u-1", "anonymousId": "a-7", "traits": {"plan": "pro"}},
    "page": {"anonymousId": "a-7", "name": "Pricing", "properties": {"path": "/pricing"}},
    "screen": {"userId": "u-1", "name": "Chat"},
    "group": {"userId": "u-1", "groupId": "team-9", "traits": {"seats": 5}},
    "alias": {"userId": "u-1", "previousId": "a-7"},
}
_BATCH_EXAMPLES: dict[str, dict[str, Any]] = {
    **_EXAMPLES,
    "perf": {
        "userId": "u-1",
        "context": {"app": {"version": "2.4.0"}, "os": {"name": "iOS"}},
        "properties": {
            "deviceClass": "mid",
            "measurements": [{"metric": "render", "name": "ChatScreen", "value": 184.5}],
        },
    },
}


def request_body(message_type: str | None, *, write_key: bool = True) -> dict[str, Any]:
    """The `requestBody` of one `/v1/*` route (`None`: a batch). A batch's messages are
    validated one by one (an invalid one is rejected alone), so their schema here says what
    they may hold, not what refuses the request."""
    message = {"type": "object", "properties": _MESSAGE_FIELDS}
    if message_type is None:
        schema: dict[str, Any] = {
            "type": "object",
            "required": ["batch"],
            "properties": {
                "batch": {
                    "type": "array",
                    "maxItems": 2500,
                    "items": {
                        "type": "object",
                        "description": "A Segment message: "
                        + ", ".join(f"`{name}`" for name in _MESSAGE_FIELDS if name != "writeKey")
                        + ". Validated alone: an invalid message is listed in `rejected`.",
                    },
                },
                "sentAt": _MESSAGE_FIELDS["sentAt"],
                "context": _OBJECT,
                "integrations": _MESSAGE_FIELDS["integrations"],
            },
        }
        if write_key:
            schema["properties"]["writeKey"] = _MESSAGE_FIELDS["writeKey"]
        example: dict[str, Any] = {
            "batch": [{"type": kind, **body} for kind, body in _EXAMPLES.items()],
            "sentAt": "2026-12-06T10:00:00Z",
        }
    else:
        schema, example = message, _EXAMPLES[message_type]
    return {
        "requestBody": {
            "required": True,
            "description": "JSON, optionally `Content-Encoding: gzip`; 32 KB per message, "
            "500 KB per request (also once decompressed).",
            "content": {
                "application/json": {
                    "schema": schema,
                    "examples": {"default": {"summary": "A typical body", "value": example}},
                }
            },
        }
    }


# Success answers, for the responses' examples.
ACCEPTED: dict[str, Any] = {"success": True, "rejected": []}
PARTLY_ACCEPTED: dict[str, Any] = {
    "success": True,
    "rejected": [
        {
            "index": 1,
            "code": "no_user_anon_id",
            "message": "Every message needs a userId or an anonymousId.",
        }
    ],
}
SOURCE: dict[str, Any] = {
    "id": "5b0d8c1e-3f5a-4c43-9f43-2a8e6b1f0c11",
    "name": "ios",
    "kind": "client",
    "keyHint": "wk_Q3vX",
    "createdAt": "2026-12-06T10:00:00Z",
    "revokedAt": None,
}
CREATED_SOURCE: dict[str, Any] = {**SOURCE, "writeKey": "wk_Q3vX8c2mJ0pLr4tYb7nK1dF5sH9wZ6eA"}
SOURCE_LIST: dict[str, Any] = {"sources": [SOURCE]}
NEW_SOURCE_EXAMPLES: dict[str, Any] = {
    "client": {"summary": "A mobile app", "value": {"name": "ios", "kind": "client"}},
    "server": {"summary": "A backend", "value": {"name": "billing", "kind": "server"}},
}
