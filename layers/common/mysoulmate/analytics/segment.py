"""Segment's HTTP Tracking API, as a domain: a request's messages in, queued messages and
rejections out.

Field names and semantics follow Segment's spec (common fields, track, identify, page,
screen, group, alias), so the stock Segment and RudderStack SDKs work unmodified. A message
that breaks a rule is rejected alone, with a stable code; its neighbours are still queued.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache
from typing import Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from mysoulmate.analytics.client_models import revenue_in_range
from mysoulmate.analytics.models import (
    ANONYMOUS_PREFIX,
    VIEW_PREFIXES,
    AnonymousId,
    Context,
    EventName,
    MessageId,
    Properties,
    QueuedMessage,
    Timestamp,
    UserId,
    dumps_compact,
    person_key,
    view_event_name,
)
from mysoulmate.analytics.normalize import corrected_timestamp
from mysoulmate.analytics.perf_models import UNKNOWN_VERSION, PerfPayload, SegmentPerf
from mysoulmate.analytics.pii import PiiPolicy, filter_event, filter_traits
from mysoulmate.analytics.ports import Source
from mysoulmate.analytics.validation import Problem, check_timestamp

# Segment's limits.
MAX_MESSAGE_BYTES = 32 * 1024
MAX_REQUEST_BYTES = 500 * 1024
MAX_BATCH_MESSAGES = 2500
MESSAGE_TYPES = ("track", "identify", "page", "screen", "group", "alias")
# Ours, in batches only: the apps' performance measurements (`perf_models.SegmentPerf`).
BATCH_ONLY_TYPES = ("perf",)
Name = Field(default=None, min_length=1, max_length=255)


class SegmentMessage(BaseModel):
    """One message as Segment's SDKs send it. Unknown fields (``_metadata``, ``channel``,
    ``version``, …) are ignored, as Segment does."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    type: str
    userId: UserId | None = None
    anonymousId: AnonymousId | None = None
    messageId: MessageId | None = None
    timestamp: Timestamp | None = None
    originalTimestamp: Timestamp | None = None  # RudderStack's name for it
    sentAt: Timestamp | None = None
    context: Context = Field(default_factory=dict)
    integrations: Context = Field(default_factory=dict)
    event: EventName | None = None
    properties: Properties = Field(default_factory=dict)
    traits: Properties = Field(default_factory=dict)
    name: str | None = Name
    category: str | None = Name
    groupId: UserId | None = None
    previousId: UserId | None = None

    @field_validator("userId", "anonymousId", "groupId", "previousId", mode="before")
    @classmethod
    def _numbers_as_text(cls, value: Any) -> Any:
        """SDKs pass numeric ids through; Segment stores them as strings."""
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        return value

    # The same revenue rule as the JWT route, so both count revenue alike.
    _revenue_in_range = field_validator("properties")(revenue_in_range)


@dataclass(frozen=True)
class Rejection:
    """Why message ``index`` of the request was not queued: a stable code, the message's
    parameters, and per-field details for validation errors (localized by the API)."""

    index: int
    code: str
    params: dict[str, Any] = field(default_factory=dict)
    errors: list[dict[str, Any]] | None = None  # pydantic's, for validation_error


@dataclass
class ParsedRequest:
    messages: list[QueuedMessage] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)


class MessageRejected(Exception):
    def __init__(self, code: str, **params: Any) -> None:
        super().__init__(code)
        self.code = code
        self.params = params


@dataclass(frozen=True)
class Intake:
    """What is the same for every message of one request."""

    source: Source | None  # None: a signed-in client (JWT), which has no write key
    received_at: datetime
    request_id: str
    max_future_seconds: int
    client_max_age: timedelta
    pii: PiiPolicy
    batch_sent_at: datetime | None = None
    batch_context: dict[str, Any] = field(default_factory=dict)
    batch_integrations: dict[str, Any] = field(default_factory=dict)
    # A signed-in caller (JWT batch): messages are theirs unless they may act for others.
    acting_user: str | None = None
    may_act_for_others: bool = False


