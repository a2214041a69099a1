"""Rows in and out of PostgreSQL, no connection needed: a queued message as a row of the
COPY stage table (with the checks that let one unstorable message fail alone, and the jsonb
dumper the COPY registers), stored rows as `StoredEvent`s, and the text checks and cursor
parsing the queries share.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from psycopg import postgres
from psycopg.adapt import Dumper
from psycopg.pq import Format

from mysoulmate.analytics.models import QueuedMessage, StoredEvent
from mysoulmate.core.errors import InvalidRequestError

_EVENT_COLUMNS = (
    "user_id, message_id, type, event, ts, received_at, platform, anonymous_id, properties, "
    "context, session_id"
)
_EVENT_TYPES = (
    "text", "text", "text", "text", "timestamptz", "timestamptz", "text", "text", "jsonb", "jsonb",
    "text",
)  # fmt: skip
# What list_events reads, in `_stored_event`'s order.
_STORED_COLUMNS = (
    "message_id, type, event, ts, received_at, platform, anonymous_id, properties, context, "
    "session_id"
)
_ESCAPED_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")
# json.dumps(value, ensure_ascii=False, allow_nan=False) without building an encoder per
# call; compact separators (jsonb keeps no formatting, so what is stored is the same).
_to_json = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode


class _JsonbTextDumper(Dumper):
    """jsonb for a binary COPY from JSON text _event_row already serialized and checked: the
    binary form is a version byte (1) and the text, which the server parses as it would
    the text form. Registered by oid only, on the COPY's cursor (after `set_types`)."""

    format = Format.BINARY
    oid = postgres.types["jsonb"].oid

    def dump(self, obj: str) -> bytes:
        return b"\x01" + obj.encode()


class UnstorableMessageError(ValueError):
    """A message PostgreSQL cannot hold as is (NUL characters, NaN, lone surrogates)."""


def _event_row(m: QueuedMessage) -> tuple[Any, ...]:
    """A message as a stage row (column order of _EVENT_COLUMNS). Raises
    UnstorableMessageError for values PostgreSQL rejects, so one such message fails alone
    instead of failing its whole batch."""
    properties = m.stored_properties()
    try:
        props = _to_json(properties) if properties else "{}"
        ctx = _to_json(m.context) if m.context else "{}"
    except ValueError:
        raise UnstorableMessageError("NaN or Infinity in properties or context") from None
    # One check over all text fields at once: a NUL or a lone surrogate in any of them is in
    # their concatenation. (isascii() is O(1): only non-ASCII text is encoded to check it.)
    text = (
        f"{m.userId}{m.messageId}{m.event or ''}{m.platform or ''}{m.anonymousId or ''}"
        f"{m.sessionId or ''}{props}{ctx}"
    )
    if "\x00" in text or not (text.isascii() or _encodable(text)):
        raise UnstorableMessageError("NUL character or invalid Unicode in a text field")
    if ("\\u0000" in props and _ESCAPED_NUL.search(props)) or (
        "\\u0000" in ctx and _ESCAPED_NUL.search(ctx)
    ):
        raise UnstorableMessageError("NUL character (\\u0000) in properties or context")
    return (
        m.userId,
        m.messageId,
        m.type,
        m.event,
        m.timestamp,
        m.receivedAt,
        m.platform,
        m.anonymousId,
        props,
        ctx,
        m.sessionId,
    )


def _encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _storable_text(text: str) -> bool:
    if "\x00" in text:
        return False
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _stored_event(row: tuple[Any, ...]) -> StoredEvent:
    message_id, type_, event, ts, received_at, platform, anonymous_id, props, ctx, sid = row
    return StoredEvent(
        messageId=message_id,
        type=type_,
        event=event,
        timestamp=ts.astimezone(UTC),
        receivedAt=received_at.astimezone(UTC),
        platform=platform,
        anonymousId=anonymous_id,
        properties=props,
        context=ctx,
        sessionId=sid,
    )


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _invalid_cursor() -> InvalidRequestError:
    return InvalidRequestError(
        code="invalid_cursor", details=[{"field": "cursor", "type": "invalid_cursor"}]
    )


def _cursor_time(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise _invalid_cursor() from None
    if moment.tzinfo is None:
        raise _invalid_cursor()
    return moment


def _cursor_text(text: str) -> str:
    if not _storable_text(text):
        raise _invalid_cursor()
    return text
