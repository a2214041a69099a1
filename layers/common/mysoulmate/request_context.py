"""The request id: one per request, from API Gateway when there is one, echoed to the client."""

from __future__ import annotations

import re
import uuid
from collections.abc import MutableMapping
from typing import Any

_SAFE_ID = re.compile(r"^[A-Za-z0-9._:=-]{1,128}$")

Scope = MutableMapping[str, Any]


def resolve_request_id(scope: Scope) -> str:
    """API Gateway's id on Lambda; a client's well-formed X-Request-Id; a new UUID otherwise."""
    event = scope.get("aws.event")
    if isinstance(event, dict):
        api_id = (event.get("requestContext") or {}).get("requestId")
        if isinstance(api_id, str) and api_id:
            return api_id
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            candidate = str(value.decode("latin-1"))
            if _SAFE_ID.match(candidate):
                return candidate
            break
    return str(uuid.uuid4())


def request_id_of(scope: Scope) -> str:
    state = scope.setdefault("state", {})
    request_id = state.get("request_id")
    if not isinstance(request_id, str):
        request_id = state["request_id"] = resolve_request_id(scope)
    return request_id
