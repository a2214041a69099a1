"""Merging identify calls into a profile, independent of arrival order and redelivery."""

from __future__ import annotations

from mysoulmate.analytics.models import Profile, QueuedMessage

MAX_ANONYMOUS_IDS = 50


def merge_identify(profile: Profile | None, message: QueuedMessage) -> Profile:
    """Later values win by event time, not arrival time; ``traitsOnce`` fills only gaps.

    Applying the same message twice, or an older one after a newer one, changes nothing:
    that is what makes at-least-once delivery safe for profiles.
    """
    merged = (
        profile.model_copy(deep=True) if profile is not None else Profile(userId=message.userId)
    )
    at = message.timestamp
    for name, value in message.traits.items():
        held_at = merged.traitTimes.get(name)
        if held_at is None or at >= held_at:
            merged.traits[name] = value
            merged.traitTimes[name] = at
    for name, value in message.traitsOnce.items():
        if name not in merged.traits:
            merged.traits[name] = value
            merged.traitTimes[name] = at
    if message.anonymousId and message.anonymousId not in merged.anonymousIds:
        merged.anonymousIds = [*merged.anonymousIds, message.anonymousId][-MAX_ANONYMOUS_IDS:]
    if merged.updatedAt is None or at > merged.updatedAt:
        merged.updatedAt = at
    return merged
