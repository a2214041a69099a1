"""Stored messages as Google Analytics 4 Measurement Protocol requests: pure, no I/O.

Every documented limit of the Measurement Protocol is enforced here, before anything is sent
(GA4 answers 2xx to malformed payloads and drops what breaks a rule, silently):

* a request: at most 25 events, at most 25 user properties, a body under 130 kB, and one
  ``client_id`` / ``user_id`` (so requests are made per person and device);
* an event: a name of at most 40 characters matching ``[A-Za-z][A-Za-z0-9_]*``, at most 25
  parameters, parameter names like event names, parameter values of at most 100 characters;
* a user property: a name of at most 24 characters, a value of at most 36;
* no reserved event, parameter or user-property name, no reserved prefix (`RESERVED`);
* events may be backdated up to 72 hours: older ones are left out (``too_old``).

Names that break a rule are rewritten by ONE rule, `ga4_name` (documented in
docs/providers.md). Lengths of values are counted in UTF-16 code units, which is never less
than the number of characters, so a value is within the limit however GA4 counts.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from mysoulmate.analytics.models import ANONYMOUS_PREFIX, QueuedMessage

MAX_EVENTS_PER_REQUEST = 25
MAX_PARAMS_PER_EVENT = 25
MAX_USER_PROPERTIES = 25
MAX_NAME_LENGTH = 40  # event and parameter names
MAX_PARAM_VALUE_LENGTH = 100
MAX_USER_PROPERTY_NAME_LENGTH = 24
MAX_USER_PROPERTY_VALUE_LENGTH = 36
MAX_BODY_BYTES = 130_000  # "the post body must be smaller than 130kB": we stay below 130 000
MAX_AGE = timedelta(hours=72)  # how far back GA4 accepts a timestamp
AGE_MARGIN = timedelta(minutes=1)  # the request's trip: an event must still be in range there
ENGAGEMENT_TIME_MSEC = 1  # we do not measure engagement; 1 ms lets the event reach Realtime
DEFAULT_CURRENCY = "USD"
NAME_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
SYSTEM_PARAMS = frozenset({"session_id", "engagement_time_msec"})  # set by us, never by a client

Kind = Literal["event", "param", "user_property"]
Key = tuple[str, str]  # QueuedMessage.key: (person key, messageId)
ParamValue = str | int | float

# Reserved names and prefixes: the Measurement Protocol's list ("Reserved names") and the web
# stream's (support.google.com/analytics/answer/13316687), which GA4 may extend at any time.
# page_view and screen_view are reserved too: we send them for page and screen calls only,
# never for a track event that happens to carry the name.
RESERVED_EVENT_NAMES = frozenset(
    {
        "ad_activeview",
        "ad_click",
        "ad_exposure",
        "ad_impression",
        "ad_query",
        "ad_reward",
        "adunit_exposure",
        "app_background",
        "app_clear_data",
        "app_exception",
        "app_install",
        "app_remove",
        "app_store_refund",
        "app_store_subscription_cancel",
        "app_store_subscription_convert",
        "app_store_subscription_renew",
        "app_update",
        "app_upgrade",
        "click",
        "dynamic_link_app_open",
        "dynamic_link_app_update",
        "dynamic_link_first_open",
        "error",
        "file_download",
        "firebase_campaign",
        "firebase_in_app_message_action",
        "firebase_in_app_message_dismiss",
        "firebase_in_app_message_impression",
        "first_open",
        "first_visit",
        "form_start",
        "form_submit",
        "in_app_purchase",
        "notification_dismiss",
        "notification_foreground",
        "notification_open",
        "notification_receive",
        "os_update",
        "page_view",
        "screen_view",
        "scroll",
        "session_start",
        "session_start_with_rollout",
        "user_engagement",
        "video_progress",
        "video_start",
        "view_complete",
        "view_search_results",
    }
)
RESERVED_PARAM_NAMES = frozenset(
    {"engagement_time_msec", "firebase_conversion", "gclid", "session_id", "session_number"}
)
RESERVED_USER_PROPERTY_NAMES = frozenset(
    {
        "first_open_after_install",
        "first_open_time",
        "first_visit_time",
        "last_deep_link_referrer",
        "user_id",
    }
)
_PREFIXES = ("_", "firebase_", "ga_", "google_")
RESERVED: dict[Kind, tuple[frozenset[str], tuple[str, ...]]] = {
    "event": (RESERVED_EVENT_NAMES, (*_PREFIXES, "gtag.", "query_id")),
    "param": (RESERVED_PARAM_NAMES, (*_PREFIXES, "gtag.")),
    "user_property": (RESERVED_USER_PROPERTY_NAMES, _PREFIXES),
}
MAX_LENGTH: dict[Kind, int] = {
    "event": MAX_NAME_LENGTH,
    "param": MAX_NAME_LENGTH,
    "user_property": MAX_USER_PROPERTY_NAME_LENGTH,
}

# Message shapes turned into GA4's own events (docs/providers.md).
PURCHASE_EVENTS = frozenset({"purchase", "order_completed"})  # after `ga4_name`
PURCHASE_VALUE_KEYS = ("revenue", "total", "value")
ORDER_ID_KEYS = ("order_id", "orderId", "transaction_id", "transactionId")
PURCHASE_KEYS = frozenset({*PURCHASE_VALUE_KEYS, *ORDER_ID_KEYS, "currency"})
PAGE_KEYS = frozenset({"name", "title", "url", "path", "referrer"})
SCREEN_KEYS = frozenset({"name"})

_OUTSIDE_NAME = re.compile(r"[^a-z0-9_]+")
_LEADING = "0123456789_"


# ----------------------------------------------------------------------------- names


def is_reserved(name: str, kind: Kind) -> bool:
    names, prefixes = RESERVED[kind]
    return name in names or name.startswith(prefixes)


def ga4_name(raw: str, kind: Kind = "event") -> str:
    """The one name-mapping rule, for event, parameter and user-property names:

    1. lower-case; 2. replace every run of characters outside ``[a-z0-9_]`` with ``_``;
    3. strip leading digits and underscores, and trailing underscores; 4. if nothing is
    left, ``x_`` and the first 8 hex digits of the SHA-256 of the raw name; 5. truncate to
    the limit (40, or 24 for user properties) and strip trailing underscores; 6. if the
    result is reserved or starts with a reserved prefix, prefix ``x_`` and apply 5 again.

    Valid lower-case names are kept as they are, and the rule is idempotent."""
    limit = MAX_LENGTH[kind]
    name = _OUTSIDE_NAME.sub("_", raw.lower()).lstrip(_LEADING).rstrip("_")
    if not name:
        digest = hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()
        name = "x_" + digest[:8]
    name = name[:limit].rstrip("_")
    if is_reserved(name, kind):
        name = ("x_" + name)[:limit].rstrip("_")
    return name


# ----------------------------------------------------------------------------- values


def utf16_length(text: str) -> int:
    """Length in UTF-16 code units (a character beyond U+FFFF counts twice)."""
    return len(text) + sum(1 for char in text if ord(char) > 0xFFFF)


def clip(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` UTF-16 code units, never inside a character."""
    if len(text) <= limit // 2 or utf16_length(text) <= limit:
        return text
    units = 0
    for index, char in enumerate(text):
        units += 2 if ord(char) > 0xFFFF else 1
        if units > limit:
            return text[:index]
    return text


