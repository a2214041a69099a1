"""Merging identify and group calls into a profile, independent of arrival order and
redelivery."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from mysoulmate.analytics.models import Profile, QueuedMessage

MAX_ANONYMOUS_IDS = 50
MAX_GROUPS = 100
PROFILE_TYPES = frozenset({"identify", "group"})  # the message types that change a profile


def merge_message(profile: Profile | None, message: QueuedMessage) -> Profile:
    """Merge an identify or a group call (see `merge_identify`, `merge_group`)."""
    if message.type == "group":
        return merge_group(profile, message)
    return merge_identify(profile, message)


def _merge_timed(
    values: dict[str, Any], times: dict[str, datetime], new: dict[str, Any], at: datetime
) -> None:
    """Each value wins when it is at least as recent as the one held."""
    for name, value in new.items():
        held_at = times.get(name)
        if held_at is None or at >= held_at:
            values[name] = value
            times[name] = at


def merge_group(profile: Profile | None, message: QueuedMessage) -> Profile:
    """The user belongs to ``groupId``; its traits merge by event time, like a user's."""
    merged = (
        profile.model_copy(deep=True) if profile is not None else Profile(userId=message.userId)
    )
    group_id = message.groupId or ""
    if group_id not in merged.groups and len(merged.groups) >= MAX_GROUPS:
        return merged  # a bounded profile: the 101st group is kept in the event only
    traits = merged.groups.setdefault(group_id, {})
    times = merged.groupTraitTimes.setdefault(group_id, {})
    _merge_timed(traits, times, message.traits, message.timestamp)
    if merged.updatedAt is None or message.timestamp > merged.updatedAt:
        merged.updatedAt = message.timestamp
    return merged


def merge_identify(profile: Profile | None, message: QueuedMessage) -> Profile:
    """Later values win by event time, not arrival time; ``traitsOnce`` fills only gaps.

    Applying the same message twice, or an older one after a newer one, changes nothing:
    that is what makes at-least-once delivery safe for profiles.
    """
    merged = (
        profile.model_copy(deep=True) if profile is not None else Profile(userId=message.userId)
    )
    at = message.timestamp
    _merge_timed(merged.traits, merged.traitTimes, message.traits, at)
    for name, value in message.traitsOnce.items():
        if name not in merged.traits:
            merged.traits[name] = value
            merged.traitTimes[name] = at
    if message.anonymousId and message.anonymousId not in merged.anonymousIds:
        merged.anonymousIds = [*merged.anonymousIds, message.anonymousId][-MAX_ANONYMOUS_IDS:]
    if merged.updatedAt is None or at > merged.updatedAt:
        merged.updatedAt = at
    return merged


def merge_profiles(user_id: str, target: Profile | None, visitor: Profile | None) -> Profile | None:
    """The user's profile after an anonymous visitor's is merged into it: every trait (and
    group trait) by time, anonymous ids joined. None when neither exists."""
    if visitor is None:
        return target
    merged = target.model_copy(deep=True) if target is not None else Profile(userId=user_id)
    for name, value in visitor.traits.items():
        at = visitor.traitTimes.get(name)
        if at is None:
            merged.traits.setdefault(name, value)
        else:
            _merge_timed(merged.traits, merged.traitTimes, {name: value}, at)
    for group_id, traits in visitor.groups.items():
        times = visitor.groupTraitTimes.get(group_id, {})
        for name, value in traits.items():
            held = merged.groups.setdefault(group_id, {})
            held_times = merged.groupTraitTimes.setdefault(group_id, {})
            if name in times:
                _merge_timed(held, held_times, {name: value}, times[name])
            else:
                held.setdefault(name, value)
    for anonymous_id in visitor.anonymousIds:
        if anonymous_id not in merged.anonymousIds:
            merged.anonymousIds = [*merged.anonymousIds, anonymous_id][-MAX_ANONYMOUS_IDS:]
    if visitor.updatedAt and (merged.updatedAt is None or visitor.updatedAt > merged.updatedAt):
        merged.updatedAt = visitor.updatedAt
    return merged
