"""Errors a client can act on, raised by routes and domain code alike.

They carry a stable ``code`` and the parameters of the message; turning them into HTTP
responses is `mysoulmate.api.error_handlers`' job alone. Free of FastAPI on purpose: the
consumer raises these too and must not pay FastAPI's import at cold start.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Headers the envelope must keep (e.g. WWW-Authenticate on a 401).
Headers = Mapping[str, str]


class ApiError(Exception):
    """An error a client can act on; ``code`` is stable, ``message`` is for people."""

    status_code = 400
    code = "bad_request"

    def __init__(
        self,
        *,
        details: Any = None,
        headers: Headers | None = None,
        code: str | None = None,
        **params: Any,
    ) -> None:
        if code is not None:
            self.code = code
        self.params = params
        self.details = details
        self.headers = dict(headers or {})
        super().__init__(self.code)


class InvalidRequestError(ApiError):
    status_code = 422
    code = "validation_error"


class AuthenticationError(ApiError):
    status_code = 401
    code = "unauthorized"

    def __init__(self, *, code: str = "unauthorized", **params: Any) -> None:
        super().__init__(
            code=code, headers={"WWW-Authenticate": 'Bearer realm="mysoulmate"'}, **params
        )


class ForbiddenError(ApiError):
    status_code = 403
    code = "forbidden"


class NotFoundError(ApiError):
    status_code = 404
    code = "not_found"


class DependencyUnavailableError(ApiError):
    """A backing service (queue, storage) cannot take the request right now."""

    status_code = 503
    code = "service_unavailable"