def _number(value: Any) -> int | float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def param_value(value: Any, limit: int = MAX_PARAM_VALUE_LENGTH) -> ParamValue | None:
    """A property or trait value as GA4 takes it (a string or a number), or None (dropped):
    null is dropped; booleans become "true"/"false"; integers beyond ±2^53 (not exact in
    JSON readers) and objects and arrays become their compact JSON text; text is cut to
    ``limit``."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    number = _number(value)
    if isinstance(number, int) and abs(number) < 2**53:
        return number
    if isinstance(number, float):
        return number
    if isinstance(value, str):
        return clip(value, limit)
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
    return clip(text, limit)


# ----------------------------------------------------------------------------- identity


def client_id_for(message: QueuedMessage) -> str:
    """The device: the anonymous id when there is one (what a client library keeps per
    device), else ``u.`` and 32 hex digits of the SHA-256 of the user id (stable, and not
    the user id itself)."""
    if message.anonymousId:
        return message.anonymousId
    if message.userId.startswith(ANONYMOUS_PREFIX):
        return message.userId.removeprefix(ANONYMOUS_PREFIX)
    return "u." + hashlib.sha256(message.userId.encode()).hexdigest()[:32]


def user_id_for(message: QueuedMessage) -> str | None:
    """GA4's user_id: identified users only, never a visitor's ``anon:`` person key."""
    if message.userId.startswith(ANONYMOUS_PREFIX):
        return None
    return message.userId


def ga4_session_id(session_id: str) -> int:
    """GA4 wants a number: the session id itself when it is a positive integer of at most
    15 digits (exact in any JSON reader; gtag's are 10-digit Unix seconds), else the first
    8 bytes of the id's SHA-256 as an integer, modulo 10^10 (at most 10 digits, never 0)."""
    if session_id.isascii() and session_id.isdigit() and len(session_id) <= 15:
        number = int(session_id)
        if number > 0:
            return number
    digest = hashlib.sha256(session_id.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") % 10**10 or 1


def too_old(message: QueuedMessage, now: datetime) -> bool:
    return now - message.timestamp > MAX_AGE - AGE_MARGIN


def timestamp_micros(moment: datetime, now: datetime) -> int:
    """Microseconds since the epoch; a time in the future is sent as now."""
    return (min(moment, now) - _EPOCH) // timedelta(microseconds=1)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# ----------------------------------------------------------------------------- events


def _is_purchase(message: QueuedMessage) -> bool:
    if message.type != "track":
        return False
    named = ga4_name(message.event or "") in PURCHASE_EVENTS
    return named or _number(message.properties.get("revenue")) is not None


def _first(mapping: Mapping[str, Any], keys: Sequence[str]) -> Any:
    for key in keys:
        if mapping.get(key) not in (None, ""):
            return mapping[key]
    return None


def _currency(value: Any) -> str:
    if isinstance(value, str) and len(value.strip()) == 3 and value.strip().isalpha():
        return value.strip().upper()
    return DEFAULT_CURRENCY


def _named(message: QueuedMessage) -> tuple[str, dict[str, Any], frozenset[str]]:
    """GA4's event name, its own parameters, and the properties those consumed."""
    props = message.properties
    if message.type == "page":
        page = message.context.get("page")
        page = page if isinstance(page, dict) else {}
        own = {
            "page_title": _first(props, ("title",)) or message.name or page.get("title"),
            "page_location": _first(props, ("url", "path")) or _first(page, ("url", "path")),
            "page_referrer": props.get("referrer") or page.get("referrer"),
        }
        return "page_view", own, PAGE_KEYS
    if message.type == "screen":
        name = message.name or (message.event or "").partition(":")[2] or None
        return "screen_view", {"screen_name": name}, SCREEN_KEYS
    if _is_purchase(message):
        values = (_number(props.get(key)) for key in PURCHASE_VALUE_KEYS)
        value = next((number for number in values if number is not None), None)
        order = _first(props, ORDER_ID_KEYS)
        own = {
            "value": value,
            "currency": _currency(props.get("currency")),
            "transaction_id": str(order) if order is not None else message.messageId,
        }
        return "purchase", own, PURCHASE_KEYS
    return ga4_name(message.event or ""), {}, frozenset()


def event_for(message: QueuedMessage, now: datetime) -> dict[str, Any]:
    """One track, page or screen message as a GA4 event (docs/providers.md)."""
    name, own, consumed = _named(message)
    params: dict[str, ParamValue] = {"engagement_time_msec": ENGAGEMENT_TIME_MSEC}
    if message.sessionId:
        params["session_id"] = ga4_session_id(message.sessionId)
    for key, raw in own.items():
        value = param_value(raw)
        if value is not None:
            params[key] = value
    for key, raw in message.properties.items():
        if len(params) >= MAX_PARAMS_PER_EVENT:
            break
        if key in consumed:
            continue
        param = ga4_name(key, "param")
        value = param_value(raw)
        if param not in params and value is not None:
            params[param] = value  # two keys with one GA4 name: the first wins
    return {
        "name": name,
        "params": params,
        "timestamp_micros": timestamp_micros(message.timestamp, now),
    }


def user_properties_for(
    identifies: Sequence[QueuedMessage], now: datetime
) -> dict[str, dict[str, Any]]:
    """A person's identify traits as GA4 user properties: the latest value of each wins,
    each with the time it was set; at most 25 (the first names seen)."""
    merged: dict[str, dict[str, Any]] = {}
    for message in sorted(identifies, key=lambda m: m.timestamp):
        seen: set[str] = set()
        micros = timestamp_micros(message.timestamp, now)
        for key, raw in message.traits.items():
            name = ga4_name(key, "user_property")
            value = param_value(raw, MAX_USER_PROPERTY_VALUE_LENGTH)
            if value is None or name in seen:
                continue
            if name not in merged and len(merged) >= MAX_USER_PROPERTIES:
                continue
            seen.add(name)
            merged[name] = {"value": value, "timestamp_micros": micros}
    return merged


# ----------------------------------------------------------------------------- requests


def encode(body: Mapping[str, Any]) -> bytes:
    """A request body as sent: compact JSON, UTF-8."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


@dataclass(frozen=True)
class Ga4Request:
    """One POST: its body and the messages it delivers (events, and identifies whose traits
    ride along as user properties)."""

    body: bytes
    keys: tuple[Key, ...]


@dataclass
class Plan:
    requests: list[Ga4Request] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)


def _packed(
    base: dict[str, Any], items: list[tuple[Key, dict[str, Any]]]
) -> Iterator[list[tuple[Key, dict[str, Any]]]]:
    """``items`` in order, in batches of at most 25 events whose body stays under the size
    limit. One event is at most ~20 kB and a request's other fields ~10 kB, so every event
    fits on its own."""
    overhead = len(encode({**base, "events": []}))
    batch: list[tuple[Key, dict[str, Any]]] = []
    size = overhead
    for item in items:
        added = len(encode(item[1])) + (1 if batch else 0)  # the comma between events
        full = len(batch) >= MAX_EVENTS_PER_REQUEST or size + added >= MAX_BODY_BYTES
        if batch and full:
            yield batch
            batch, size = [], overhead
            added -= 1
        batch.append(item)
        size += added
    if batch:
        yield batch


def plan_requests(messages: Sequence[QueuedMessage], now: datetime) -> Plan:
    """The requests that deliver ``messages``, and what is left out, by reason:
    ``unsupported`` (group, alias), ``too_old`` (over 72 hours), ``no_event`` (an identify
    whose person has no event in these messages: GA4 takes user properties only with an
    event) and ``no_traits`` (an identify with nothing GA4 can hold)."""
    plan = Plan()
    events: dict[tuple[str, str | None, str], list[tuple[Key, dict[str, Any]]]] = {}
    identifies: dict[str, list[QueuedMessage]] = {}
    for message in messages:
        if message.type in ("group", "alias"):
            plan.skipped["unsupported"] += 1
        elif too_old(message, now):
            plan.skipped["too_old"] += 1
        elif message.type == "identify":
            identifies.setdefault(message.userId, []).append(message)
        else:
            device = (client_id_for(message), user_id_for(message), message.userId)
            events.setdefault(device, []).append((message.key, event_for(message, now)))

    with_events = {person for _, _, person in events}
    properties: dict[str, dict[str, dict[str, Any]]] = {}
    riders: dict[str, list[Key]] = {}
    for person, group in identifies.items():
        if person not in with_events:
            plan.skipped["no_event"] += len(group)
            continue
        merged = user_properties_for(group, now)
        if not merged:
            plan.skipped["no_traits"] += len(group)
            continue
        properties[person], riders[person] = merged, [m.key for m in group]

    for (client_id, user_id, person), items in events.items():
        base: dict[str, Any] = {"client_id": client_id}
        if user_id is not None:
            base["user_id"] = user_id
        if person in properties:
            base["user_properties"] = properties[person]
        extra = riders.pop(person, [])  # counted with the person's first request
        for batch in _packed(base, items):
            body = encode({**base, "events": [event for _, event in batch]})
            plan.requests.append(Ga4Request(body, (*extra, *(key for key, _ in batch))))
            extra = []
    return plan
