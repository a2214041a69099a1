"""Client performance telemetry: what the apps send and what the summary answers.

A batch of measurements (screen render time, frames per second, dropped frames, named
operation timings, app start time, JS bundle size) arrives with the app version, platform and
device class it was measured on. It travels through the same durable queue as events, as a
`QueuedMessage` of type ``perf`` whose properties hold the batch (`PerfPayload`), and is
stored as quantile sketches (`perf_sketch`), never as raw measurements per person.
"""

from __future__ import annotations

import math
from datetime import date
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator
from pydantic_core import PydanticCustomError

from mysoulmate.analytics.models import MessageId, Platform, Timestamp

Metric = Literal["render", "fps", "dropped_frames", "operation", "app_start", "bundle_size"]
METRICS: tuple[Metric, ...] = (
    "render",
    "fps",
    "dropped_frames",
    "operation",
    "app_start",
    "bundle_size",
)
# The unit each metric is measured in, and the largest value that can be true: a render of
# ten minutes or a 2 GB bundle is a client bug, refused rather than skewing a p99.
UNITS: dict[str, str] = {
    "render": "ms",
    "fps": "frames/s",
    "dropped_frames": "frames",
    "operation": "ms",
    "app_start": "ms",
    "bundle_size": "bytes",
}
MAXIMUM: dict[str, float] = {
    "render": 600_000.0,
    "fps": 1_000.0,
    "dropped_frames": 1_000_000.0,
    "operation": 3_600_000.0,
    "app_start": 600_000.0,
    "bundle_size": 2_000_000_000.0,
}
DeviceClass = Literal["low", "mid", "high", "unknown"]
MAX_MEASUREMENTS = 500  # per request: about 30 KB of JSON, under a queue message's limit
# The names of screens, operations and bundles, and app versions: short printable text.
PerfName = Annotated[
    str, StringConstraints(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f#]+$")
]
AppVersion = Annotated[
    str, StringConstraints(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_.+()-]+$")
]
UNKNOWN_VERSION = "unknown"

MEASUREMENT_DOC = (
    "render, operation and app_start in milliseconds; fps in frames per second; "
    "dropped_frames a count; bundle_size in bytes. Finite, not negative, and at most: "
    + ", ".join(f"{metric} {MAXIMUM[metric]:,.0f}" for metric in METRICS)
    + "."
)


class Measurement(BaseModel):
    """One measurement: the metric, what it measured (a screen, an operation, a bundle, or
    `cold`/`warm` for app start) and its value."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    metric: Metric = Field(description="What was measured.")
    name: PerfName = Field(
        description="The screen (render, fps, dropped_frames), the operation, the bundle, or "
        "`cold`/`warm` (app_start). No control characters or `#`.",
        examples=["ChatScreen"],
    )
    # Strict: `true` or `"184"` is a client bug, not a measurement. The bounds here are the
    # widest (any metric's); each metric's own is checked below, as it depends on `metric`.
    value: float = Field(
        strict=True,
        ge=0,
        le=max(MAXIMUM.values()),
        allow_inf_nan=False,
        description=MEASUREMENT_DOC,
        examples=[184.5],
    )
    timestamp: Timestamp | None = Field(
        default=None,
        description="When it was measured (ISO 8601); default: the batch's time. It decides "
        "the UTC day the measurement is counted on.",
    )

    @model_validator(mode="after")
    def _value_in_range(self) -> Measurement:
        limit = MAXIMUM[self.metric]
        if not math.isfinite(self.value) or not 0 <= self.value <= limit:
            raise PydanticCustomError(
                "perf_value_out_of_range",
                "{metric} must be a finite number from 0 to {limit}",
                {"metric": self.metric, "limit": limit},
            )
        return self


class PerfBatchRequest(BaseModel):
    """`POST /api/v1/perf`: measurements taken by the signed-in user's app."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    appVersion: AppVersion = Field(description="The app's version, e.g. `2.4.0`.")
    platform: Platform = Field(description="ios, android, web…", examples=["ios"])
    deviceClass: DeviceClass = Field(
        default="unknown",
        description="The device's performance class, as the app judges it (low, mid, high).",
    )
    measurements: list[Measurement] = Field(
        min_length=1, max_length=MAX_MEASUREMENTS, description="1 to 500 measurements."
    )
    messageId: MessageId | None = Field(
        default=None,
        description="Unique per user: a retried batch with the same id is counted once.",
    )
    timestamp: Timestamp | None = Field(
        default=None, description="When the batch was taken (ISO 8601); default: when received."
    )
    sentAt: Timestamp | None = Field(
        default=None, description="When the client sent it (same clock): corrects skew."
    )


class SegmentPerf(BaseModel):
    """The properties of a Segment-format ``perf`` message (`/v1/batch`, `/api/v1/analytics/
    batch`): the same measurements as `PerfBatchRequest`; the platform comes from the
    message's context like any message's."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    appVersion: AppVersion
    deviceClass: DeviceClass = "unknown"
    measurements: list[Measurement] = Field(min_length=1, max_length=MAX_MEASUREMENTS)


class PerfPayload(BaseModel):
    """The properties of a queued ``perf`` message: the batch, normalized. The consumer
    validates what it takes from the queue with this model (`perf_sketch.payload_of`), so it
    holds every rule of the requests it is built from: the app version is an `AppVersion`
    too (printable, no `#`, at most 40 characters), as `PerfBatchRequest` and `SegmentPerf`
    (whose default, ``unknown``, is one) have always required."""

    model_config = ConfigDict(extra="forbid")

    appVersion: AppVersion
    deviceClass: DeviceClass
    measurements: list[Measurement]


class PerfAccepted(BaseModel):
    """The batch is durably queued; it will be counted exactly once."""

    messageId: str = Field(description="The batch's id: the one sent, or a generated UUID.")
    measurements: int = Field(description="How many measurements were queued.")
    status: Literal["queued"] = "queued"


class Quantiles(BaseModel):
    """Quantiles of the measurements of one group, within ``relativeAccuracy`` of the exact
    ones (DDSketch's guarantee); None when there are none."""

    count: int
    p50: float | None
    p90: float | None
    p99: float | None
    mean: float | None


class VersionQuantiles(Quantiles):
    appVersion: str


class DayQuantiles(Quantiles):
    day: date
    appVersion: str


class PerfSummary(BaseModel):
    """`GET /api/v1/perf/summary`."""

    metric: Metric
    name: str
    unit: str
    start: date
    end: date
    relativeAccuracy: float
    overall: Quantiles
    byVersion: list[VersionQuantiles]
    byDay: list[DayQuantiles]


class ScreenChange(BaseModel):
    """One screen's p90 render time in the latest app version against the version before."""

    name: str
    platform: str
    appVersion: str
    p90: float
    count: int
    previousVersion: str | None
    previousP90: float | None
    previousCount: int | None
    change: float | None = Field(description="p90 / previous p90 - 1; None with no previous.")
    regressed: bool


class SlowScreens(BaseModel):
    """`GET /api/v1/perf/screens`: the slowest screens by p90 render time."""

    start: date
    end: date
    threshold: float = Field(description="A change above this fraction is a regression.")
    minCount: int = Field(description="Versions with fewer measurements are not compared.")
    screens: list[ScreenChange]
