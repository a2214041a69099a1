"""The API document cannot drift: docs/openapi.json (shipped in the package, served by the
docs function) is exactly what the routers generate, and it says what a client needs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.routing import APIRoute
from mysoulmate.api.openapi import ROUTERS, canonical_spec
from mysoulmate.api.openapi_document import DOCUMENT, dump, served_spec
from mysoulmate.api.responses import ERROR_CODES

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "docs" / "openapi.json"


def operations() -> list[tuple[str, str, dict[str, object]]]:
    spec = canonical_spec()
    return [
        (method, path, operation)
        for path, item in spec["paths"].items()
        for method, operation in item.items()
    ]


def test_the_committed_document_is_the_generated_one() -> None:
    committed = COMMITTED.read_text(encoding="utf-8")
    assert committed == dump(canonical_spec()), (
        "docs/openapi.json is stale: run `.venv/bin/mysoulmate openapi > docs/openapi.json`"
    )
    assert COMMITTED.resolve() == DOCUMENT.resolve()  # the package ships the same file


def test_the_served_document_names_this_deployment(monkeypatch: pytest.MonkeyPatch) -> None:
    from mysoulmate.runtime.backends import reset_backends

    monkeypatch.setenv("APP_VERSION", "2.4.0")
    monkeypatch.setenv("SUPPORT_EMAIL", "support@mysoulmate.example")
    monkeypatch.setenv("API_BASE_URL", "https://api.mysoulmate.example")
    monkeypatch.setenv("API_STAGING_URL", "https://staging.mysoulmate.example")
    reset_backends()
    for shipped in (True, False):
        spec = served_spec(shipped=shipped)
        assert spec["info"]["version"] == "2.4.0"
        assert spec["info"]["contact"]["email"] == "support@mysoulmate.example"
        assert [s["url"] for s in spec["servers"]] == [
            "https://api.mysoulmate.example",
            "https://staging.mysoulmate.example",
        ]
    assert json.loads(DOCUMENT.read_text())["info"]["version"] == "0.0.0"


def test_every_operation_is_documented_for_a_client() -> None:
    ids = set()
    for method, path, operation in operations():
        where = f"{method.upper()} {path}"
        assert operation.get("operationId"), where
        assert operation.get("summary"), where
        assert operation.get("description"), where
        ids.add(operation["operationId"])
        responses = operation["responses"]
        assert "500" in responses, where
        for status, response in responses.items():
            content = response.get("content", {})
            if status.startswith("2") and "application/json" in content:
                media = content["application/json"]
                assert "example" in media or "examples" in media, f"{where} {status}"
            if status.startswith(("4", "5")):
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorEnvelope"}, where
                assert "example" in response["content"]["application/json"], where
        if "requestBody" in operation:
            body = operation["requestBody"]["content"]["application/json"]
            assert body.get("examples"), f"{where} has no request example"
    assert len(ids) == len(operations())  # stable and unique


def test_routes_build_no_serializer_for_their_error_responses() -> None:
    """Each declared error response (over 200 in the analytics function) names the envelope
    by `$ref`: as a `model` FastAPI would build a serializer for each one when the route is
    registered, at every cold start, for the document alone. The document still gets the
    envelope's schema for every one of them (test above)."""
    routes = [r for router in ROUTERS for r in router.routes if isinstance(r, APIRoute)]
    errors = [(r.path, status) for r in routes for status in r.responses if int(status) >= 400]
    assert len(errors) > 100
    built = [(r.path, status) for r in routes for status in r.response_fields if int(status) >= 400]
    assert built == []


def test_authenticated_operations_declare_the_bearer_scheme() -> None:
    for method, path, operation in operations():
        needs_token = path.startswith(
            ("/api/v1/analytics", "/api/v1/metrics", "/api/v1/admin", "/api/v1/perf")
        )
        declared = operation.get("security") == [{"bearerAuth": []}]
        assert declared == needs_token, f"{method.upper()} {path}"
        if path.startswith("/v1/"):  # Segment-compatible ingest: a write key, not a JWT
            assert operation["security"] == [{"writeKey": []}], f"{method.upper()} {path}"
            assert "401" in operation["responses"]
        if needs_token:
            assert "401" in operation["responses"]


def test_error_codes_are_listed_once_with_their_meaning() -> None:
    spec = canonical_spec()
    assert spec["components"]["schemas"]["ErrorCode"]["enum"] == sorted(ERROR_CODES)
    catalog = json.loads(
        (ROOT / "layers/common/mysoulmate/i18n/locales/en.json").read_text(encoding="utf-8")
    )
    messages = {code for code, text in catalog["errors"].items() if isinstance(text, str)}
    assert set(ERROR_CODES) == messages  # every code has a localized message, and vice versa


def test_limits_are_stated_on_the_fields() -> None:
    schemas = canonical_spec()["components"]["schemas"]
    track = schemas["TrackRequest"]["properties"]
    assert track["properties"]["maxProperties"] == 255
    assert track["messageId"]["anyOf"][0]["maxLength"] == 100
    assert track["event"]["maxLength"] == 255
    assert "pattern" in track["event"]
    assert "2000-01-01" in track["timestamp"]["description"]
