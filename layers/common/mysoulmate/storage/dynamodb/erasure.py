"""How an erasure sticks in DynamoDB, as pure functions of items and states (no I/O).

The tombstone is the `erased` attribute of the user's SEEN item (the latest erasure's
time key). `delete_user` sets it first, never lowers it and never deletes the item. Every
write of a user's data names that same item with `keys.NOT_ERASED` in its transaction: the
consumer's event transactions (a SEEN update or a ConditionCheck per user) and profile
writes. DynamoDB serializes writes to one item, so either the tombstone comes first and the
write is cancelled (and reported as erased), or the write commits first and the eraser's
consistent Query, which runs after the tombstone, finds and deletes what it wrote.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from mysoulmate.analytics.models import QueuedMessage
from mysoulmate.analytics.ports import ANY_EVENT, MessageKey
from mysoulmate.analytics.rollups import UNKNOWN_PLATFORM
from mysoulmate.storage.dynamodb.keys import (
    ERASED,
    FORWARD_LEDGER_PREFIX,
    LINKED_PREFIX,
    MARK_ATTRIBUTES,
    PERF_LEDGER_PREFIX,
    PROFILE_SK,
    RECEIVED,
    SEEN_SK,
    not_erased_check,
    receipt_key,
    user_pk,
)
from mysoulmate.storage.dynamodb.reads import _utc_key
from mysoulmate.storage.dynamodb.rollups import (
    UserState,
    first_sk,
    rollup_pk,
    user_shard,
    users_sk,
)
from mysoulmate.storage.dynamodb.set_spill import removals

# What an erasure clears on the SEEN item (the tombstone stays).
SEEN_STATE = ("first", "day", "keys", *MARK_ATTRIBUTES)


def split_erased(
    messages: Sequence[QueuedMessage], states: Mapping[str, UserState]
) -> tuple[list[QueuedMessage], set[MessageKey]]:
    """The messages still to write, and the keys of those an erasure recorded at or after
    their receipt covers (same rule as NOT_ERASED: erased_at >= receivedAt)."""
    kept: list[QueuedMessage] = []
    erased: set[MessageKey] = set()
    for message in messages:
        tombstone = states.get(message.userId, UserState()).erased
        if tombstone is not None and receipt_key(message) <= tombstone:
            erased.add(message.key)
        else:
            kept.append(message)
    return kept, erased


def tombstone_update(table: str, user_id: str, erased_key: str) -> dict[str, Any]:
    """UpdateItem arguments recording an erasure; the condition keeps the latest one (an
    older request finishing late fails it, which is success: a later erasure covers it)."""
    return {
        "TableName": table,
        "Key": {"pk": {"S": user_pk(user_id)}, "sk": {"S": SEEN_SK}},
        "UpdateExpression": "SET #erased = :at",
        "ConditionExpression": "attribute_not_exists(#erased) OR #erased < :at",
        "ExpressionAttributeNames": {"#erased": ERASED},
        "ExpressionAttributeValues": {":at": {"S": erased_key}},
    }


def seen_reset(table: str, user_id: str) -> dict[str, Any]:
    """UpdateItem arguments clearing the SEEN item's rollup state and session mark but
    keeping its tombstone."""
    names = {f"#{name}": name for name in SEEN_STATE}
    return {
        "TableName": table,
        "Key": {"pk": {"S": user_pk(user_id)}, "sk": {"S": SEEN_SK}},
        "UpdateExpression": "REMOVE " + ", ".join(names),
        "ExpressionAttributeNames": names,
    }


@dataclass
class ErasurePlan:
    """What erasing the queried items of one user takes."""

    set_keys: set[tuple[str, str]] = field(default_factory=set)  # (pk, sk) of user sets
    deletes: list[dict[str, Any]] = field(default_factory=list)  # keys of items to delete
    events: int = 0
    profile: bool = False
    seen: bool = False  # the SEEN item holds rollup state or a session mark to clear
    links: list[str] = field(default_factory=list)  # anonymous ids linked to the user
    tombstone: str = ""  # the erasure time the items were read under (a time key)
    latest: str = ""  # the latest receipt among the events found (a time key)

    @property
    def found_later(self) -> bool:
        """An event received after the tombstone is among them: sent while the erasure was
        requested and stored before it ran. The erasure covers it too (`delete_user` moves
        the tombstone up to it and reads again), so that its redelivery is refused."""
        return self.latest > self.tombstone


def plan_erasure(user_id: str, items: Iterable[Mapping[str, Any]]) -> ErasurePlan:
    """The events tell which day sets hold the user, SEEN's `first` which FIRST# set, the
    LINKED# items which anonymous ids were linked to them; every item but SEEN is deleted
    (SEEN keeps the tombstone), and but the ledger items (perf, forward) of messages
    received after the tombstone: new data, possibly counted or forwarded before the
    erasure ran, whose redelivery would otherwise count or go again."""
    plan = ErasurePlan()
    shard = user_shard(user_id)
    tombstone = ""
    ledger: list[Mapping[str, Any]] = []
    for item in items:
        sk = item["sk"]["S"]
        if sk == SEEN_SK:
            plan.seen = any(name in item for name in SEEN_STATE)
            tombstone = item.get(ERASED, {}).get("S", "")
            if "first" in item:
                day = date.fromisoformat(item["first"]["S"])
                plan.set_keys.add((rollup_pk(day), first_sk(shard)))
            continue
        if sk.startswith((PERF_LEDGER_PREFIX, FORWARD_LEDGER_PREFIX)):
            ledger.append(item)  # SEEN sorts after FWD# and PERF: decided once it is read
            continue
        plan.deletes.append({"pk": item["pk"], "sk": item["sk"]})
        if sk == PROFILE_SK:
            plan.profile = True
        elif sk.startswith(LINKED_PREFIX):
            plan.links.append(sk.removeprefix(LINKED_PREFIX))
        elif sk.startswith("EVENT#"):
            plan.events += 1
            plan.latest = max(plan.latest, _receipt(item))
            for day, platform, name in event_sets(item):
                plan.set_keys.add((rollup_pk(day), users_sk(platform, shard, name)))
    plan.deletes += [
        {"pk": item["pk"], "sk": item["sk"]}
        for item in ledger
        if item.get(RECEIVED, {}).get("S", "") <= tombstone  # none: written before receipts
    ]
    plan.tombstone = tombstone
    return plan


def _receipt(item: Mapping[str, Any]) -> str:
    """A stored event's receipt, as a time key (from its document: events carry no receipt
    attribute of their own)."""
    return _utc_key(datetime.fromisoformat(json.loads(item["doc"]["S"])["receivedAt"]))


def event_sets(item: Mapping[str, Any]) -> set[tuple[date, str, str]]:
    """The (day, platform, event) user sets a stored event puts its user in: its event's
    and ANY_EVENT's, for counted events (track, page, screen); none for the others."""
    if "event" not in item:
        return set()
    day = date.fromisoformat(item["ts"]["S"][:10])
    platform = item.get("platform", {}).get("S") or UNKNOWN_PLATFORM
    return {(day, platform, item["event"]["S"]), (day, platform, ANY_EVENT)}


def set_removals(
    table: str, user_id: str, set_keys: Iterable[tuple[str, str]], *, spilled: bool = False
) -> list[Any]:
    """Transaction actions taking the user out of the named sets (their shard items). Each
    is conditioned on its item existing, so no empty item is created for a set that does
    not exist, and, unless ``spilled``, on the set never having spilled (`set_spill`): a
    failed one is tried again with ``spilled``, which adds the cold item's removal after
    the shard item's (run them in this order); failing again, the set does not exist."""
    return [
        action
        for set_pk, set_sk in sorted(set_keys)
        for action in removals(table, set_pk, set_sk, [user_id], spilled=spilled, existing=True)
    ]


def guarded_profile_put(
    table: str, put: dict[str, Any], user_id: str, received: str
) -> list[dict[str, Any]]:
    """The profile Put (action 0) and the tombstone check (action 1) as one transaction."""
    return [{"Put": {"TableName": table, **put}}, not_erased_check(table, user_id, received)]
