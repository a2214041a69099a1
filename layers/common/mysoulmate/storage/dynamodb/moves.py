"""How an anonymous visitor's items move to the user they are linked to, as pure functions
(no I/O): the link's own items, the steps of a move and how steps pack into transactions.

A move is a list of *steps*, each a group of actions that must commit together, in an order
that a re-run after a crash completes: a re-run derives everything from what is still stored
under the visitor (its events, SEEN and PROFILE items), so nothing a re-run needs is removed
before, or without, what it implies.

1. the visitor leaves the user sets its events put it in (each set on its own);
2. first-seen: the user's `first` becomes min(user's, visitor's), the FIRST# sets follow
   (one step), then the visitor's SEEN state (session mark included) and FIRST# membership
   go (another step);
3. the profile: the merged profile, written over the version read, and the visitor's deleted;
4. each event: Put under the user (`attribute_not_exists`: a messageId the user already has
   is dropped, not doubled) and Delete from the visitor, with the user's sets of the event
   added in the same transaction or an earlier one.

Steps are packed in order, never reordered, into transactions of ≤100 actions that never
name an item twice (when the user and the visitor share a set shard, the sets' removal and
addition land in different transactions); every transaction carries the user's tombstone
check, so a move racing an erasure either commits before it (and is erased) or is refused.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from functools import partial
from typing import Any

from mysoulmate.analytics.models import Profile
from mysoulmate.analytics.ports import ANY_EVENT
from mysoulmate.analytics.profiles import merge_profiles
from mysoulmate.storage.dynamodb.dropped_copies import uncount_copy
from mysoulmate.storage.dynamodb.erasure import SEEN_STATE, event_sets, set_removals
from mysoulmate.storage.dynamodb.keys import (
    ERASED,
    NOT_ERASED,
    PROFILE_SK,
    SEEN_SK,
    link_key,
    linked_key,
    not_erased_check,
    seen_key,
    user_pk,
)
from mysoulmate.storage.dynamodb.rollups import (
    ROLLUP_ACTION_BYTES,
    TRANSACT_BYTES_BUDGET,
    TRANSACT_LIMIT,
    UserState,
    event_item_bytes,
    first_sk,
    rollup_pk,
    user_shard,
    users_sk,
)
from mysoulmate.storage.dynamodb.set_spill import BYTES, member_bytes, removals

SetKey = tuple[date, str, str]  # a user set: (day, platform, event name or ANY_EVENT)
_STATE = ("first", "day", "keys")  # the SEEN attributes a move takes away from the visitor

# What a failed condition of an action means: a duplicate event (drop its Put), a set that
# does not exist (drop the removal), a set that has spilled (take the step's fallback, which
# also removes from the cold item: `set_spill`), or a change since the reads (read again
# and re-plan).
PUT, SET_REMOVAL, SPILLED, STALE = "put", "set-removal", "spilled", "stale"


# -- the link -------------------------------------------------------------------------------


def link_actions(table: str, anonymous_id: str, user_id: str, received: str) -> list[Any]:
    """The link (action 0, only if none exists: the first link wins), the user's LINKED#
    item (so an erasure finds it) and the user's tombstone check (action 2)."""
    attributes = {"user": {"S": user_id}, "at": {"S": received}}
    return [
        {
            "Put": {
                "TableName": table,
                "Item": {**link_key(anonymous_id), **attributes},
                "ConditionExpression": "attribute_not_exists(pk)",
            }
        },
        {"Put": {"TableName": table, "Item": {**linked_key(user_id, anonymous_id), **attributes}}},
        not_erased_check(table, user_id, received),
    ]


def link_deletions(table: str, user_id: str, anonymous_ids: Iterable[str]) -> list[Any]:
    """Deletes of the LINK# items of an erased user (each only while it names that user)."""
    return [
        {
            "Delete": {
                "TableName": table,
                "Key": link_key(anonymous_id),
                "ConditionExpression": "#user = :u",
                "ExpressionAttributeNames": {"#user": "user"},
                "ExpressionAttributeValues": {":u": {"S": user_id}},
            }
        }
        for anonymous_id in sorted(anonymous_ids)
    ]


# -- what is stored under the visitor ----------------------------------------------------------


@dataclass
class Visitor:
    """The visitor's items, as a consistent Query of their partition returned them."""

    events: list[dict[str, Any]] = field(default_factory=list)
    seen: dict[str, Any] | None = None
    profile: dict[str, Any] | None = None

    @property
    def empty(self) -> bool:
        return not self.events and self.profile is None and not _holds_state(self.seen)

    @property
    def first(self) -> date | None:
        first = (self.seen or {}).get("first", {}).get("S")
        return date.fromisoformat(first) if first else None


