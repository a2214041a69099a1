"""RS256 tokens verified against an OIDC issuer's JWKS served over real HTTP."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI
from fastapi.testclient import TestClient
from jwt.algorithms import RSAAlgorithm
from mysoulmate.runtime.backends import reset_backends
from mysoulmate.runtime.server import create_server_app

ISSUER = "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_Example"


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


SIGNING_KEY = rsa_key()
OTHER_KEY = rsa_key()


@pytest.fixture
def jwks_url() -> Iterator[str]:
    public = json.loads(RSAAlgorithm.to_jwk(SIGNING_KEY.public_key()))
    body = json.dumps({"keys": [{**public, "kid": "k1", "use": "sig", "alg": "RS256"}]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json"
    server.shutdown()


@pytest.fixture
def app(jwks_url: str, monkeypatch: pytest.MonkeyPatch) -> FastAPI:
    """The server app verifying RS256 tokens against the issuer's JWKS (served by the test)."""
    monkeypatch.delenv("JWT_SECRET")
    monkeypatch.setenv("JWKS_URL", jwks_url)
    monkeypatch.setenv("JWT_ISSUER", ISSUER)
    monkeypatch.setenv("JWT_AUDIENCE", "client-123")
    reset_backends()
    return create_server_app()


def token(key: rsa.RSAPrivateKey, **claims: Any) -> str:
    base = {
        "sub": "alice",
        "iss": ISSUER,
        "aud": "client-123",
        "exp": datetime.now(UTC) + timedelta(minutes=5),
        "cognito:groups": ["admin"],
    }
    return jwt.encode({**base, **claims}, key, algorithm="RS256", headers={"kid": "k1"})


def test_rs256_token_from_the_issuer_is_accepted_with_cognito_groups(client: TestClient) -> None:
    headers = {"Authorization": f"Bearer {token(SIGNING_KEY)}"}
    # cognito:groups carries the admin role: reading another user's data is allowed.
    response = client.get("/api/v1/analytics/user/bob", headers=headers)
    assert response.status_code == 200


def test_token_signed_by_another_key_is_refused(client: TestClient) -> None:
    headers = {"Authorization": f"Bearer {token(OTHER_KEY)}"}
    response = client.get("/api/v1/analytics/user/alice", headers=headers)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_token"


def test_hs256_token_is_refused_when_the_issuer_uses_rs256(client: TestClient) -> None:
    forged = jwt.encode(
        {"sub": "alice", "iss": ISSUER, "aud": "client-123", "exp": 9999999999},
        "x" * 40,
        algorithm="HS256",
        headers={"kid": "k1"},
    )
    response = client.get(
        "/api/v1/analytics/user/alice", headers={"Authorization": f"Bearer {forged}"}
    )
    assert response.status_code == 401
