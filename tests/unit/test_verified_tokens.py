"""Verified tokens are trusted until they expire, and no longer: the cache saves the
signature check of every request after the first, never a check that matters."""

from __future__ import annotations

import time

import jwt
import pytest
from mysoulmate.api import auth
from mysoulmate.core.errors import AuthenticationError
from mysoulmate.core.settings import Settings

SECRET = "s" * 40


def settings(**changes: str) -> Settings:
    return Settings(**{"jwt_secret": SECRET, **changes})


def token(ttl: float, secret: str = SECRET, **claims: object) -> str:
    body = {"sub": "ann", "aud": "mysoulmate", "iss": "mysoulmate-local", "exp": time.time() + ttl}
    return jwt.encode({**body, **claims}, secret, algorithm="HS256")


@pytest.fixture(autouse=True)
def counted(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Each full verification the module makes (signature, claims)."""
    calls: list[str] = []
    real = auth._verify

    def verify(raw: str, config: Settings) -> dict[str, object]:
        calls.append(raw)
        return real(raw, config)

    monkeypatch.setattr(auth, "_verify", verify)
    auth.VERIFIED.clear()
    return calls


def test_a_token_is_verified_once_then_served_from_the_cache(counted: list[str]) -> None:
    raw = token(600)
    first = auth.verify_token(raw, settings())
    again = auth.verify_token(raw, settings())
    assert first == again
    assert first["sub"] == "ann"
    assert counted == [raw]
    again["sub"] = "mallory"  # a caller changing its copy changes nothing cached
    assert auth.verify_token(raw, settings())["sub"] == "ann"


def test_an_expired_token_is_refused_although_it_was_cached(
    counted: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = token(60)
    auth.verify_token(raw, settings())
    later = time.time() + 60 + auth._LEEWAY_SECONDS + 1
    monkeypatch.setattr(auth.time, "time", lambda: later)
    monkeypatch.setattr(jwt.api_jwt, "datetime", _FrozenDatetime(later))
    with pytest.raises(AuthenticationError) as refused:
        auth.verify_token(raw, settings())
    assert refused.value.code == "token_expired"


def test_other_keys_issuer_or_audience_verify_again(counted: list[str]) -> None:
    raw = token(600)
    auth.verify_token(raw, settings())
    with pytest.raises(AuthenticationError):
        auth.verify_token(raw, settings(jwt_secret="t" * 40))
    with pytest.raises(AuthenticationError):
        auth.verify_token(raw, settings(jwt_audience="another-app"))
    assert len(counted) == 3


def test_refused_tokens_are_never_cached(counted: list[str]) -> None:
    forged = token(600, secret="x" * 40)
    for _ in range(2):
        with pytest.raises(AuthenticationError):
            auth.verify_token(forged, settings())
    assert counted == [forged, forged]


def test_the_cache_is_bounded(counted: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auth, "VERIFIED", auth._VerifiedTokens(3))
    raws = [token(600, jti=str(i)) for i in range(5)]
    for raw in raws:
        auth.verify_token(raw, settings())
    counted.clear()
    auth.verify_token(raws[-1], settings())  # recent: cached
    auth.verify_token(raws[0], settings())  # pushed out: verified again
    assert counted == [raws[0]]


class _FrozenDatetime:
    """PyJWT reads the time through ``datetime.now``: the same moment as the patched clock."""

    def __init__(self, at: float) -> None:
        from datetime import UTC, datetime

        self._at = datetime.fromtimestamp(at, tz=UTC)
        self._real = datetime

    def now(self, tz: object = None) -> object:
        return self._at

    def __getattr__(self, name: str) -> object:
        return getattr(self._real, name)
