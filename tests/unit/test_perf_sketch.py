"""What a batch of perf messages adds to the sketch counters, and how a queued perf payload is
read: the consumer's hot loop against the plain rule it implements. No storage involved."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from mysoulmate.analytics.models import QueuedMessage
from mysoulmate.analytics.perf_models import MAXIMUM, METRICS, PerfPayload
from mysoulmate.analytics.perf_sketch import (
    SUM_BUCKET,
    SUM_SCALE,
    ZERO_BUCKET,
    PerfCell,
    PerfDelta,
    PerfRow,
    bucket_of,
    delta_rows,
    payload_of,
    perf_delta,
)
from mysoulmate.storage.perf_batch import perf_batch
from pydantic import ValidationError

BATCH_TIME = datetime(2026, 1, 5, 23, 59, tzinfo=UTC)


def message(
    measurements: list[dict[str, Any]],
    *,
    message_id: str = "m-1",
    version: str = "2.4.0",
    device: str = "mid",
    platform: str | None = "ios",
    properties: dict[str, Any] | None = None,
) -> QueuedMessage:
    return QueuedMessage(
        type="perf",
        messageId=message_id,
        userId="ann",
        timestamp=BATCH_TIME,
        receivedAt=BATCH_TIME,
        platform=platform,
        properties=properties
        if properties is not None
        else {"appVersion": version, "deviceClass": device, "measurements": measurements},
    )


def reference_delta(messages: list[QueuedMessage]) -> PerfDelta:
    """The rule, one measurement at a time: its cell's bucket counts one, its sum its value."""
    delta: PerfDelta = Counter()
    for queued in messages:
        payload = PerfPayload.model_validate(queued.properties)
        for m in payload.measurements:
            cell = PerfCell(
                (m.timestamp or queued.timestamp).date(),
                m.metric,
                m.name,
                payload.appVersion,
                queued.platform or "unknown",
                payload.deviceClass,
            )
            delta[(cell, bucket_of(m.value))] += 1
            delta[(cell, SUM_BUCKET)] += round(m.value * SUM_SCALE)
    return delta


def random_messages(count: int, seed: int) -> list[QueuedMessage]:
    rng = random.Random(seed)
    out = []
    for n in range(count):
        measurements: list[dict[str, Any]] = []
        for _ in range(rng.randrange(1, 60)):
            metric = rng.choice(METRICS)
            item: dict[str, Any] = {
                "metric": metric,
                "name": rng.choice(["Chat", "Home", "cold", "sync"]),
                "value": rng.choice([0.0, 1e-12, round(rng.uniform(0, MAXIMUM[metric]), 3)]),
            }
            if rng.random() < 0.2:  # dated on another day than the batch
                moment = BATCH_TIME - timedelta(hours=rng.randrange(0, 72))
                item["timestamp"] = moment.isoformat()
            measurements.append(item)
        out.append(
            message(
                measurements,
                message_id=f"m-{n}",
                version=rng.choice(["2.3.0", "2.4.0"]),
                device=rng.choice(["low", "high"]),
                platform=rng.choice(["ios", None]),
            )
        )
    return out


def test_the_delta_is_the_rule_applied_to_every_measurement() -> None:
    messages = random_messages(40, seed=19)
    delta = perf_delta(messages)
    assert isinstance(delta, Counter)
    assert delta == reference_delta(messages)
    assert perf_delta(messages[:1]) == reference_delta(messages[:1])
    assert perf_delta([]) == Counter()


def test_measurements_are_dated_by_their_own_time_else_the_batchs() -> None:
    own = (BATCH_TIME - timedelta(days=1)).isoformat()
    queued = message(
        [
            {"metric": "render", "name": "Chat", "value": 100.0},
            {"metric": "render", "name": "Chat", "value": 100.0, "timestamp": own},
            {"metric": "fps", "name": "Chat", "value": 0.0},
        ],
        platform=None,
    )
    jan_5 = PerfCell(BATCH_TIME.date(), "render", "Chat", "2.4.0", "unknown", "mid")
    jan_4 = jan_5._replace(day=BATCH_TIME.date() - timedelta(days=1))
    fps = jan_5._replace(metric="fps")
    assert perf_delta([queued]) == Counter(
        {
            (jan_5, bucket_of(100.0)): 1,
            (jan_5, SUM_BUCKET): 100_000,
            (jan_4, bucket_of(100.0)): 1,
            (jan_4, SUM_BUCKET): 100_000,
            (fps, ZERO_BUCKET): 1,
            (fps, SUM_BUCKET): 0,
        }
    )


def test_rows_come_in_cell_then_bucket_order_without_zeros() -> None:
    delta = reference_delta(random_messages(40, seed=7))
    delta[next(iter(delta))] = 0  # e.g. a sum of zeros: never written
    rows = delta_rows(delta)
    assert rows == [PerfRow(cell, bucket, n) for (cell, bucket), n in sorted(delta.items()) if n]
    assert all(isinstance(row, PerfRow) for row in rows)


@pytest.mark.parametrize(
    "version", ["2.4.0#ios", "2.4\x00", "2.4\n", "", "x" * 41, "2.4 beta", "2.4\ud800"]
)
def test_a_queued_payload_is_held_to_the_requests_rules(version: str) -> None:
    # On its own: whatever the generic checks of a queued message's properties let through.
    properties = {
        "appVersion": version,
        "deviceClass": "mid",
        "measurements": [{"metric": "render", "name": "Chat", "value": 1.0}],
    }
    with pytest.raises(ValidationError):
        PerfPayload.model_validate(properties)
    valid = message([], properties={**properties, "appVersion": "2.5.0-beta.1+7"})
    assert payload_of(valid).appVersion == "2.5.0-beta.1+7"


@pytest.mark.parametrize(
    "properties",
    [
        {"appVersion": "1"},
        {"appVersion": "1", "deviceClass": "mid", "measurements": [{"metric": "render"}]},
        {
            "appVersion": "1",
            "deviceClass": "mid",
            "measurements": [{"metric": "fps", "name": "Chat", "value": 5_000.0}],
        },
        {
            "appVersion": "1",
            "deviceClass": "mid",
            "measurements": [{"metric": "render", "name": "Chat#1", "value": 1.0}],
        },
        {"appVersion": "1", "deviceClass": "mid", "measurements": [], "extra": 1},
    ],
)
def test_a_malformed_payload_fails_its_message_alone(properties: dict[str, Any]) -> None:
    good = message([{"metric": "render", "name": "Chat", "value": 1.0}], message_id="good")
    bad = message([], message_id="bad", properties=properties)
    batch = perf_batch([bad, good, bad], "test")
    assert list(batch.messages) == [good.key]
    assert set(batch.failed) == {bad.key}
    assert batch.failed[bad.key].startswith("test: not a perf payload: ")
    assert batch.delta_of([good.key]) == reference_delta([good])