def sent_at_of(batch: dict[str, Any]) -> datetime | None:
    """The batch's ``sentAt`` (None when absent: the messages' own ``sentAt`` correct their
    skew); ValidationError when it is present but not a date-time."""
    if "sentAt" not in batch:
        return None
    return _timestamp().validate_python(batch["sentAt"])


@cache
def _timestamp() -> TypeAdapter[datetime]:
    return TypeAdapter(Timestamp)  # built on first use: not at cold start


def parse_messages(
    raw_messages: list[Any], intake: Intake, implied_type: str | None = None
) -> ParsedRequest:
    """Validate and normalize every message; each rejection names its index."""
    parsed = ParsedRequest()
    for index, raw in enumerate(raw_messages):
        try:
            parsed.messages.append(_queued(raw, intake, implied_type))
        except MessageRejected as rejected:
            parsed.rejected.append(Rejection(index, rejected.code, rejected.params))
        except ValidationError as exc:
            errors = cast(list[dict[str, Any]], exc.errors(include_url=False))
            parsed.rejected.append(Rejection(index, "validation_error", {}, errors))
    return parsed


def _queued(raw: Any, intake: Intake, implied_type: str | None) -> QueuedMessage:
    if not isinstance(raw, dict):
        raise MessageRejected("invalid_batch")
    size = len(dumps_compact(raw).encode())
    if size > MAX_MESSAGE_BYTES:
        raise MessageRejected("message_too_large", limit=MAX_MESSAGE_BYTES, size=size)
    if implied_type is not None:
        raw = {**raw, "type": implied_type}
    if intake.acting_user is not None:
        raw = {**raw, "userId": _acting_user(raw.get("userId"), intake)}
    kind = raw.get("type")
    if kind not in MESSAGE_TYPES and not (implied_type is None and kind in BATCH_ONLY_TYPES):
        raise MessageRejected("unsupported_type", type=str(kind)[:40])
    raw = {
        **raw,
        "context": {**intake.batch_context, **(raw.get("context") or {})},
        "integrations": {**intake.batch_integrations, **(raw.get("integrations") or {})},
    }
    message = SegmentMessage.model_validate(raw)
    _check_identity(message)
    return _normalized(message, intake)


def _acting_user(user_id: Any, intake: Intake) -> Any:
    if user_id is None or user_id == intake.acting_user:
        return intake.acting_user
    if intake.may_act_for_others:
        return user_id
    raise MessageRejected("user_id_mismatch")


def _check_identity(message: SegmentMessage) -> None:
    if message.userId is None and message.anonymousId is None:
        raise MessageRejected("no_user_anon_id")
    if message.userId is not None and message.userId.startswith(ANONYMOUS_PREFIX):
        raise MessageRejected("reserved_user_id")
    if message.type == "track":
        if message.event is None:
            raise _missing("event")
        if message.event.startswith(VIEW_PREFIXES):
            raise MessageRejected("reserved_event_name")
    if message.type == "group" and message.groupId is None:
        raise _missing("groupId")
    if message.type == "alias" and (message.previousId is None or message.userId is None):
        raise _missing("previousId" if message.previousId is None else "userId")


def _missing(name: str) -> ValidationError:
    return ValidationError.from_exception_data(
        "SegmentMessage", [{"type": "missing", "loc": (name,), "input": None}]
    )


def _normalized(message: SegmentMessage, intake: Intake) -> QueuedMessage:
    timestamp = _checked_time(message, intake)
    common: dict[str, Any] = {
        "type": message.type,
        "messageId": message.messageId or str(uuid.uuid4()),
        "userId": person_key(message.userId, message.anonymousId),
        "anonymousId": message.anonymousId,
        "timestamp": timestamp,
        "receivedAt": intake.received_at,
        "sentAt": message.sentAt or intake.batch_sent_at,
        "requestId": intake.request_id,
        "integrations": message.integrations,
        "source": intake.source.id if intake.source else None,
        "platform": platform_of(message.context),
    }
    if message.type == "perf":
        payload = _perf_payload(message, intake)
        return QueuedMessage(
            properties=payload.model_dump(mode="json", exclude_none=True), **common
        )
    properties, context, _ = filter_event(message.properties, message.context, intake.pii)
    if message.type in ("identify", "group"):
        traits, _ = filter_traits(_traits_of(message), intake.pii)
        return QueuedMessage(traits=traits, groupId=message.groupId, context=context, **common)
    if message.type == "alias":
        return QueuedMessage(previousId=message.previousId, context=context, **common)
    event = message.event
    if message.type in ("page", "screen"):
        kind = cast(Literal["page", "screen"], message.type)
        event = view_event_name(kind, message.name)
        if message.category is not None:
            properties = {"category": message.category, **properties}
    return QueuedMessage(
        event=event, name=message.name, properties=properties, context=context, **common
    )


