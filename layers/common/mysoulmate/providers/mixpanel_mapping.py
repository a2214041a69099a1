"""How a stored message becomes Mixpanel calls, and how Mixpanel's answers become our
errors: pure functions, no library and no network (the adapter is `providers.mixpanel`).

Identity follows Mixpanel's *Simplified ID Merge* (the default for projects since 2023),
and stays usable on *Original ID Merge* projects:

- a user's events have ``distinct_id`` = the user id and ``$user_id``; a visitor known only
  by an anonymousId has ``distinct_id`` = ``$device:<anonymousId>`` and ``$device_id`` (what
  Mixpanel's own SDKs send); any event that carries both ``$user_id`` and ``$device_id``
  merges the two on a Simplified project;
- an identify carrying both ids also sends one ``$identify`` event with ``$identified_id``
  and ``$anon_distinct_id``, the pair an Original ID Merge project merges on;
- an alias sends ``$create_alias`` (Original ID Merge and legacy projects; Mixpanel documents
  it as having no effect on Simplified ones).
"""

from __future__ import annotations

import email.utils
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from mysoulmate.analytics.models import ANONYMOUS_PREFIX, QueuedMessage, dumps_compact
from mysoulmate.analytics.rollups import revenue_of
from mysoulmate.providers.base import ProviderRejectedError, ProviderUnavailableError

DEVICE_PREFIX = "$device:"
# /track keeps only events of the last 5 days (older ones are dropped, even with a 200);
# an hour of margin for clocks and time in flight. Older events go to /import.
TRACK_MAX_AGE = timedelta(days=5) - timedelta(hours=1)
# $insert_id: at most 36 bytes of letters, digits and "-" (Mixpanel's /import rules).
_INSERT_ID = re.compile(r"[A-Za-z0-9-]{1,36}")
# Values Mixpanel refuses as a distinct_id or $insert_id (a 400 for the whole batch).
INVALID_IDS = frozenset(
    {
        "00000000-0000-0000-0000-000000000000",
        "anon",
        "anonymous",
        "nil",
        "none",
        "null",
        "n/a",
        "na",
        "undefined",
        "unknown",
        "<nil>",
        "0",
        "-1",
        "true",
        "false",
        "[]",
        "{}",
    }
)
# Keys of an event's properties that are ours to set: a client's own ``token`` would send
# the event to another project, its ``time`` or ``$insert_id`` would break deduplication.
RESERVED_PROPERTIES = frozenset(
    {"token", "distinct_id", "time", "$insert_id", "$device_id", "$user_id"}
)
# Segment's trait names → Mixpanel's reserved profile properties (shown in the UI).
PROFILE_TRAITS = {
    "email": "$email",
    "name": "$name",
    "firstName": "$first_name",
    "first_name": "$first_name",
    "lastName": "$last_name",
    "last_name": "$last_name",
    "phone": "$phone",
    "avatar": "$avatar",
    "createdAt": "$created",
    "created_at": "$created",
}
_OS_NAMES = {"ios": "iOS", "android": "Android"}
_CAMPAIGN = {
    "source": "utm_source",
    "medium": "utm_medium",
    "name": "utm_campaign",
    "term": "utm_term",
    "content": "utm_content",
}
MAX_DETAIL = 200
# Mixpanel's per-event limits (one event over them fails its whole /import batch): fewer
# than 255 properties, objects and arrays of fewer than 255 items, nested at most 3 deep.
MAX_EVENT_PROPERTIES = 254
LIBRARY_PROPERTIES = 4  # token, distinct_id, mp_lib, $lib_version: added by the library
MAX_ITEMS = 254
MAX_DEPTH = 3


# -- identities --------------------------------------------------------------------------


def user_id_of(message: QueuedMessage) -> str | None:
    """The known user, or None for a visitor known only by an anonymousId."""
    return None if message.userId.startswith(ANONYMOUS_PREFIX) else message.userId


def device_id_of(message: QueuedMessage) -> str | None:
    """The message's anonymousId (a visitor's person key carries it too)."""
    if message.anonymousId:
        return message.anonymousId
    if message.userId.startswith(ANONYMOUS_PREFIX):
        return message.userId.removeprefix(ANONYMOUS_PREFIX)
    return None


def distinct_id_of(message: QueuedMessage) -> str:
    """``distinct_id`` of the message's person: the user id, or ``$device:<anonymousId>``."""
    return user_id_of(message) or DEVICE_PREFIX + (device_id_of(message) or "")


def person_distinct_ids(user_id: str, anonymous_ids: Iterable[str] = ()) -> list[str]:
    """Every distinct_id a person was sent under (for a deletion request): the person key
    as `distinct_id_of` maps it, and ``$device:<id>`` for each of their anonymous ids."""
    first = (
        DEVICE_PREFIX + user_id.removeprefix(ANONYMOUS_PREFIX)
        if user_id.startswith(ANONYMOUS_PREFIX)
        else user_id
    )
    ids = [first]
    ids.extend(DEVICE_PREFIX + anonymous for anonymous in anonymous_ids)
    return list(dict.fromkeys(ids))


