"""GDPR rights: export everything stored about a user (art. 15/20) and erase it (art. 17).

Both leave an audit entry (who, when, what): an export is recorded before the first byte is
streamed, an erasure right after it ran, with what it erased and what the providers the
events were forwarded to were asked to erase (`ErasureHook`).
"""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from mysoulmate.analytics.models import AuditEntry, StoredEvent, dumps_compact
from mysoulmate.analytics.ports import EventStore
from mysoulmate.analytics.report_models import ErasureReport

# Asks a provider to erase a person (user id, and the anonymous ids linked to them); returns
# what to record in the audit entry, e.g. {"mixpanel": {"taskId": "…"}}. Our own erasure is
# done by then and stands whatever a provider answers.
ErasureHook = Callable[[str, list[str]], dict[str, Any]]

EXPORT_PAGE = 500
CSV_COLUMNS = (
    "messageId",
    "type",
    "event",
    "timestamp",
    "receivedAt",
    "platform",
    "anonymousId",
    "properties",
    "context",
)
ExportFormat = Literal["json", "csv"]


def record(
    store: EventStore, actor: str, action: Literal["export", "delete"], subject: str, **details: Any
) -> AuditEntry:
    now = datetime.now(UTC)
    entry = AuditEntry(
        id=f"{now.strftime('%Y%m%d%H%M%S%f')}-{uuid.uuid4().hex[:12]}",
        at=now,
        actor=actor,
        action=action,
        subject=subject,
        details=details,
    )
    store.append_audit(entry)
    return entry


def all_events(store: EventStore, user_id: str) -> Iterator[StoredEvent]:
    cursor: str | None = None
    while True:
        page = store.list_events(user_id, EXPORT_PAGE, cursor)
        yield from page.events
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


def export_json(store: EventStore, user_id: str) -> Iterator[str]:
    """One JSON document, streamed a page of events at a time."""
    profile = store.get_profile(user_id)
    head = {
        "userId": user_id,
        "exportedAt": datetime.now(UTC).isoformat(),
        "profile": profile.model_dump(mode="json", exclude={"version"}) if profile else None,
    }
    yield dumps_compact(head)[:-1] + ',"events":['
    separator = ""
    for event in all_events(store, user_id):
        yield separator + event.model_dump_json()
        separator = ","
    yield "]}\n"


def export_csv(store: EventStore, user_id: str) -> Iterator[str]:
    """One row per event; the profile's traits travel as a first row of type 'profile'."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")

    def flush() -> str:
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    writer.writerow(CSV_COLUMNS)
    profile = store.get_profile(user_id)
    if profile is not None:
        updated = profile.updatedAt.isoformat() if profile.updatedAt else ""
        writer.writerow(["", "profile", "", updated, "", "", "", json.dumps(profile.traits), ""])
    yield flush()
    for event in all_events(store, user_id):
        writer.writerow(
            [
                event.messageId,
                event.type,
                event.event or "",
                event.timestamp.isoformat(),
                event.receivedAt.isoformat(),
                event.platform or "",
                event.anonymousId or "",
                dumps_compact(event.properties),
                dumps_compact(event.context),
            ]
        )
        yield flush()


def erase(
    store: EventStore, actor: str, user_id: str, hooks: Sequence[ErasureHook] = ()
) -> ErasureReport:
    profile = store.get_profile(user_id) if hooks else None
    result = store.delete_user(user_id, datetime.now(UTC))
    details: dict[str, Any] = {"events": result.events, "profile": result.profile}
    anonymous_ids = list(profile.anonymousIds) if profile else []
    for hook in hooks:
        try:
            details.update(hook(user_id, anonymous_ids))
        except Exception as exc:  # noqa: BLE001 - recorded; our erasure already stands
            details.setdefault("providerErrors", []).append(str(exc)[:300])
    entry = record(store, actor, "delete", user_id, **details)
    return ErasureReport(
        userId=user_id,
        erased=True,
        eventsDeleted=result.events,
        profileDeleted=result.profile,
        auditId=entry.id,
    )
