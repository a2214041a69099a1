"""The docs Lambda function answers real API Gateway (HTTP API v2) events, and only it pays
for the whole API's OpenAPI document: the analytics function never imports it."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.routing import APIRoute
from mysoulmate.api import analytics, health, i18n, metrics

from tests.support.aws import REPO_ROOT, FakeLambdaContext, http_event

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]

# The routers the document covers: every endpoint group, /metrics included (it documents the
# container shape too); the docs router itself is not part of the API it documents.
DOCUMENTED = (analytics.router, health.router, i18n.router, metrics.router)


@pytest.fixture
def docs(lambda_env: Callable[..., None], load_function: Callable[[str], Handler]) -> Handler:
    lambda_env("https://sqs.us-east-1.amazonaws.com/123456789012/unused")
    return load_function("docs")


def _get(handler: Handler, path: str, accept: str) -> dict[str, Any]:
    event = http_event("GET", path)
    event["headers"]["accept"] = accept
    return handler(event, FakeLambdaContext())


def test_openapi_document_names_every_operation_of_every_group(docs: Handler) -> None:
    response = _get(docs, "/api-docs.json", "application/json")
    assert response["statusCode"] == 200
    assert response["headers"]["content-type"] == "application/json"
    body = base64.b64decode(response["body"]) if response["isBase64Encoded"] else response["body"]
    spec = json.loads(body)
    assert spec["openapi"].startswith("3.")
    expected = {
        (method.lower(), route.path)
        for router in DOCUMENTED
        for route in router.routes
        if isinstance(route, APIRoute) and route.include_in_schema
        for method in route.methods
    }
    assert len(expected) >= 16
    documented = {(method, path) for path, item in spec["paths"].items() for method in item}
    assert expected - documented == set()
    assert not any(path.startswith("/api-docs") for path in spec["paths"])


def test_swagger_ui_page_and_its_assets(docs: Handler) -> None:
    page = _get(docs, "/api-docs", "text/html")
    assert page["statusCode"] == 200
    assert page["headers"]["content-type"].startswith("text/html")
    assert '<div id="swagger-ui">' in page["body"]
    assert "default-src 'none'" in page["headers"]["content-security-policy"]
    # The files the page loads come from the layer (fastapi-offline), not a CDN.
    bundle = _get(docs, "/api-docs/static/swagger-ui-bundle.js", "*/*")
    assert bundle["statusCode"] == 200
    assert "SwaggerUIBundle" in bundle["body"]
    icon = _get(docs, "/api-docs/static/favicon.png", "image/*")
    assert icon["statusCode"] == 200
    assert icon["isBase64Encoded"] is True
    assert base64.b64decode(icon["body"]).startswith(b"\x89PNG")
    assert _get(docs, "/api-docs/static/../../app.py", "*/*")["statusCode"] == 404


_IMPORT_ENTRY_POINT = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("app", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
docs = sys.modules.get("mysoulmate.api.docs")
print(json.dumps({
    "modules": sorted(n for n in sys.modules if n.startswith("mysoulmate.api")),
    "spec_cached": docs.spec_bytes.cache_info().currsize if docs else None,
}))
"""


def _init(function: str) -> dict[str, Any]:
    """Lambda's init of `functions/<function>/app.py` in a fresh interpreter."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(REPO_ROOT / "layers" / "common"),
        "AWS_LAMBDA_FUNCTION_NAME": f"mysoulmate-test-{function}",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_EC2_METADATA_DISABLED": "true",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "STORAGE_BACKEND": "dynamodb",
        "QUEUE_BACKEND": "sqs",
        "EVENTS_TABLE": "mysoulmate-test-events",
        "EVENTS_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/unused",
        "AUTH_MODE": "apigateway",
        "POWERTOOLS_SERVICE_NAME": function,
    }
    app = REPO_ROOT / "functions" / function / "app.py"
    result = subprocess.run(
        [sys.executable, "-c", _IMPORT_ENTRY_POINT, str(app)],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    loaded: dict[str, Any] = json.loads(result.stdout.splitlines()[-1])
    return loaded


def test_only_the_docs_function_pays_for_the_openapi_document() -> None:
    """Cold start: generating the document imports every router; no function does it."""
    analytics_init = _init("analytics")
    assert "mysoulmate.api.analytics" in analytics_init["modules"]
    assert not {"mysoulmate.api.openapi", "mysoulmate.api.docs"} & set(analytics_init["modules"])
    docs_init = _init("docs")
    # The docs function serves the document the package ships: no router is even imported.
    assert not {"mysoulmate.api.openapi", "mysoulmate.api.analytics"} & set(docs_init["modules"])
    # Built during init (what SnapStart snapshots), not by the first request.
    assert docs_init["spec_cached"] == 1