def insert_id_of(message_id: str) -> str:
    """A deterministic ``$insert_id``: the messageId itself when Mixpanel accepts it as one,
    else the first 32 hex digits of its SHA-256 (a redelivered event gets the same id, so
    Mixpanel deduplicates it)."""
    if _INSERT_ID.fullmatch(message_id) and message_id.lower() not in INVALID_IDS:
        return message_id
    return hashlib.sha256(message_id.encode()).hexdigest()[:32]


def epoch_ms(moment: datetime) -> int:
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


# -- event names and properties ----------------------------------------------------------


def view_name(kind: Literal["page", "screen"], name: str | None) -> str:
    """Segment's Mixpanel names for views: ``Viewed Home Page`` / ``Viewed Home Screen``,
    ``Loaded a Page`` / ``Loaded a Screen`` when the view has no name."""
    label = "Page" if kind == "page" else "Screen"
    return f"Viewed {name} {label}" if name else f"Loaded a {label}"


def event_name_of(message: QueuedMessage) -> str:
    if message.type in ("page", "screen"):
        name = message.name
        if not name and message.event and ":" in message.event:
            name = message.event.split(":", 1)[1]
        return view_name(message.type, name)
    return message.event or message.type


def _text(value: Any, *path: str) -> str | None:
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value if isinstance(value, str) and value else None


def context_properties(message: QueuedMessage) -> dict[str, Any]:
    """Mixpanel's reserved properties that the message's context and platform fill."""
    context = message.context
    found: dict[str, Any] = {}
    os_name = _text(context, "os", "name") or _OS_NAMES.get((message.platform or "").lower())
    if os_name:
        found["$os"] = os_name
    if app_version := _text(context, "app", "version"):
        found["$app_version_string"] = app_version
    if url := _text(context, "page", "url") or _text(message.properties, "url"):
        found["$current_url"] = url
    if referrer := _text(context, "page", "referrer") or _text(message.properties, "referrer"):
        found["$referrer"] = referrer
    for key, utm in _CAMPAIGN.items():
        if value := _text(context, "campaign", key):
            found[utm] = value
    if message.platform:
        found["platform"] = message.platform
    return found


def identity_properties(message: QueuedMessage) -> dict[str, Any]:
    """``time`` (ms), ``$insert_id``, ``$user_id`` / ``$device_id`` and ``session_id``."""
    found: dict[str, Any] = {
        "time": epoch_ms(message.timestamp),
        "$insert_id": insert_id_of(message.messageId),
    }
    if user := user_id_of(message):
        found["$user_id"] = user
    if device := device_id_of(message):
        found["$device_id"] = device
    if message.sessionId:
        # A plain property: a project can pick it for property-based sessions.
        found["session_id"] = message.sessionId
    return found


def fitted(value: Any, depth: int = 2) -> Any:
    """A property's ``value`` within Mixpanel's shape limits. ``depth`` is its nesting
    level, the properties object being the first; an object or array at `MAX_DEPTH` or
    below, or holding more than `MAX_ITEMS` items, is sent as its JSON text instead."""
    if isinstance(value, dict | list):
        if depth >= MAX_DEPTH or len(value) > MAX_ITEMS:
            return dumps_compact(value)
        if isinstance(value, dict):
            return {key: fitted(item, depth + 1) for key, item in value.items()}
        return [fitted(item, depth + 1) for item in value]
    return value


def event_properties(message: QueuedMessage) -> dict[str, Any]:
    """What the context gives, then the client's properties (minus ours), then ours; the
    client's last properties are left out if all would pass `MAX_EVENT_PROPERTIES`."""
    own = {k: fitted(v) for k, v in message.properties.items() if k not in RESERVED_PROPERTIES}
    if message.type in ("page", "screen") and message.name:
        own.setdefault("name", message.name)
    derived, ours = context_properties(message), identity_properties(message)
    room = MAX_EVENT_PROPERTIES - LIBRARY_PROPERTIES - len(derived.keys() | ours.keys())
    if len(own.keys() - derived.keys() - ours.keys()) > room:
        kept = {*[key for key in own if key not in derived and key not in ours][:room]}
        own = {key: own[key] for key in own if key in kept or key in derived}
    return {**derived, **own, **ours}


def profile_traits(traits: dict[str, Any]) -> dict[str, Any]:
    """Traits with Segment's names of the reserved ones in Mixpanel's (``email`` → ``$email``),
    values `fitted` like event properties."""
    return {PROFILE_TRAITS.get(key, key): fitted(value) for key, value in traits.items()}


# -- the plan for one message ------------------------------------------------------------


@dataclass(frozen=True)
class EventCall:
    """One event: sent to /track, or to /import (``imported``) when it is too old."""

    distinct_id: str
    name: str
    properties: dict[str, Any]
    imported: bool = False


