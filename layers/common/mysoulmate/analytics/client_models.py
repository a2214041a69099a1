"""What clients send to the analytics endpoints and what they get back."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mysoulmate.analytics.models import (
    AnonymousId,
    Context,
    EventName,
    MessageId,
    Platform,
    Properties,
    Timestamp,
    UserId,
)
from mysoulmate.analytics.rollups import MAX_REVENUE
from mysoulmate.analytics.validation import Problem, check_revenue

PROPERTIES_DOC = (
    "JSON object: at most 255 keys, 32 KiB as JSON, 32 levels of nesting; no NUL characters or"
    " lone surrogates; numbers finite with at most 38 digits."
)
TIMESTAMP_DOC = (
    "When it happened (ISO 8601), by the client's clock; default: when received. After"
    " clock-skew correction it must fall between 2000-01-01 and one hour from now."
)
SENT_AT_DOC = "When the client sent it (ISO 8601, same clock as `timestamp`): corrects skew."
MESSAGE_ID_DOC = (
    "Up to 100 characters, unique per user: a retry with the same id is stored once."
    " Generated (UUID) when absent."
)


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


def revenue_in_range(properties: dict[str, Any]) -> dict[str, Any]:
    """A `revenue` property within ±`MAX_REVENUE` (the rule every ingest route applies)."""
    try:
        check_revenue(properties, MAX_REVENUE)
    except Problem as problem:
        raise problem.as_pydantic() from None
    return properties


class TrackRequest(_Request):
    """`POST /api/v1/analytics/track`: one event done by the signed-in user."""

    _revenue_in_range = field_validator("properties")(revenue_in_range)

    event: EventName = Field(description="The event's name, e.g. `companion_created`.")
    properties: Properties = Field(
        default_factory=dict,
        description=PROPERTIES_DOC + " A numeric `revenue` (with `currency`, ISO 4217, "
        "default USD) within ±1,000,000,000 counts as revenue.",
        json_schema_extra={"maxProperties": 255},
    )
    timestamp: Timestamp | None = Field(default=None, description=TIMESTAMP_DOC)
    sentAt: Timestamp | None = Field(default=None, description=SENT_AT_DOC)
    messageId: MessageId | None = Field(default=None, description=MESSAGE_ID_DOC)
    anonymousId: AnonymousId | None = Field(
        default=None, description="The device's anonymous id, if the client has one."
    )
    platform: Platform | None = Field(
        default=None, description="`ios`, `android`, `web`…; the dashboard splits by it."
    )
    context: Context = Field(
        default_factory=dict,
        description="Device, app, locale… (JSON object, at most 8 KiB, 32 levels).",
    )
    userId: UserId | None = Field(
        default=None, description="Honoured only from admin or server tokens."
    )


class IdentifyRequest(_Request):
    """`POST /api/v1/analytics/identify`: traits merged into the user's profile."""

    traits: Properties = Field(
        default_factory=dict,
        description=PROPERTIES_DOC + " Later values win per trait.",
        json_schema_extra={"maxProperties": 255},
    )
    traitsOnce: Properties = Field(
        default_factory=dict,
        description="Set only where the profile has no value yet (e.g. `firstSeenOn`).",
        json_schema_extra={"maxProperties": 255},
    )
    anonymousId: AnonymousId | None = Field(
        default=None, description="The device's anonymous id, merged into the profile."
    )
    timestamp: Timestamp | None = Field(default=None, description=TIMESTAMP_DOC)
    sentAt: Timestamp | None = Field(default=None, description=SENT_AT_DOC)
    messageId: MessageId | None = Field(default=None, description=MESSAGE_ID_DOC)
    userId: UserId | None = Field(
        default=None, description="Honoured only from admin or server tokens."
    )


class Accepted(BaseModel):
    """The message is durably queued; it will be stored exactly once."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"messageId": "a1b2c3d4-e5f6", "status": "queued"}]}
    )

    messageId: str = Field(description="The message's id: the one sent, or a generated UUID.")
    status: Literal["queued"] = "queued"


# Request examples shown in the API document (and tried by Swagger UI's try-it-out).
TRACK_EXAMPLES: dict[str, Any] = {
    "companion_created": {
        "summary": "A companion created on iOS",
        "value": {
            "event": "companion_created",
            "properties": {"companionId": "c_42", "personality": "playful", "voice": "warm"},
            "platform": "ios",
            "messageId": "0d8b5b8e-3c2a-4f6e-9a41-7a3e2f1c9b10",
            "context": {"app": {"version": "3.2.0"}, "locale": "fr-FR"},
        },
    },
    "purchase": {
        "summary": "A purchase with revenue",
        "value": {
            "event": "purchase",
            "properties": {"plan": "premium_monthly", "revenue": 9.99, "currency": "EUR"},
            "platform": "android",
        },
    },
    "with_client_times": {
        "summary": "An event from a device with a wrong clock (skew corrected)",
        "value": {
            "event": "message_sent",
            "properties": {"length": 42},
            "timestamp": "2026-01-31T11:59:58Z",
            "sentAt": "2026-01-31T12:00:00Z",
        },
    },
}
IDENTIFY_EXAMPLES: dict[str, Any] = {
    "traits": {
        "summary": "Profile traits after sign-up",
        "value": {
            "traits": {"name": "Ava", "email": "ava@example.com", "plan": "free"},
            "traitsOnce": {"signupSource": "tiktok"},
            "anonymousId": "anon-7f3a",
        },
    }
}
