"""The Segment-compatible ingest routes and the write-key sources on AWS.

Stock SDKs (analytics.js, analytics-python, RudderStack) post to `/v1/<call>` with a write key
instead of a JWT: API Gateway must let them through to the analytics function, which checks the
key, and a bucket of their own must throttle them before any invocation. The signed-in batch
route and the admin routes of the sources keep the JWT authorizer.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.infrastructure.test_template import (
    DEPLOY_PARAMETERS,
    _translate,
    http_api_events,
    load_template,
    resolved,
)

SDK_CALLS = ("track", "identify", "page", "screen", "group", "alias", "batch")
SDK_ROUTES = {("POST", f"/v1/{call}") for call in SDK_CALLS}
SIGNED_IN_ROUTES = {
    ("POST", "/api/v1/analytics/batch"),
    ("GET", "/api/v1/admin/sources"),
    ("POST", "/api/v1/admin/sources"),
    ("DELETE", "/api/v1/admin/sources/{sourceId}"),
}
SDK_THROTTLING = {
    "ThrottlingBurstLimit": {"Ref": "SdkThrottlingBurstLimit"},
    "ThrottlingRateLimit": {"Ref": "SdkThrottlingRateLimit"},
}
INGEST_THROTTLING = {
    "ThrottlingBurstLimit": {"Ref": "IngestThrottlingBurstLimit"},
    "ThrottlingRateLimit": {"Ref": "IngestThrottlingRateLimit"},
}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


def routes_by_function(template: dict[str, Any]) -> dict[tuple[str, str], tuple[str, Any]]:
    """(method, path) -> (function, Auth.Authorizer) of every HttpApi event of the template."""
    found: dict[tuple[str, str], tuple[str, Any]] = {}
    for name, resource in template["Resources"].items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        for route, authorizer in http_api_events(template, name).items():
            assert route not in found, f"{route} is routed twice"
            found[route] = (name, authorizer)
    return found


def test_every_sdk_route_reaches_the_analytics_function_without_a_jwt(
    template: dict[str, Any],
) -> None:
    routes = routes_by_function(template)
    for route in sorted(SDK_ROUTES):
        assert route in routes, f"{route} is not routed"
        assert routes[route] == ("AnalyticsFunction", "NONE"), route


def test_only_the_sdk_routes_of_the_analytics_function_skip_the_authorizer(
    template: dict[str, Any],
) -> None:
    """Everything else analytics serves needs a valid JWT at the gateway: a public route there
    would be reachable by anyone, with only the function's own checks in the way."""
    for (method, path), authorizer in http_api_events(template, "AnalyticsFunction").items():
        if path.startswith("/v1/"):
            assert authorizer == "NONE", f"{method} {path}: SDKs send a write key, not a JWT"
        else:
            assert authorizer is None, f"{method} {path} must keep the JWT authorizer"
    auth = template["Resources"]["HttpApi"]["Properties"]["Auth"]
    assert auth["DefaultAuthorizer"] == "JwtAuthorizer"


def test_signed_in_batch_and_admin_sources_routes_keep_the_jwt_authorizer(
    template: dict[str, Any],
) -> None:
    routes = routes_by_function(template)
    for route in sorted(SIGNED_IN_ROUTES):
        assert route in routes, f"{route} is not routed"
        assert routes[route] == ("AnalyticsFunction", None), route


def test_every_sdk_route_has_its_own_throttling(template: dict[str, Any]) -> None:
    """Nothing but API Gateway's bucket stands between a flood with bad keys and the function,
    so every /v1/* route (any alias added later included) needs one."""
    settings = template["Resources"]["HttpApi"]["Properties"]["RouteSettings"]
    public = {r for r in http_api_events(template, "AnalyticsFunction") if r[1].startswith("/v1/")}
    assert public >= SDK_ROUTES
    for method, path in sorted(public):
        assert settings.get(f"{method} {path}") == SDK_THROTTLING, path
    # The signed-in batch counts as ingest, not as a read.
    assert settings.get("POST /api/v1/analytics/batch") == INGEST_THROTTLING, "signed-in batch"


def test_sdk_throttling_parameters(template: dict[str, Any]) -> None:
    params = template["Parameters"]
    for name in ("SdkThrottlingBurstLimit", "SdkThrottlingRateLimit"):
        spec = params[name]
        assert spec["Type"] == "Number", name
        assert spec["MinValue"] >= 1, name
        assert spec["Default"] >= spec["MinValue"], name
        assert spec["Description"], name


@pytest.mark.parametrize("backend", ["dynamodb", "aurora"])
def test_sam_output_keeps_sdk_routes_public_and_throttled(
    template: dict[str, Any], backend: str
) -> None:
    """What API Gateway receives: the OpenAPI body's security and the stage's route settings."""
    values = {**DEPLOY_PARAMETERS, "StorageBackend": backend}
    resources = resolved(_translate(template, values), values)["Resources"]
    paths = resources["HttpApi"]["Properties"]["Body"]["paths"]
    for method, path in sorted(SDK_ROUTES):
        operation = paths[path][method.lower()]
        assert operation["security"] == [{"NONE": []}], path
        uri = operation["x-amazon-apigateway-integration"]["uri"]["Fn::Sub"]
        assert "${AnalyticsFunctionAliaslive}" in uri, (path, uri)
    for method, path in sorted(SIGNED_IN_ROUTES):
        assert paths[path][method.lower()]["security"] == [{"JwtAuthorizer": []}], path
    stage = resources["HttpApiApiGatewayDefaultStage"]["Properties"]
    for method, path in sorted(SDK_ROUTES):
        assert stage["RouteSettings"][f"{method} {path}"] == SDK_THROTTLING, path
    # Each route may invoke the function's alias from this API only, on its own method and path.
    permissions = [
        r["Properties"]
        for r in resources.values()
        if r["Type"] == "AWS::Lambda::Permission"
        and r["Properties"]["Principal"] == "apigateway.amazonaws.com"
    ]
    for method, path in sorted(SDK_ROUTES):
        (permission,) = [
            p for p in permissions if p["SourceArn"]["Fn::Sub"][0].endswith(f"/{method}{path}")
        ]
        assert permission["FunctionName"] == {"Ref": "AnalyticsFunctionAliaslive"}, path
        assert permission["SourceArn"]["Fn::Sub"][1]["__ApiId__"] == {"Ref": "HttpApi"}, path
