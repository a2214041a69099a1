"""Client performance telemetry, the use cases: accept a batch once it is durably queued,
summarize a metric over a range of days, and find the slowest screens and their regressions.

Every figure comes from the sketch counters (`perf_sketch`), so a summary's cost grows with
the days, versions and buckets read, never with the measurements behind them.
"""

from __future__ import annotations

import re
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from mysoulmate.analytics.models import QueuedMessage
from mysoulmate.analytics.normalize import corrected_timestamp, storable_subject
from mysoulmate.analytics.perf_models import (
    UNITS,
    DayQuantiles,
    Metric,
    PerfAccepted,
    PerfBatchRequest,
    PerfPayload,
    PerfSummary,
    ScreenChange,
    SlowScreens,
    VersionQuantiles,
)
from mysoulmate.analytics.ports import MessageQueue, PerfStore
from mysoulmate.analytics.service import enqueue
from mysoulmate.analytics.validation import Problem, check_timestamp
from mysoulmate.core.errors import InvalidRequestError
from mysoulmate.core.principal import Principal
from mysoulmate.core.settings import get_settings
from mysoulmate.observability import count

# For annotations only: the sketches (and ddsketch) are imported by the functions that read
# them, not when the analytics API's cold start imports this module through its routes.
if TYPE_CHECKING:
    from mysoulmate.analytics.perf_sketch import PerfRow, Tally

RENDER: Metric = "render"
DEFAULT_THRESHOLD = 0.2  # a p90 20 % slower than the version before is a regression
DEFAULT_MIN_COUNT = 50  # fewer measurements make a p90 too noisy to compare
DEFAULT_SCREENS = 10


def perf_message(
    request: PerfBatchRequest,
    principal: Principal,
    received_at: datetime,
    request_id: str,
    max_future_seconds: int,
) -> QueuedMessage:
    """The queued ``perf`` message of a batch: times corrected for the client's clock skew
    (as events are) and checked, each measurement dated."""
    batch_time = _checked(request.timestamp, request.sentAt, received_at, max_future_seconds, -1)
    measurements = [
        measurement.model_copy(
            update={
                "timestamp": _checked(
                    measurement.timestamp, request.sentAt, received_at, max_future_seconds, index
                )
                if measurement.timestamp is not None
                else None
            }
        )
        for index, measurement in enumerate(request.measurements)
    ]
    payload = PerfPayload(
        appVersion=request.appVersion, deviceClass=request.deviceClass, measurements=measurements
    )
    return QueuedMessage(
        type="perf",
        messageId=request.messageId or str(uuid.uuid4()),
        userId=storable_subject(principal),
        timestamp=batch_time,
        receivedAt=received_at,
        sentAt=request.sentAt,
        platform=request.platform,
        requestId=request_id,
        properties=payload.model_dump(mode="json", exclude_none=True),
    )


def _checked(
    moment: datetime | None,
    sent_at: datetime | None,
    received_at: datetime,
    max_future_seconds: int,
    index: int,
) -> datetime:
    where = "timestamp" if index < 0 else f"measurements.{index}.timestamp"
    try:
        corrected = corrected_timestamp(moment, sent_at, received_at)
        check_timestamp(corrected, received_at, max_future_seconds)
    except OverflowError:
        raise _time_error("timestamp_out_of_range", where, str(moment)) from None
    except Problem as problem:
        raise _time_error(problem.kind, where, str(moment), **problem.params) from None
    return corrected


def _time_error(kind: str, where: str, moment: str, **params: Any) -> InvalidRequestError:
    return InvalidRequestError(
        code=kind, details=[{"field": where, "type": kind}], timestamp=moment, **params
    )


async def accept_perf(message: QueuedMessage, queue: MessageQueue) -> PerfAccepted:
    """Accepted means durable: the 202 is sent only after the queue has the batch."""
    await enqueue(message, queue)
    measurements = len(message.properties["measurements"])
    count("PerfMeasurementsAccepted", measurements)
    return PerfAccepted(messageId=message.messageId, measurements=measurements)


@dataclass(frozen=True)
class PerfFilter:
    """Which cells a summary reads: a metric and name, days, and optionally one platform,
    app version or device class."""

    metric: Metric
    name: str
    start: date
    end: date
    platform: str | None = None
    app_version: str | None = None
    device_class: str | None = None

    def keeps(self, row: PerfRow) -> bool:
        cell = row.cell
        return (
            (self.platform is None or cell.platform == self.platform)
            and (self.app_version is None or cell.app_version == self.app_version)
            and (self.device_class is None or cell.device_class == self.device_class)
        )


