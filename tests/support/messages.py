"""Builders for `QueuedMessage`s as the API would have queued them (validated, in UTC),
`consume`: what the queue consumer does with one delivery, and `cut_short_links`: a
delivery whose identity move is cut short."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from mysoulmate.analytics.ingest import IngestBatch
from mysoulmate.analytics.models import ANONYMOUS_PREFIX, QueuedMessage
from mysoulmate.analytics.ports import (
    EventStore,
    LinkResult,
    StorageUnavailableError,
    StoreResult,
)

_ids = itertools.count(1)


def jan(day: int, hour: int = 12, minute: int = 0, second: int = 0) -> datetime:
    """A moment in January 2026 (UTC)."""
    return datetime(2026, 1, day, hour, minute, second, tzinfo=UTC)


def track(
    user: str,
    event: str,
    at: datetime,
    *,
    platform: str | None = "web",
    message_id: str | None = None,
    **properties: Any,
) -> QueuedMessage:
    return QueuedMessage(
        type="track",
        messageId=message_id or f"m-{next(_ids):06d}",
        userId=user,
        event=event,
        timestamp=at,
        receivedAt=at,
        platform=platform,
        properties=properties,
    )


def identify(
    user: str, at: datetime, *, message_id: str | None = None, **traits: Any
) -> QueuedMessage:
    return QueuedMessage(
        type="identify",
        messageId=message_id or f"m-{next(_ids):06d}",
        userId=user,
        timestamp=at,
        receivedAt=at,
        traits=traits,
    )


def visit(anonymous_id: str, at: datetime, event: str = "tick", **properties: Any) -> QueuedMessage:
    """A track event of a visitor known only by ``anonymous_id`` (stored as `anon:<id>`)."""
    message = track(ANONYMOUS_PREFIX + anonymous_id, event, at, **properties)
    return message.model_copy(update={"anonymousId": anonymous_id})


def identify_as(user: str, anonymous_id: str, at: datetime, **traits: Any) -> QueuedMessage:
    """An identify carrying both ids: it links the anonymous id to the user."""
    return identify(user, at, **traits).model_copy(update={"anonymousId": anonymous_id})


def consume(store: EventStore, *messages: QueuedMessage, delivery: int = 1) -> None:
    """One delivery through the consumer's record handler (links and re-checks included);
    every record must be stored. ``delivery`` > 1: the queue hands the records out again."""
    batch = IngestBatch(store)
    for index, message in enumerate(messages):
        batch.add(f"r{index}", message.model_dump_json(), delivery=delivery)
    outcome = batch.flush()
    assert not outcome.failed_records, outcome.failed_records


def cut_short_links(store: EventStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the next visitor batch's move cut short: during the store's first insert another
    consumer links v-1 to ann, and the consumer's own re-check link (the one that would move
    what it stored as the visitor) fails once. That record fails; the queue hands it out
    again."""
    real_insert, real_link = store.insert_events, store.link_anonymous
    calls = {"insert": 0, "link": 0}

    def insert(messages: Sequence[QueuedMessage]) -> StoreResult:
        calls["insert"] += 1
        if calls["insert"] == 1:
            real_link("v-1", "ann", jan(5, 13))
        return real_insert(messages)

    def link(anonymous_id: str, user_id: str, received_at: datetime) -> LinkResult:
        calls["link"] += 1
        if calls["link"] == 1:
            raise StorageUnavailableError("the re-check link failed this once")
        return real_link(anonymous_id, user_id, received_at)

    monkeypatch.setattr(store, "insert_events", insert)
    monkeypatch.setattr(store, "link_anonymous", link)