def read_visitor(items: Iterable[dict[str, Any]]) -> Visitor:
    found = Visitor()
    for item in items:
        sk = item["sk"]["S"]
        if sk.startswith("EVENT#"):
            found.events.append(item)
        elif sk == SEEN_SK:
            found.seen = item
        elif sk == PROFILE_SK:
            found.profile = item
    return found


def _holds_state(seen: Mapping[str, Any] | None) -> bool:
    return seen is not None and any(name in seen for name in _STATE)


# -- steps ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """Actions that commit in one transaction; ``kinds`` say what each one's failed
    condition means, ``sets`` are the user sets it needs (added with it or earlier)."""

    actions: tuple[dict[str, Any], ...]
    kinds: tuple[str, ...]
    sets: frozenset[SetKey] = frozenset()
    moves: int = 0  # events it moves to the user
    size: int = 0  # bytes of the items it puts
    fallback: Step | None = None  # the step again for spilled sets, if a SPILLED one fails
    # A duplicate event's counter updates (built only then): its copy leaves the counts it
    # added when stored.
    uncount: Callable[[], tuple[dict[str, Any], ...]] = tuple

    def without_put(self) -> Step:
        """The step of a duplicate event: the visitor's copy is deleted and uncounted, in one
        transaction (a re-run finds no copy left to uncount)."""
        updates = self.uncount()
        return Step((*self.actions[1:], *updates), (*self.kinds[1:], *("rollup",) * len(updates)))


@dataclass(frozen=True)
class Move:
    """What moving the visitor's items to the user takes."""

    user_id: str
    visitor: str
    received: str  # time key of the link's receipt, for the tombstone checks
    steps: list[Step] = field(default_factory=list)


def plan_move(
    table: str, move: Move, user_state: UserState, found: Visitor, profile: Profile | None
) -> Move:
    """``move`` with the steps moving ``found`` from the visitor to the user; ``profile`` is
    the user's current profile, read when the visitor has one."""
    user_id, visitor, received = move.user_id, move.visitor, move.received
    shard = user_shard(visitor)
    sets = set().union(*(event_sets(item) for item in found.events))
    keys = sorted({(rollup_pk(d), users_sk(p, shard, e)) for d, p, e in sets})
    steps = [_set_removal(table, visitor, key) for key in keys]
    if found.first is not None:
        steps += _user_first(table, user_id, user_state, found.first, received)
    steps += _visitor_first(table, visitor, found)
    if found.profile is not None:
        steps.append(_profile_step(table, user_id, profile, found.profile))
    steps += [_event_step(table, user_id, item) for item in found.events]
    return Move(user_id, visitor, received, steps)


def _update(table: str, key: dict[str, Any], expression: str, **extra: Any) -> dict[str, Any]:
    return {"Update": {"TableName": table, "Key": key, "UpdateExpression": expression, **extra}}


def _first_addition(table: str, person: str, day: date) -> dict[str, Any]:
    key = {"pk": {"S": rollup_pk(day)}, "sk": {"S": first_sk(user_shard(person))}}
    return _update(
        table,
        key,
        f"ADD #users :u, #{BYTES} :b",
        ExpressionAttributeNames={"#users": "users", f"#{BYTES}": BYTES},
        ExpressionAttributeValues={
            ":u": {"SS": [person]},
            ":b": {"N": str(member_bytes([person]))},
        },
    )


def _set_removal(table: str, visitor: str, key: tuple[str, str]) -> Step:
    """The visitor out of one user set: one action if the set never spilled, else (the
    fallback) out of the shard item and then its cold item."""
    guess = set_removals(table, visitor, [key])
    spilled = set_removals(table, visitor, [key], spilled=True)
    kinds = (SET_REMOVAL,) + ("rollup",) * (len(spilled) - 1)
    return Step(tuple(guess), (SPILLED,), fallback=Step(tuple(spilled), kinds))


def _first_removal(
    table: str, person: str, day: date, *, spilled: bool
) -> tuple[list[dict[str, Any]], list[str]]:
    """Out of the day's FIRST# shard item (and, if it spilled, out of its cold item), with
    each action's kind: the guess that it never spilled fails as SPILLED."""
    key = first_sk(user_shard(person))
    actions = removals(table, rollup_pk(day), key, [person], spilled=spilled, existing=False)
    return actions, ["rollup"] * len(actions) if spilled else [SPILLED]


