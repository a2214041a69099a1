"""Typed shapes shared by every shape of the service: the queued message, stored events and
profiles, and the field types client requests are built from (`client_models`).

The consumer imports this module and not `client_models`: each pydantic model costs cold
start to build, and it never sees a client request.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    StringConstraints,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError

from mysoulmate.analytics.validation import StorableIdentifier, StorableJson, StorableText

MAX_PROPERTIES_BYTES = 32 * 1024
MAX_PROPERTIES_KEYS = 255
MAX_CONTEXT_BYTES = 8 * 1024
MAX_USER_ID_LENGTH = 255


def dumps_compact(value: Any) -> str:
    """JSON as stored and measured: compact separators, non-ASCII kept as is."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _iso8601(value: Any) -> Any:
    """Only ISO-8601 strings (or datetimes from our own code): no epoch numbers, no guessing."""
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            pass
    # A type of our own, so the API can word (and translate) it: validation.iso8601_required.
    raise PydanticCustomError(
        "iso8601_required", "must be an ISO-8601 date-time string, e.g. 2026-01-31T12:00:00Z"
    )


def _utc(value: datetime) -> datetime:
    """Naive times are taken as UTC; everything is stored in UTC."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+14:00 has no UTC equivalent
        raise PydanticCustomError(
            "timestamp_out_of_range", "must be a date-time that exists in UTC"
        ) from None


def _bounded_object(max_bytes: int, max_keys: int | None) -> Any:
    def check(value: dict[str, Any]) -> dict[str, Any]:
        if max_keys is not None and len(value) > max_keys:
            raise PydanticCustomError(
                "too_many_keys",
                "must have at most {max_keys} keys, got {actual}",
                {"max_keys": max_keys, "actual": len(value)},
            )
        size = len(dumps_compact(value).encode())
        if size > max_bytes:
            raise PydanticCustomError(
                "too_large",
                "must be at most {max_bytes} bytes as JSON, got {actual}",
                {"max_bytes": max_bytes, "actual": size},
            )
        return value

    return AfterValidator(check)


Timestamp = Annotated[datetime, BeforeValidator(_iso8601), AfterValidator(_utc)]

# How the API document states these rules (JSON Schema): ids and names have a visible
# character and no control characters; JSON values hold no NUL. The nesting and size limits
# are in the descriptions (JSON Schema cannot count them).
JSON_VALUE_SCHEMA_NAME = "JsonValue"
_JSON_VALUE = {"$ref": f"#/components/schemas/{JSON_VALUE_SCHEMA_NAME}"}
NO_NUL_PATTERN = "^[^\\u0000]*$"
IDENTIFIER_PATTERN = "^(?=.*\\S)[^\\u0000-\\u001f\\u007f-\\u009f]+$"


def _json_object_schema(max_properties: int | None) -> WithJsonSchema:
    schema: dict[str, Any] = {
        "type": "object",
        "propertyNames": {"pattern": NO_NUL_PATTERN},
        "additionalProperties": _JSON_VALUE,
    }
    if max_properties is not None:
        schema["maxProperties"] = max_properties
    return WithJsonSchema(schema)


def _identifier_schema(max_length: int) -> WithJsonSchema:
    return WithJsonSchema(
        {"type": "string", "minLength": 1, "maxLength": max_length, "pattern": IDENTIFIER_PATTERN}
    )


# StorableJson runs first: the size check serializes, and must never meet a value too deep.
Properties = Annotated[
    dict[str, Any],
    StorableJson,
    _bounded_object(MAX_PROPERTIES_BYTES, MAX_PROPERTIES_KEYS),
    _json_object_schema(MAX_PROPERTIES_KEYS),
]
Context = Annotated[
    dict[str, Any],
    StorableJson,
    _bounded_object(MAX_CONTEXT_BYTES, None),
    _json_object_schema(None),
]
EventName = Annotated[
    str,
    StringConstraints(min_length=1, max_length=255),
    StorableIdentifier,
    _identifier_schema(255),
]
MessageId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=100),
    StorableIdentifier,
    _identifier_schema(100),
]
UserId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_USER_ID_LENGTH),
    StorableIdentifier,
    _identifier_schema(MAX_USER_ID_LENGTH),
]
AnonymousId = UserId  # the same rules: either may be the person key (`person_key`)
# Stored as it arrived, but still free of what no backend can write.
StoredJson = Annotated[dict[str, Any], StorableJson]
StoredText = Annotated[str, StorableText]
Platform = Annotated[
    str, StringConstraints(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_.-]+$")
]


MessageType = Literal["track", "identify", "page", "screen", "group", "alias", "perf"]
# Page and screen views are stored with an event name of their own (`view_event_name`), so
# rollups, funnels and active users count them like track events; these prefixes are
# reserved for them.
VIEW_PREFIXES = ("$page", "$screen")
# The person key of a visitor known only by an anonymousId (`person_key`).
ANONYMOUS_PREFIX = "anon:"
SESSION_GAP = timedelta(minutes=30)  # GA4's and Mixpanel's default session timeout


def view_event_name(kind: Literal["page", "screen"], name: str | None) -> str:
    """``$page:Home`` for a page named Home; ``$page`` when the page has no name."""
    return f"${kind}:{name}" if name else f"${kind}"


def person_key(user_id: str | None, anonymous_id: str | None) -> str:
    """Whom a message is stored under: the user, or the anonymous visitor."""
    if user_id:
        return user_id
    if not anonymous_id:
        raise ValueError("a message needs a userId or an anonymousId")
    return ANONYMOUS_PREFIX + anonymous_id


class SessionMark(NamedTuple):
    """A person's latest session: its id and the times of its first and last events."""

    session_id: str
    start: datetime
    last: datetime

    def takes(self, at: datetime, client_id: str | None) -> bool:
        """Whether an event at ``at`` (with the client's session id, if any) belongs here."""
        if client_id is not None:
            return client_id == self.session_id
        return self.start - SESSION_GAP <= at <= self.last + SESSION_GAP

    def grown_by(self, at: datetime) -> tuple[SessionMark, int]:
        """This session with an event at ``at`` added, and by how many ms it grew."""
        start, last = min(self.start, at), max(self.last, at)
        # Whole ms of the end points, so a session's pieces add up to exactly its length.
        grown = _ms(last) - _ms(self.last) + _ms(self.start) - _ms(start)
        return SessionMark(self.session_id, start, last), grown

    @property
    def length_ms(self) -> int:
        return _ms(self.last) - _ms(self.start)


