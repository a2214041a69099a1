"""`GET /metrics` (Prometheus text exposition) and `GET /api/v1/metrics` (admin, JSON).

Container and laptop shapes only: on Lambda the same figures are CloudWatch metrics (EMF),
so no function mounts this router. ``/metrics`` answers without a token, as Prometheus
scrapes it; keep it off the public ingress (docs/observability.md, "Metrics").
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from pydantic import BaseModel, Field

from mysoulmate.api import examples
from mysoulmate.api.auth import current_principal
from mysoulmate.api.responses import ADMIN, errors, ok, operation_id
from mysoulmate.api.strict_query import reject_unknown_query
from mysoulmate.core.concurrency import run_blocking
from mysoulmate.core.principal import Principal

router = APIRouter(
    tags=["metrics"],
    generate_unique_id_function=operation_id,
    dependencies=[Depends(reject_unknown_query)],
)


class MetricSample(BaseModel):
    name: str = Field(description="Sample name, e.g. `http_requests_total` or `…_bucket`.")
    labels: dict[str, str]
    value: float


class MetricFamily(BaseModel):
    name: str = Field(description="Family name as Prometheus names it (counters without _total).")
    type: str = Field(description="counter, gauge, histogram, …")
    help: str
    samples: list[MetricSample]


class MetricsSnapshot(BaseModel):
    generatedAt: datetime
    families: list[MetricFamily]


@router.get(
    "/metrics",
    response_class=Response,
    summary="Prometheus metrics",
    responses={
        200: {
            "description": "Prometheus text exposition format 0.0.4.",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        },
        **errors(),
    },
)
async def prometheus_metrics() -> Response:
    """Every metric family of this server (all workers' when several share the multiprocess
    directory), for Prometheus to scrape."""
    from mysoulmate.observability import prometheus

    body = await run_blocking(prometheus.exposition)
    return Response(body, media_type=prometheus.CONTENT_TYPE)


@router.get(
    "/api/v1/metrics",
    response_model=MetricsSnapshot,
    summary="Metrics as JSON",
    responses={**ok(examples.METRICS), **errors(401, 403)},
    openapi_extra=ADMIN,
)
async def metrics_snapshot(
    caller: Annotated[Principal, Depends(current_principal)],
) -> MetricsSnapshot:
    """Admin: the figures of ``/metrics`` as JSON, for dashboards without Prometheus."""
    caller.require_admin()
    from mysoulmate.observability import prometheus

    families = await run_blocking(prometheus.snapshot)
    return MetricsSnapshot(
        generatedAt=datetime.now(UTC),
        families=[MetricFamily.model_validate(family) for family in families],
    )
