"""From a client's request to the message the queue carries: identity, ids and time."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from mysoulmate.analytics.client_models import IdentifyRequest, TrackRequest
from mysoulmate.analytics.models import MAX_USER_ID_LENGTH, QueuedMessage
from mysoulmate.analytics.pii import PiiPolicy, PiiReport, filter_event, filter_traits
from mysoulmate.analytics.validation import Problem, check_identifier, check_timestamp
from mysoulmate.core.errors import AuthenticationError, ForbiddenError, InvalidRequestError
from mysoulmate.core.principal import Principal
from mysoulmate.observability.signals import count

DEFAULT_PII_POLICY = PiiPolicy()


def corrected_timestamp(
    timestamp: datetime | None, sent_at: datetime | None, received_at: datetime
) -> datetime:
    """Undo client clock skew the way Segment does: the client's clock may be wrong, but the
    gap between when it says the event happened and when it says it sent it is right."""
    if timestamp is None:
        return received_at
    if sent_at is None:
        return timestamp
    return received_at - (sent_at - timestamp)


def effective_user_id(body_user_id: str | None, principal: Principal) -> str:
    """The token's subject, unless an admin or server token names another user."""
    if body_user_id is None or body_user_id == principal.subject:
        return storable_subject(principal)
    if principal.may_act_for_others:
        return body_user_id
    raise ForbiddenError(code="user_id_mismatch")


def storable_subject(principal: Principal) -> str:
    """The token's subject as a user id, or a 401 when it cannot be one: the issuer's rules
    for ``sub`` are not ours (at most 255 characters, no control characters)."""
    subject = principal.subject  # never empty (`principal_from_claims`)
    try:
        check_identifier(subject)
        storable = len(subject) <= MAX_USER_ID_LENGTH
    except Problem:
        storable = False
    if not storable:
        raise AuthenticationError(
            code="invalid_token", reason_key="errors.tokenReasons.bad_subject"
        )
    return subject


def _checked_time(
    request: TrackRequest | IdentifyRequest, received_at: datetime, max_future_seconds: int
) -> datetime:
    try:
        timestamp = corrected_timestamp(request.timestamp, request.sentAt, received_at)
    except OverflowError:  # a skew so large the corrected time leaves the calendar
        raise _time_error("timestamp_out_of_range", timestamp=str(request.timestamp)) from None
    try:
        check_timestamp(timestamp, received_at, max_future_seconds)
    except Problem as problem:
        raise _time_error(problem.kind, timestamp=timestamp.isoformat(), **problem.params) from None
    return timestamp


def _time_error(kind: str, **params: Any) -> InvalidRequestError:
    return InvalidRequestError(code=kind, details=[{"field": "timestamp", "type": kind}], **params)


def queued_message(
    request: TrackRequest | IdentifyRequest,
    principal: Principal,
    received_at: datetime,
    request_id: str,
    max_future_seconds: int,
    pii: PiiPolicy = DEFAULT_PII_POLICY,
) -> QueuedMessage:
    """The self-contained message the queue carries for a track or identify request, with
    the PII policy applied (`analytics.pii`): nothing it drops ever reaches the queue."""
    common: dict[str, Any] = {
        "messageId": request.messageId or str(uuid.uuid4()),
        "userId": effective_user_id(request.userId, principal),
        "anonymousId": request.anonymousId,
        "timestamp": _checked_time(request, received_at, max_future_seconds),
        "receivedAt": received_at,
        "sentAt": request.sentAt,
        "requestId": request_id,
    }
    if isinstance(request, TrackRequest):
        properties, context, report = filter_event(request.properties, request.context, pii)
        _count_filtered(report)
        return QueuedMessage(
            type="track",
            event=request.event,
            properties=properties,
            platform=request.platform,
            context=context,
            **common,
        )
    traits, report = filter_traits(request.traits, pii)
    traits_once, once_report = filter_traits(request.traitsOnce, pii)
    report.counts.update(once_report.counts)
    _count_filtered(report)
    return QueuedMessage(type="identify", traits=traits, traitsOnce=traits_once, **common)


def _count_filtered(report: PiiReport) -> None:
    for kind, filtered in report.counts.items():
        count("PiiFiltered", filtered, kind=kind)