def _ms(moment: datetime) -> int:
    """Whole milliseconds since the epoch (the same moment always gives the same number)."""
    return math.floor(moment.timestamp() * 1000)


class SessionTally(NamedTuple):
    """What storing one event for the first time adds to the session rollups: whether it
    started a session, how many ms it made its session longer, the day that session's
    figures are counted on (the day it started), and the person's current session after it."""

    day: date
    started: bool
    grown_ms: int
    mark: SessionMark


class QueuedMessage(BaseModel):
    """What travels through the queue: self-contained, already validated and normalized.

    ``v`` lets a consumer reject a shape it does not understand instead of guessing.
    ``userId`` is the person key (`person_key`): the user, or ``anon:<anonymousId>``.
    """

    model_config = ConfigDict(extra="forbid")

    v: Literal[1] = 1
    type: MessageType
    messageId: MessageId
    userId: UserId
    anonymousId: AnonymousId | None = None
    event: EventName | None = None
    name: StoredText | None = None  # page and screen: the view's name
    groupId: StoredText | None = None  # group
    previousId: StoredText | None = None  # alias: the id the user had before
    integrations: StoredJson = Field(default_factory=dict)
    source: StoredText | None = None  # the write key's source id (Segment-compatible ingest)
    properties: StoredJson = Field(default_factory=dict)
    traits: StoredJson = Field(default_factory=dict)
    traitsOnce: StoredJson = Field(default_factory=dict)
    timestamp: Timestamp
    receivedAt: Timestamp
    sentAt: Timestamp | None = None
    platform: StoredText | None = None
    context: StoredJson = Field(default_factory=dict)
    requestId: StoredText | None = None
    # Set by the consumer (`sessions.assign_sessions`) before storing, never by the API.
    sessionId: StoredText | None = None
    _session: SessionTally | None = PrivateAttr(default=None)

    @property
    def session_tally(self) -> SessionTally | None:
        """What storing this message adds to the session rollups (None: nothing)."""
        return self._session

    def with_session(self, session_id: str, tally: SessionTally | None) -> QueuedMessage:
        """This message, its session set in place: the consumer owns the messages it
        parsed, and a copy per message costs more than the rest of the assignment."""
        # Straight into the instance: pydantic's __setattr__ costs more than the rest of the
        # assignment, and this field needs no validation (our own id, a printable string).
        self.__dict__["sessionId"] = session_id
        self.__pydantic_fields_set__.add("sessionId")
        assert self.__pydantic_private__ is not None  # the model declares a private attribute
        self.__pydantic_private__["_session"] = tally
        return self

    @property
    def key(self) -> tuple[str, str]:
        """Identity for deduplication: a messageId is unique per user."""
        return (self.userId, self.messageId)

    def stored_properties(self) -> dict[str, Any]:
        """What the stored event's ``properties`` hold for each type."""
        if self.type == "identify":
            return self.traits
        if self.type == "group":
            return {"groupId": self.groupId, "traits": self.traits}
        if self.type == "alias":
            return {"previousId": self.previousId}
        return self.properties


class QueuedBatch(BaseModel):
    """Several messages in one queue body: a batch request costs one queue call per
    ~240 KiB of messages, not one per message. The consumer takes both shapes."""

    model_config = ConfigDict(extra="forbid")

    v: Literal[1] = 1
    batch: list[QueuedMessage]


class StoredEvent(BaseModel):
    """One event as read back from storage."""

    messageId: str
    type: MessageType
    event: str | None = None
    properties: dict[str, Any] = Field(default_factory=dict)
    timestamp: datetime
    receivedAt: datetime
    anonymousId: str | None = None
    platform: str | None = None
    context: dict[str, Any] = Field(default_factory=dict)
    sessionId: str | None = None


class Profile(BaseModel):
    """A user's merged traits; ``traitTimes`` keeps, per trait, the time of the value held,
    so a late-arriving older identify never overwrites a newer value."""

    userId: str
    traits: dict[str, Any] = Field(default_factory=dict)
    traitTimes: dict[str, datetime] = Field(default_factory=dict)
    anonymousIds: list[str] = Field(default_factory=list)
    # group calls: groupId → the group's traits, merged like the user's own
    groups: dict[str, dict[str, Any]] = Field(default_factory=dict)
    groupTraitTimes: dict[str, dict[str, datetime]] = Field(default_factory=dict)
    updatedAt: datetime | None = None
    version: int = 0


class EventPage(BaseModel):
    """A page from storage: events newest first and where the next page starts."""

    events: list[StoredEvent]
    next_cursor: str | None = None


class AuditEntry(BaseModel):
    """Who did what to whose data, and when: kept for GDPR accountability."""

    id: str
    at: datetime
    actor: str
    action: Literal["export", "delete"]
    subject: str
    details: dict[str, Any] = Field(default_factory=dict)


class AuditPage(BaseModel):
    entries: list[AuditEntry]
    next_cursor: str | None = None
