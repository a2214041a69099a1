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


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class TrackRequest(_Request):
    """`POST /api/v1/analytics/track`: one event done by the signed-in user."""

    @field_validator("properties")
    @classmethod
    def _revenue_in_range(cls, properties: dict[str, Any]) -> dict[str, Any]:
        try:
            check_revenue(properties, MAX_REVENUE)
        except Problem as problem:
            raise problem.as_pydantic() from None
        return properties

    event: EventName
    properties: Properties = Field(default_factory=dict)
    timestamp: Timestamp | None = None
    sentAt: Timestamp | None = None
    messageId: MessageId | None = None
    anonymousId: AnonymousId | None = None
    platform: Platform | None = None
    context: Context = Field(default_factory=dict)
    userId: UserId | None = Field(
        default=None, description="Honoured only from admin or server tokens."
    )


class IdentifyRequest(_Request):
    """`POST /api/v1/analytics/identify`: traits merged into the user's profile."""

    traits: Properties = Field(default_factory=dict)
    traitsOnce: Properties = Field(
        default_factory=dict, description="Set only where the profile has no value yet."
    )
    anonymousId: AnonymousId | None = None
    timestamp: Timestamp | None = None
    sentAt: Timestamp | None = None
    messageId: MessageId | None = None
    userId: UserId | None = Field(
        default=None, description="Honoured only from admin or server tokens."
    )


class Accepted(BaseModel):
    messageId: str
    status: Literal["queued"] = "queued"