def perf_summary(store: PerfStore, wanted: PerfFilter) -> PerfSummary:
    """p50, p90, p99, count and mean over the range, per app version, and per day and
    app version (newest version first; days in order)."""
    # On first use, not at cold start: the sketches load ddsketch.
    from mysoulmate.analytics.perf_sketch import RELATIVE_ACCURACY, Tally

    overall = Tally()
    by_version: dict[str, Tally] = defaultdict(Tally)
    by_day: dict[tuple[date, str], Tally] = defaultdict(Tally)
    for row in store.perf_rows(wanted.metric, wanted.start, wanted.end, wanted.name):
        if not wanted.keeps(row):
            continue
        overall.add(row.bucket, row.amount)
        by_version[row.cell.app_version].add(row.bucket, row.amount)
        by_day[(row.cell.day, row.cell.app_version)].add(row.bucket, row.amount)
    versions = sorted(by_version, key=version_order, reverse=True)
    return PerfSummary(
        metric=wanted.metric,
        name=wanted.name,
        unit=UNITS[wanted.metric],
        start=wanted.start,
        end=wanted.end,
        relativeAccuracy=RELATIVE_ACCURACY,
        overall=overall.quantiles(),
        byVersion=[
            VersionQuantiles(appVersion=v, **by_version[v].quantiles().model_dump())
            for v in versions
        ],
        byDay=[
            DayQuantiles(day=day, appVersion=v, **tally.quantiles().model_dump())
            for (day, v), tally in sorted(
                by_day.items(), key=lambda item: (item[0][0], version_order(item[0][1]))
            )
        ],
    )


_PARTS = re.compile(r"(\d+)")


def version_order(version: str) -> tuple[Any, ...]:
    """Natural order of app versions: 2.10.0 after 2.9.1, 3.0.0-beta after 2.x. Digit runs
    compare as numbers, the rest as text (any scheme a store publishes keeps its order)."""
    return tuple(
        (0, int(part), "") if part.isdigit() else (1, 0, part)
        for part in _PARTS.split(version)
        if part
    )


@dataclass(frozen=True)
class ScreensQuery:
    start: date
    end: date
    platform: str | None = None
    threshold: float = DEFAULT_THRESHOLD
    min_count: int = DEFAULT_MIN_COUNT
    limit: int = DEFAULT_SCREENS


def slow_screens(store: PerfStore, query: ScreensQuery) -> SlowScreens:
    """The slowest screens by p90 render time in their latest app version (per platform),
    each against the version before it: a regression when the p90 grew by more than the
    threshold. Versions with fewer than ``min_count`` measurements are not compared."""
    from mysoulmate.analytics.perf_sketch import Tally  # on first use: not at cold start

    tallies: dict[tuple[str, str], dict[str, Tally]] = defaultdict(lambda: defaultdict(Tally))
    for row in store.perf_rows(RENDER, query.start, query.end, None):
        if query.platform is None or row.cell.platform == query.platform:
            tallies[(row.cell.name, row.cell.platform)][row.cell.app_version].add(
                row.bucket, row.amount
            )
    screens = [
        change
        for (name, platform), versions in tallies.items()
        if (change := _screen_change(name, platform, versions, query)) is not None
    ]
    screens.sort(key=lambda s: (-s.p90, s.name, s.platform))
    return SlowScreens(
        start=query.start,
        end=query.end,
        threshold=query.threshold,
        minCount=query.min_count,
        screens=screens[: query.limit],
    )


def _screen_change(
    name: str, platform: str, versions: dict[str, Tally], query: ScreensQuery
) -> ScreenChange | None:
    compared = [
        (version, tally.quantiles())
        for version, tally in sorted(versions.items(), key=lambda i: version_order(i[0]))
        if tally.count >= query.min_count
    ]
    if not compared:
        return None
    version, latest = compared[-1]
    assert latest.p90 is not None  # a tally with measurements has quantiles
    previous = compared[-2] if len(compared) > 1 else None
    change = None
    if previous is not None and previous[1].p90:
        change = latest.p90 / previous[1].p90 - 1
    return ScreenChange(
        name=name,
        platform=platform,
        appVersion=version,
        p90=latest.p90,
        count=latest.count,
        previousVersion=previous[0] if previous else None,
        previousP90=previous[1].p90 if previous else None,
        previousCount=previous[1].count if previous else None,
        change=round(change, 4) if change is not None else None,
        regressed=change is not None and change > query.threshold,
    )


def regressions(screens: Iterable[ScreenChange]) -> list[ScreenChange]:
    return [screen for screen in screens if screen.regressed]


def screens_in(
    store: PerfStore, start: date, end: date, platform: str | None, limit: int
) -> list[ScreenChange]:
    """The slowest screens of a date range with the configured threshold: what the
    dashboard and the period report show."""
    settings = get_settings()
    query = ScreensQuery(
        start,
        end,
        platform,
        threshold=settings.perf_regression_threshold,
        min_count=settings.perf_min_count,
        limit=limit,
    )
    return slow_screens(store, query).screens


ALL_SCREENS = 1_000  # what the checks read: every screen, not a page of the slowest


def perf_screens_now(store: PerfStore, today: date | None = None) -> list[ScreenChange]:
    """Every screen's latest p90 and change over the last PERF_REGRESSION_DAYS days, with
    the configured threshold: what `/metrics` exposes and the scheduled check alarms on."""
    end = today or datetime.now(UTC).date()
    start = end - timedelta(days=get_settings().perf_regression_days - 1)
    return screens_in(store, start, end, None, ALL_SCREENS)