def _perf_payload(message: SegmentMessage, intake: Intake) -> PerfPayload:
    """A ``perf`` message's measurements (``properties.measurements``), with the app version
    from ``properties.appVersion`` or Segment's ``context.app.version``, each measurement's
    time corrected for clock skew like the message's. Nothing else of it is kept."""
    app = message.context.get("app")
    version = message.properties.get("appVersion") or (
        app.get("version") if isinstance(app, dict) else None
    )
    batch = SegmentPerf.model_validate(
        {**message.properties, "appVersion": version or UNKNOWN_VERSION}
    )
    sent_at = message.sentAt or intake.batch_sent_at
    measurements = []
    for measurement in batch.measurements:
        if measurement.timestamp is not None:
            moment = _checked_moment(measurement.timestamp, sent_at, intake)
            measurement = measurement.model_copy(update={"timestamp": moment})
        measurements.append(measurement)
    return PerfPayload(
        appVersion=batch.appVersion, deviceClass=batch.deviceClass, measurements=measurements
    )


def _checked_moment(claimed: datetime, sent_at: datetime | None, intake: Intake) -> datetime:
    try:
        moment = corrected_timestamp(claimed, sent_at, intake.received_at)
        check_timestamp(moment, intake.received_at, intake.max_future_seconds)
    except OverflowError:
        raise MessageRejected("timestamp_out_of_range", timestamp=str(claimed)) from None
    except Problem as problem:
        raise MessageRejected(problem.kind, timestamp=str(claimed), **problem.params) from None
    return moment


def _traits_of(message: SegmentMessage) -> dict[str, Any]:
    """An identify's traits; RudderStack's SDKs send them as ``context.traits``."""
    if message.traits or message.type != "identify":
        return message.traits
    in_context = message.context.get("traits")
    return in_context if isinstance(in_context, dict) else {}


def _checked_time(message: SegmentMessage, intake: Intake) -> datetime:
    sent_at = message.sentAt or intake.batch_sent_at
    claimed = message.timestamp or message.originalTimestamp
    try:
        timestamp = corrected_timestamp(claimed, sent_at, intake.received_at)
    except OverflowError:
        raise MessageRejected("timestamp_out_of_range", timestamp=str(claimed)) from None
    try:
        check_timestamp(timestamp, intake.received_at, intake.max_future_seconds)
    except Problem as problem:
        raise MessageRejected(
            problem.kind, timestamp=timestamp.isoformat(), **problem.params
        ) from None
    earliest = intake.received_at - intake.client_max_age
    if intake.source is not None and intake.source.kind == "client" and timestamp < earliest:
        # Only a server source may backfill: a public key must not rewrite history.
        raise MessageRejected(
            "timestamp_too_old", timestamp=timestamp.isoformat(), earliest=earliest.isoformat()
        )
    return timestamp


_PLATFORM_TEXT = re.compile(r"[^a-z0-9_.-]+")


def platform_of(context: dict[str, Any]) -> str | None:
    """ios, android, web…: from ``context.os.name``, else the library of a web SDK."""
    os_info = context.get("os")
    name = os_info.get("name") if isinstance(os_info, dict) else None
    if not isinstance(name, str) or not name.strip():
        library = context.get("library")
        library_name = library.get("name") if isinstance(library, dict) else None
        is_web = isinstance(library_name, str) and library_name.startswith("analytics.js")
        name = "web" if is_web or ("userAgent" in context and "os" not in context) else None
    if name is None:
        return None
    text = _PLATFORM_TEXT.sub("-", name.strip().lower()).strip("-")[:32]
    return {"iphone-os": "ios", "mac-os-x": "macos"}.get(text, text) or None