def _user_first(
    table: str, user_id: str, state: UserState, first: date, received: str
) -> list[Step]:
    """The user's first-seen day moves to ``first`` when that is earlier (conditioned on
    the value read and on the tombstone, like the consumer's own SEEN updates)."""
    if state.first is not None and state.first <= first:
        return []
    guess = _user_first_step(table, user_id, state, first, received, spilled=False)
    fallback = _user_first_step(table, user_id, state, first, received, spilled=True)
    return [replace(guess, fallback=fallback)]


def _user_first_step(
    table: str, user_id: str, state: UserState, first: date, received: str, *, spilled: bool
) -> Step:
    actions = [_first_addition(table, user_id, first)]
    kinds = ["add"]
    values: dict[str, Any] = {":f": {"S": first.isoformat()}, ":received": {"S": received}}
    if state.first is None:
        condition = "attribute_not_exists(#first)"
    else:
        removal, removal_kinds = _first_removal(table, user_id, state.first, spilled=spilled)
        actions += removal
        kinds += removal_kinds
        condition = "#first = :old"
        values[":old"] = {"S": state.first.isoformat()}
    seen = _update(
        table,
        seen_key(user_id),
        "SET #first = :f",
        ConditionExpression=f"({condition}) AND {NOT_ERASED}",
        ExpressionAttributeNames={"#first": "first", "#erased": ERASED},
        ExpressionAttributeValues=values,
    )
    return Step((*actions, seen), (*kinds, STALE))


def _visitor_first(table: str, visitor: str, found: Visitor) -> list[Step]:
    """The visitor leaves its FIRST# set, and its SEEN state goes (the item too, unless it
    holds a tombstone), conditioned on the first-seen day read."""
    if found.seen is None or not _holds_state(found.seen):
        return []
    guess = _visitor_first_step(table, visitor, found, found.seen, spilled=False)
    fallback = _visitor_first_step(table, visitor, found, found.seen, spilled=True)
    return [replace(guess, fallback=fallback)]


def _visitor_first_step(
    table: str, visitor: str, found: Visitor, seen: Mapping[str, Any], *, spilled: bool
) -> Step:
    actions: list[dict[str, Any]] = []
    kinds: list[str] = []
    extra: dict[str, Any] = {"ExpressionAttributeNames": {"#first": "first"}}
    condition = "attribute_not_exists(#first)"
    if found.first is not None:
        actions, kinds = _first_removal(table, visitor, found.first, spilled=spilled)
        condition = "#first = :first"
        extra["ExpressionAttributeValues"] = {":first": {"S": found.first.isoformat()}}
    if ERASED in seen:
        # Only the tombstone stays: the rollup state and the session mark go (the
        # visitor's later messages are stored under the user and continue the user's mark).
        names = {f"#{name}": name for name in SEEN_STATE}
        extra["ExpressionAttributeNames"] |= names
        remove = "REMOVE " + ", ".join(names)
        actions.append(
            _update(table, seen_key(visitor), remove, ConditionExpression=condition, **extra)
        )
    else:
        extra["ExpressionAttributeNames"]["#erased"] = ERASED
        condition += " AND attribute_not_exists(#erased)"
        delete = {"TableName": table, "Key": seen_key(visitor), "ConditionExpression": condition}
        actions.append({"Delete": delete | extra})
    return Step(tuple(actions), (*kinds, STALE))


def _profile_step(
    table: str, user_id: str, current: Profile | None, visitor_item: Mapping[str, Any]
) -> Step:
    """The merged profile over the version read (as `update_profile` writes it) and the
    delete of the visitor's, over the version the merge read."""
    merged = merge_profiles(user_id, current, Profile.model_validate_json(visitor_item["doc"]["S"]))
    assert merged is not None  # the visitor's profile exists
    expected = current.version if current is not None else 0
    merged.version = expected + 1
    doc = merged.model_dump_json()
    put = {
        "TableName": table,
        "Item": {
            "pk": {"S": user_pk(user_id)},
            "sk": {"S": PROFILE_SK},
            "doc": {"S": doc},
            "version": {"N": str(merged.version)},
        },
        "ConditionExpression": "attribute_not_exists(pk) OR version = :expected",
        "ExpressionAttributeValues": {":expected": {"N": str(expected)}},
    }
    delete: dict[str, Any] = {"TableName": table, "Key": _key(visitor_item)}
    if "version" in visitor_item:
        delete["ConditionExpression"] = "version = :read"
        delete["ExpressionAttributeValues"] = {":read": visitor_item["version"]}
    else:
        delete["ConditionExpression"] = "attribute_not_exists(version)"
    return Step(({"Put": put}, {"Delete": delete}), (STALE, STALE), size=len(doc))


