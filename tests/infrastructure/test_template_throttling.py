"""API Gateway's throttling, the AWS half of the per-caller limits: ingest routes get buckets
of their own, apart from the default route settings that reads share."""

from __future__ import annotations

from tests.infrastructure.test_template import load_template


def test_ingest_routes_have_their_own_throttling() -> None:
    template = load_template()
    api = template["Resources"]["HttpApi"]["Properties"]
    routes = api["RouteSettings"]
    for key in (
        "POST /api/v1/analytics/track",
        "POST /api/v1/analytics/identify",
        "POST /api/v1/analytics/batch",
    ):
        assert routes[key]["ThrottlingBurstLimit"] == {"Ref": "IngestThrottlingBurstLimit"}
        assert routes[key]["ThrottlingRateLimit"] == {"Ref": "IngestThrottlingRateLimit"}
    assert api["DefaultRouteSettings"]["ThrottlingRateLimit"] == {"Ref": "ApiThrottlingRateLimit"}


def test_every_throttled_route_exists() -> None:
    """API Gateway refuses a deployment whose RouteSettings name a route it does not have."""
    template = load_template()
    routes = set()
    for resource in template["Resources"].values():
        for event in (resource.get("Properties", {}).get("Events") or {}).values():
            if event.get("Type") == "HttpApi":
                props = event["Properties"]
                routes.add(f"{props['Method'].upper()} {props['Path']}")
    throttled = set(template["Resources"]["HttpApi"]["Properties"]["RouteSettings"])
    assert throttled <= routes