ProfileOp = Literal["set", "set_once", "charge", "union", "group_set"]


@dataclass(frozen=True)
class ProfileCall:
    """One profile update: ``target`` is a distinct_id, or for ``group_set`` a group id
    (of the group key ``group_key``); ``amount`` is a charge's."""

    op: ProfileOp
    target: str
    values: dict[str, Any]
    amount: float | None = None
    group_key: str = ""


@dataclass
class Plan:
    """What one message becomes; ``skipped`` names why it becomes nothing."""

    events: list[EventCall] = field(default_factory=list)
    profile: list[ProfileCall] = field(default_factory=list)
    skipped: str | None = None


def plan_message(
    message: QueuedMessage, *, now: datetime, can_import: bool, group_key: str = ""
) -> Plan:
    """The Mixpanel calls for ``message``. An event older than `TRACK_MAX_AGE` goes to
    /import when ``can_import`` (an API secret is configured); without one it is left out:
    a track, page or screen message is then skipped as ``too_old_no_secret``, an identify
    keeps its profile updates and loses only its merge event."""
    distinct_id = distinct_id_of(message)
    if distinct_id.lower() in INVALID_IDS:
        return Plan(skipped="invalid_distinct_id")
    imported = now - message.timestamp > TRACK_MAX_AGE
    if imported and not can_import and message.type in ("track", "page", "screen", "alias"):
        return Plan(skipped="too_old_no_secret")
    plan = Plan()

    def event(target: str, name: str, properties: dict[str, Any]) -> None:
        if not imported or can_import:
            plan.events.append(EventCall(target, name, properties, imported))

    if message.type in ("track", "page", "screen"):
        event(distinct_id, event_name_of(message), event_properties(message))
        revenue = revenue_of(message.properties) if message.type == "track" else None
        if revenue is not None:
            currency, micros = revenue
            charge = {
                "$time": message.timestamp.strftime("%Y-%m-%dT%H:%M:%S"),
                "currency": currency,
            }
            plan.profile.append(ProfileCall("charge", distinct_id, charge, micros / 1_000_000))
    elif message.type == "identify":
        user, device = user_id_of(message), message.anonymousId
        if user and device:
            merge = {
                **identity_properties(message),
                "$identified_id": user,
                "$anon_distinct_id": DEVICE_PREFIX + device,
            }
            event(user, "$identify", merge)
        if message.traits:
            plan.profile.append(ProfileCall("set", distinct_id, profile_traits(message.traits)))
        if message.traitsOnce:
            once = profile_traits(message.traitsOnce)
            plan.profile.append(ProfileCall("set_once", distinct_id, once))
    elif message.type == "alias":
        if not message.previousId or message.previousId.lower() in INVALID_IDS:
            return Plan(skipped="invalid_alias")
        alias = {"alias": distinct_id, **identity_properties(message)}
        alias.pop("$user_id", None)
        alias.pop("$device_id", None)
        event(message.previousId, "$create_alias", alias)
    elif message.type == "group":
        if not group_key or not message.groupId:
            return Plan(skipped="unsupported")
        traits = profile_traits(message.traits)
        plan.profile.append(ProfileCall("group_set", message.groupId, traits, group_key=group_key))
        plan.profile.append(ProfileCall("union", distinct_id, {group_key: [message.groupId]}))
    if not plan.events and not plan.profile:
        return Plan(skipped="too_old_no_secret" if imported and not can_import else "empty")
    return plan


# -- hosts, answers → errors -------------------------------------------------------------


def base_url(api_host: str) -> str:
    """``https://{host}`` for a host name; a full ``http(s)://`` base URL as given."""
    host = api_host.strip().rstrip("/")
    if host.startswith(("http://", "https://")):
        return host
    return f"https://{host}"


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """A ``Retry-After`` header (seconds, or an HTTP date) as seconds from now."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if seconds != seconds or seconds in (float("inf"), float("-inf")):  # NaN, infinities
        return None
    return max(seconds, 0.0)


def scrub(text: str, secrets: tuple[str, ...]) -> str:
    """``text`` with every secret replaced by ``***``, cut to `MAX_DETAIL` characters."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    text = " ".join(text.split())
    return text if len(text) <= MAX_DETAIL else text[: MAX_DETAIL - 1] + "…"


def failure_for_status(
    what: str, status: int, retry_after: str | None, detail: str
) -> ProviderUnavailableError | ProviderRejectedError:
    """429, 408 and 5xx: try again later (not before ``Retry-After``); any other status
    that failed (a 4xx, or a 2xx whose body says ``status: 0``): refused for good.
    ``detail`` must already be scrubbed."""
    reason = f"{what} answered HTTP {status}" + (f": {detail}" if detail else "")
    if status in (408, 429) or status >= 500:
        return ProviderUnavailableError(reason, retry_after_seconds(retry_after))
    return ProviderRejectedError(reason)