def _event_step(table: str, user_id: str, item: Mapping[str, Any]) -> Step:
    pk = {"S": user_pk(user_id)}
    moved = {**item, "pk": pk, "gsi1pk": pk}
    put = {"TableName": table, "Item": moved, "ConditionExpression": "attribute_not_exists(pk)"}
    delete = {"TableName": table, "Key": _key(item)}
    return Step(
        ({"Put": put}, {"Delete": delete}),
        (PUT, "delete"),
        frozenset(event_sets(item)),
        moves=1,
        size=event_item_bytes(moved),
        uncount=partial(uncount_copy, table, item),
    )


def _key(item: Mapping[str, Any]) -> dict[str, Any]:
    return {"pk": item["pk"], "sk": item["sk"]}


# -- transactions -----------------------------------------------------------------------------


@dataclass
class Transaction:
    """The next steps that fit one TransactWriteItems call, as its actions; ``owners``
    names each action's step (None for set additions and the tombstone check)."""

    actions: list[dict[str, Any]] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    owners: list[int | None] = field(default_factory=list)
    steps: int = 0  # how many of the pending steps it commits
    sets: set[SetKey] = field(default_factory=set)  # user sets it adds the user to
    bytes: int = 0


def next_transaction(
    table: str, move: Move, steps: Sequence[Step], added: set[SetKey]
) -> Transaction:
    """The longest prefix of ``steps`` (at least one step) that fits one transaction
    with the user-set additions its events need (those not in ``added`` yet) and the
    tombstone check; a step naming an item already in the transaction starts the next."""
    tx = Transaction()
    items: set[tuple[str, str]] = set()
    for index, step in enumerate(steps):
        needed = sorted(step.sets - added - tx.sets)
        adds = [_set_addition(table, move.user_id, key) for key in needed]
        actions = [*step.actions, *adds]
        keys = {_item_key(action) for action in actions}
        cost = step.size + ROLLUP_ACTION_BYTES * len(actions)
        fits = (
            len(tx.actions) + len(actions) < TRANSACT_LIMIT  # one is left for the check
            and tx.bytes + cost <= TRANSACT_BYTES_BUDGET
            and not keys & items
        )
        if tx.steps and not fits:
            break
        tx.actions += actions
        tx.kinds += [*step.kinds, *("add",) * len(adds)]
        tx.owners += [index] * len(step.actions) + [None] * len(adds)
        tx.steps, tx.bytes = index + 1, tx.bytes + cost
        tx.sets.update(needed)
        items |= keys
    if (user_pk(move.user_id), SEEN_SK) not in items:  # else its update checks the tombstone
        tx.actions.append(not_erased_check(table, move.user_id, move.received))
        tx.kinds.append(STALE)
        tx.owners.append(None)
    return tx


def _set_addition(table: str, user_id: str, key: SetKey) -> dict[str, Any]:
    """The user into a day's set, written as the consumer writes it (platform and event
    attributes for the readers)."""
    day, platform, event = key
    values: dict[str, Any] = {
        ":u": {"SS": [user_id]},
        ":b": {"N": str(member_bytes([user_id]))},
        ":p": {"S": platform},
    }
    names = {"#users": "users", "#platform": "platform", f"#{BYTES}": BYTES}
    expression = f"SET #platform = :p ADD #users :u, #{BYTES} :b"
    if event != ANY_EVENT:
        expression = f"SET #platform = :p, #event = :e ADD #users :u, #{BYTES} :b"
        values[":e"] = {"S": event}
        names["#event"] = "event"
    item_key = {
        "pk": {"S": rollup_pk(day)},
        "sk": {"S": users_sk(platform, user_shard(user_id), event)},
    }
    return _update(
        table,
        item_key,
        expression,
        ExpressionAttributeNames=names,
        ExpressionAttributeValues=values,
    )


def _item_key(action: Mapping[str, Any]) -> tuple[str, str]:
    (body,) = action.values()
    key = body["Item"] if "Item" in body else body["Key"]
    return key["pk"]["S"], key["sk"]["S"]


def after_failed_conditions(
    steps: Sequence[Step], tx: Transaction, failed: Iterable[int]
) -> list[Step] | None:
    """The pending steps once the transaction's failed conditions are taken into account:
    duplicate events keep only their visitor delete, missing sets are no longer removed,
    spilled sets are removed from with their cold items too. None when a failure means
    something changed since the reads (re-read and re-plan)."""
    pending = list(steps)
    for position in failed:
        owner, kind = tx.owners[position], tx.kinds[position]
        if owner is None or kind not in (PUT, SET_REMOVAL, SPILLED):
            return None
        step = pending[owner]
        if kind == SPILLED and step.fallback is not None:
            pending[owner] = step.fallback
            continue
        pending[owner] = step.without_put() if kind == PUT else Step((), ())
    return [step for step in pending if step.actions]
