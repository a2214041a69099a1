"""Signed image URLs: HMAC-SHA256 over the key, the size parameters and the expiry.

A private original is served only to a URL our backend signed (`sign`): the signature covers
what shapes the response (``w``, ``preset``, ``dpr``, ``fit``) so a signed thumbnail cannot
be turned into a full-size copy, and ``exp`` (Unix seconds) so a leaked URL stops working.
The negotiated format is not covered: any device may use the URL it was given.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime

from mysoulmate.media.errors import (
    InvalidSignatureError,
    SignatureExpiredError,
    SignatureRequiredError,
)

SIGNED_PARAMS = ("dpr", "fit", "preset", "w")


def canonical_params(params: Mapping[str, object]) -> str:
    """The signed parameters in a fixed order and spelling (``dpr=2`` and ``dpr=2.0`` agree)."""
    parts = []
    for name in SIGNED_PARAMS:
        value = params.get(name)
        if value is None:
            continue
        if name == "dpr":
            value = f"{float(str(value)):g}"
        parts.append(f"{name}={value}")
    return "&".join(parts)


def signature(secret: str, key: str, params: Mapping[str, object], exp: int) -> str:
    message = f"v1\n{key}\n{canonical_params(params)}\n{exp}".encode()
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def sign(secret: str, key: str, params: Mapping[str, object], exp: int) -> dict[str, str]:
    """The ``sig`` and ``exp`` query parameters to add to ``/api/v1/images/{key}?…``."""
    return {"sig": signature(secret, key, params, exp), "exp": str(exp)}


def verify(
    secret: str,
    key: str,
    params: Mapping[str, object],
    sig: str | None,
    exp: int | None,
    *,
    now: float,
    required: bool,
) -> None:
    """Refuse an unsigned request when signing is required, and any bad or stale signature.

    The signature is checked before the expiry, so that a forged ``exp`` reads as forged.
    """
    if sig is None and exp is None:
        if required:
            raise SignatureRequiredError
        return
    if not secret or sig is None or exp is None:
        raise InvalidSignatureError
    expected = signature(secret, key, params, exp)
    if not hmac.compare_digest(expected.encode(), sig.encode()):
        raise InvalidSignatureError
    if exp < now:
        expired = datetime.fromtimestamp(exp, UTC).isoformat().replace("+00:00", "Z")
        raise SignatureExpiredError(expired=expired)
