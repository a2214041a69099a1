"""HTTP authentication: the verified caller of a request, as a `Principal`.

Two ways to verify, chosen by ``AUTH_MODE``:

* ``jwt`` (laptop, containers): the app checks the token itself, HS256 with ``JWT_SECRET``
  or RS256 against the issuer's JWKS (``JWKS_URL``, e.g. Cognito).
* ``apigateway`` (Lambda): API Gateway's JWT authorizer has already verified the token;
  the verified claims arrive in the request context and are trusted as they are.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from fastapi import Request
from starlette.types import Scope

from mysoulmate.core.errors import AuthenticationError
from mysoulmate.core.principal import Principal, principal_from_claims
from mysoulmate.core.request_context import header_of
from mysoulmate.core.settings import Settings, get_settings
from mysoulmate.observability.error_tracking import tag_user

if TYPE_CHECKING:
    import jwt as pyjwt

_LEEWAY_SECONDS = 30
# Verified tokens, kept until they expire: an app sends the same token with every request,
# and verifying it again each time was 8 % of an ingest request's CPU. Bounded (least
# recently used out) so that a flood of distinct tokens cannot grow it.
VERIFIED_CACHE_SIZE = 10_000


class _VerifiedTokens:
    def __init__(self, size: int) -> None:
        self._size = size
        self._entries: OrderedDict[tuple[str, ...], tuple[dict[str, Any], float]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, ...]) -> dict[str, Any] | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            claims, expires = entry
            if time.time() >= expires:
                del self._entries[key]  # verified again: it says "expired" in our words
                return None
            self._entries.move_to_end(key)
            return dict(claims)

    def put(self, key: tuple[str, ...], claims: dict[str, Any]) -> None:
        exp = claims.get("exp")
        if not isinstance(exp, int | float):
            return
        with self._lock:
            self._entries[key] = (dict(claims), float(exp) + _LEEWAY_SECONDS)
            self._entries.move_to_end(key)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


VERIFIED = _VerifiedTokens(VERIFIED_CACHE_SIZE)


def _bearer_token(scope: Scope) -> str:
    scheme, _, token = (header_of(scope, b"authorization") or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationError()
    return token.strip()


@lru_cache(maxsize=4)
def _jwks_client(url: str) -> pyjwt.PyJWKClient:
    import jwt

    return jwt.PyJWKClient(url, cache_keys=True, lifespan=3600, timeout=5)


def verify_token(token: str, settings: Settings) -> dict[str, Any]:
    """Verify signature, expiry, issuer and audience; map each failure to a clear 401. A
    token verified before (under the same keys, issuer and audience) is trusted until it
    expires without being verified again."""
    key = (
        token,
        settings.jwt_secret,
        settings.jwks_url,
        settings.jwt_audience,
        settings.jwt_issuer,
    )
    cached = VERIFIED.get(key)
    if cached is not None:
        return cached
    claims = _verify(token, settings)
    VERIFIED.put(key, claims)
    return claims


def _verify(token: str, settings: Settings) -> dict[str, Any]:
    import jwt  # imported here: the Lambda shape (apigateway mode) never needs it

    try:
        if settings.jwks_url:
            key: Any = _jwks_client(settings.jwks_url).get_signing_key_from_jwt(token).key
            algorithms = ["RS256"]
        else:
            key, algorithms = settings.jwt_secret, ["HS256"]
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=algorithms,
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            leeway=_LEEWAY_SECONDS,
            options={"require": ["exp", "sub"]},
        )
    except jwt.ExpiredSignatureError:
        raise AuthenticationError(code="token_expired") from None
    except jwt.PyJWKClientError:
        raise _invalid("unknown_key") from None
    except jwt.InvalidTokenError as exc:
        raise _invalid(_reason_of(exc)) from None
    return claims


def _invalid(reason: str) -> AuthenticationError:
    """401 naming what is wrong in our words (``errors.tokenReasons.<reason>``, localized),
    never the JWT library's message."""
    return AuthenticationError(code="invalid_token", reason_key=f"errors.tokenReasons.{reason}")


def _reason_of(exc: Exception) -> str:
    import jwt

    reasons: tuple[tuple[type[Exception], str], ...] = (
        (jwt.InvalidSignatureError, "bad_signature"),
        (jwt.InvalidAudienceError, "wrong_audience"),
        (jwt.InvalidIssuerError, "wrong_issuer"),
        (jwt.ImmatureSignatureError, "not_yet_valid"),
        (jwt.MissingRequiredClaimError, "missing_claim"),
        (jwt.InvalidAlgorithmError, "algorithm"),
        (jwt.DecodeError, "malformed"),
    )
    return next((reason for kind, reason in reasons if isinstance(exc, kind)), "unverifiable")


def _claims_from_api_gateway(scope: Scope) -> dict[str, Any]:
    event = scope.get("aws.event") or {}
    authorizer = (event.get("requestContext") or {}).get("authorizer") or {}
    claims = (authorizer.get("jwt") or {}).get("claims")
    if not isinstance(claims, dict):
        raise AuthenticationError()
    return claims


def verified_caller(scope: Scope) -> Principal:
    """The verified caller of the request ``scope``, or a 401 saying what was wrong; changes
    nothing (`sign_in` records the caller)."""
    settings = get_settings()
    if settings.auth_mode == "apigateway":
        claims = _claims_from_api_gateway(scope)
    else:
        claims = verify_token(_bearer_token(scope), settings)
    return principal_from_claims(claims, settings)


def sign_in(scope: Scope, principal: Principal) -> None:
    """Record the request's caller: for the request's own events and for Sentry."""
    scope.setdefault("state", {})["principal"] = principal
    tag_user(principal.subject)


async def current_principal(request: Request) -> Principal:
    """FastAPI dependency: the verified caller, or a 401 saying what was wrong."""
    principal = verified_caller(request.scope)
    sign_in(request.scope, principal)
    return principal


def issue_token(settings: Settings, user_id: str, roles: list[str], ttl_seconds: int) -> str:
    """A locally signed HS256 token, for `mysoulmate token` and tests."""
    import time

    import jwt

    if not settings.jwt_secret:
        raise RuntimeError("JWT_SECRET is not set; tokens can only be issued with a shared secret")
    now = int(time.time())
    claims = {
        "sub": user_id,
        "roles": roles,
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "iat": now,
        "exp": now + ttl_seconds,
    }
    return jwt.encode(claims, settings.jwt_secret, algorithm="HS256")
