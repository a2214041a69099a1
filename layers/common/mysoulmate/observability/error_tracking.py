"""Error tracking (Sentry): initialised only when SENTRY_DSN is set."""

from __future__ import annotations

from typing import Any, Literal

Shape = Literal["lambda", "container"]


def init_error_tracking(shape: Shape) -> None:
    """Start Sentry for this process's shape when configured; a no-op otherwise."""


def capture_exception(exc: BaseException, **tags: Any) -> None:
    """Report an unexpected exception (with tags such as the request id) when configured."""
