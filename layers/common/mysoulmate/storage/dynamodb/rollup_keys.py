"""The DynamoDB adapter's rollup item keys, and the per-user SEEN state as read back.

Split from `rollups` (the transaction planning) so each stays readable; both are pure code.
Key layout: docs/dynamodb.md.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from typing import Any, NamedTuple

from mysoulmate.analytics.models import SessionMark
from mysoulmate.analytics.ports import ANY_EVENT
from mysoulmate.storage.dynamodb.keys import ERASED, MARK_ID, MARK_LAST, MARK_START

USER_SET_SHARDS = 16  # user-set items per (day, platform, event): see docs/dynamodb.md
# Spilled ("cold") items behind each shard item: a full shard item moves its users into
# these (`set_spill`), so a set holds 16 x 512 items of users (docs/dynamodb.md, Capacity).
COLD_SETS_PER_SHARD = 512
_LONG_NAME_BYTES = 200  # longer event names are hashed in sort keys (1,024-byte sk limit)


class UserState(NamedTuple):
    """What the per-user SEEN item says: the first-seen day, and which user sets of the
    latest active day already hold the user (``keys``), so repeat activity skips the set
    write (a set ADD rewrites the whole set item, which costs its size in WCUs); the
    time key of the user's latest erasure, if any (``erased``); and the user's current
    session (``mark``, see `analytics.sessions`)."""

    first: date | None = None
    day: date | None = None
    keys: frozenset[str] = frozenset()
    erased: str | None = None
    mark: SessionMark | None = None


# -- keys ---------------------------------------------------------------------------------


def rollup_pk(day: date) -> str:
    return f"ROLLUP#{day.isoformat()}"


def user_shard(user_id: str) -> int:
    """Stable across processes and versions (unlike hash()), so delete_user finds the item."""
    return zlib.crc32(user_id.encode()) % USER_SET_SHARDS


def user_cold_set(user_id: str) -> int:
    """Which of its shard's cold items holds the user: bits of the same CRC above the
    shard's, so the users of one shard spread over all of its cold items."""
    return (zlib.crc32(user_id.encode()) // USER_SET_SHARDS) % COLD_SETS_PER_SHARD


def cold_sk(hot_sk: str, user_id: str) -> str:
    """The cold item of the user set ``hot_sk`` (an ACTIVE#, USERS# or FIRST# shard item)
    that holds ``user_id`` once spilled: the shard part gains the cold item's number
    (`07` → `07-123`), so the set's readers, which read every item under the prefix,
    read the cold items too."""
    kind, _, rest = hot_sk.partition("#")
    at = 0 if kind == "FIRST" else 1  # the shard's position after the kind
    parts = rest.split("#", at + 1)  # an event name may hold '#': it stays one part
    parts[at] = f"{parts[at]}-{user_cold_set(user_id):03d}"
    return "#".join([kind, *parts])


def _platform_part(platform: str) -> str:
    """Platforms never contain '#' once validated; escape anyway so keys stay unambiguous."""
    return platform.replace("%", "%25").replace("#", "%23")


def _name_part(name: str) -> str:
    if len(name.encode()) <= _LONG_NAME_BYTES:
        return name
    return "~" + hashlib.sha256(name.encode()).hexdigest()


def count_sk(platform: str, shard: int, event: str) -> str:
    return f"COUNT#{_platform_part(platform)}#{shard}#{_name_part(event)}"


def revenue_sk(platform: str, shard: int, currency: str) -> str:
    return f"REVENUE#{_platform_part(platform)}#{shard}#{currency}"


def users_sk(platform: str, shard: int, event: str) -> str:
    """ACTIVE# items hold users of any event, USERS# items users of one event name."""
    if event == ANY_EVENT:
        return f"ACTIVE#{_platform_part(platform)}#{shard:02d}"
    return f"USERS#{_platform_part(platform)}#{shard:02d}#{_name_part(event)}"


def first_sk(shard: int) -> str:
    return f"FIRST#{shard:02d}"


def membership_key(platform: str, event: str) -> str:
    return f"{_platform_part(platform)}#{_name_part(event)}"


def parse_state(item: Mapping[str, Any]) -> UserState:
    first = item.get("first", {}).get("S")
    day = item.get("day", {}).get("S")
    return UserState(
        first=date.fromisoformat(first) if first else None,
        day=date.fromisoformat(day) if day else None,
        keys=frozenset(item.get("keys", {}).get("SS", [])),
        erased=item.get(ERASED, {}).get("S"),
        mark=_parse_mark(item),
    )


def _parse_mark(item: Mapping[str, Any]) -> SessionMark | None:
    parts = [item.get(name, {}).get("S") for name in (MARK_ID, MARK_START, MARK_LAST)]
    session_id, start, last = parts
    if session_id is None or start is None or last is None:
        return None
    return SessionMark(session_id, datetime.fromisoformat(start), datetime.fromisoformat(last))


def days_between(start: date, end: date) -> Iterable[date]:
    day = start
    while day <= end:
        yield day
        day = date.fromordinal(day.toordinal() + 1)
