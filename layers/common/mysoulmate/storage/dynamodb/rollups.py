"""Rollup items of the DynamoDB adapter and how a batch of events becomes transactions.

Pure code (no I/O) so the packing rules can be reasoned about and tested on their own. Each
`TransactWriteItems` call stores some events, each with `attribute_not_exists(pk)`, together
with exactly the rollup updates those events imply (`analytics.rollups.rollup_delta`): if any
event already exists the whole transaction is cancelled, the store drops that event and
rebuilds, so a counter is only ever incremented in the transaction that created its events.
Key layout and the exactness argument: docs/dynamodb.md.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any, NamedTuple

from mysoulmate.analytics.models import QueuedMessage, SessionMark
from mysoulmate.analytics.ports import ANY_EVENT, time_key
from mysoulmate.analytics.rollups import (
    platform_of,
    revenue_of,
    rollup_delta,
    session_counter_keys,
)
from mysoulmate.storage.dynamodb.keys import (
    MARK_ID,
    MARK_LAST,
    MARK_START,
    NOT_ERASED,
    SEEN_SK,
    not_erased_check,
    receipt_key,
)
from mysoulmate.storage.dynamodb.rollup_keys import USER_SET_SHARDS as USER_SET_SHARDS
from mysoulmate.storage.dynamodb.rollup_keys import UserState as UserState
from mysoulmate.storage.dynamodb.rollup_keys import count_sk as count_sk
from mysoulmate.storage.dynamodb.rollup_keys import days_between as days_between
from mysoulmate.storage.dynamodb.rollup_keys import first_sk as first_sk
from mysoulmate.storage.dynamodb.rollup_keys import membership_key as membership_key
from mysoulmate.storage.dynamodb.rollup_keys import parse_state as parse_state
from mysoulmate.storage.dynamodb.rollup_keys import revenue_sk as revenue_sk
from mysoulmate.storage.dynamodb.rollup_keys import rollup_pk as rollup_pk
from mysoulmate.storage.dynamodb.rollup_keys import user_cold_set
from mysoulmate.storage.dynamodb.rollup_keys import user_shard as user_shard
from mysoulmate.storage.dynamodb.rollup_keys import users_sk as users_sk
from mysoulmate.storage.dynamodb.set_spill import BYTES, member_bytes, removals, room_condition

TRANSACT_LIMIT = 100  # actions per TransactWriteItems (AWS); moto accepts more
TRANSACT_BYTES_BUDGET = 3_500_000  # AWS caps a transaction at 4 MB of items; keep headroom
ROLLUP_ACTION_BYTES = 2_048  # what one rollup update is budgeted at (keys, names, user ids)
COUNTER_SHARDS = 4  # counter items per (day, platform, event): spreads transaction conflicts


# -- planning one transaction ----------------------------------------------------------------


def is_rollup_event(message: QueuedMessage) -> bool:
    return message.event is not None


@dataclass
class _UserContribution:
    """The rollup items one user's events in a chunk touch (besides counters)."""

    set_items: set[tuple[date, str, int, str]]
    first_add: tuple[date, int] | None
    first_del: tuple[date, int] | None
    item_update: bool
    first_del_cold: tuple[date, int, int] | None = None  # the cold item it also leaves


def _contribution(
    user_id: str, days: Mapping[date, set[tuple[str, str]]], state: UserState
) -> _UserContribution:
    shard = user_shard(user_id)
    set_items: set[tuple[date, str, int, str]] = set()
    for day, memberships in days.items():
        for platform, event in memberships:
            marked = day == state.day and membership_key(platform, event) in state.keys
            if not marked:
                set_items.add((day, platform, shard, event))
    first_add = first_del = first_del_cold = None
    chunk_first = min(days)
    if state.first is None or chunk_first < state.first:
        first_add = (chunk_first, shard)
        if state.first is not None:
            first_del = (state.first, shard)
            first_del_cold = (state.first, shard, user_cold_set(user_id))
    latest = max(days)
    marker_moves = state.day is None or latest > state.day
    marker_grows = latest == state.day and any(
        membership_key(p, e) not in state.keys for p, e in days[latest]
    )
    return _UserContribution(
        set_items,
        first_add,
        first_del,
        first_add is not None or marker_moves or marker_grows,
        first_del_cold,
    )


def _memberships(message: QueuedMessage) -> set[tuple[str, str]]:
    assert message.event is not None
    platform = platform_of(message)
    return {(platform, message.event), (platform, ANY_EVENT)}


def event_item_bytes(item: Mapping[str, Any]) -> int:
    """DynamoDB's item size: attribute names plus values (UTF-8), as AWS counts it."""
    size = 0
    for name, value in item.items():
        size += len(name.encode())
        for text in value.values():
            size += len(str(text).encode())
    return size


@dataclass
class ChunkPlan:
    """Events that fit in one transaction together with every rollup update they imply.

    ``try_add`` keeps a running count of distinct items, so packing a batch is linear; the
    transaction is then built from the final chunk by `build_transaction`.
    """

    states: Mapping[str, UserState]
    events: list[QueuedMessage] = field(default_factory=list)
    bytes: int = 0
    _counters: Counter[tuple[Any, ...]] = field(default_factory=Counter)
    _days: dict[str, dict[date, set[tuple[str, str]]]] = field(default_factory=dict)
    _contribs: dict[str, _UserContribution] = field(default_factory=dict)
    _set_items: Counter[tuple[date, str, int, str]] = field(default_factory=Counter)
    _first_add: Counter[tuple[date, int]] = field(default_factory=Counter)
    _first_del: Counter[tuple[date, int]] = field(default_factory=Counter)
    _first_del_cold: Counter[tuple[date, int, int]] = field(default_factory=Counter)
    # Every user of the chunk costs one action on their SEEN item (update or tombstone check).
    _users: Counter[str] = field(default_factory=Counter)

    def actions(self) -> int:
        return (
            len(self.events)
            + len(self._counters)
            + len(self._set_items)
            + len(self._first_add)
            + len(self._first_del)
            + len(self._first_del_cold)
            + len(self._users)
        )

    def _fits(self) -> bool:
        rollups = self.actions() - len(self.events)
        return (
            self.actions() <= TRANSACT_LIMIT
            and self.bytes + rollups * ROLLUP_ACTION_BYTES <= TRANSACT_BYTES_BUDGET
            # One update cannot both ADD to and DELETE from a set: keep such moves apart.
            and not (self._first_add.keys() & self._first_del.keys())
        )

    def _apply(self, contribution: _UserContribution | None, sign: int) -> None:
        if contribution is None:
            return
        for key in contribution.set_items:
            self._set_items[key] += sign
        if contribution.first_add:
            self._first_add[contribution.first_add] += sign
        if contribution.first_del:
            self._first_del[contribution.first_del] += sign
        if contribution.first_del_cold:
            self._first_del_cold[contribution.first_del_cold] += sign
        for counter in (self._set_items, self._first_add, self._first_del, self._first_del_cold):
            _drop_zeros(counter)

    def _counter_keys(self, message: QueuedMessage) -> list[tuple[Any, ...]]:
        if not is_rollup_event(message):
            return []
        day, platform = message.timestamp.date(), platform_of(message)
        keys: list[tuple[Any, ...]] = [("count", day, platform, message.event)]
        # Session figures are count items too (under reserved event names, on the day
        # the session started).
        keys += [("count", *key) for key in session_counter_keys(message)]
        revenue = revenue_of(message.properties)
        if revenue is not None:
            keys.append(("revenue", day, platform, revenue[0]))
        return keys

    def try_add(self, message: QueuedMessage, item_bytes: int) -> bool:
        """Add ``message`` if the transaction still fits; otherwise leave the plan as it was."""
        user = message.userId
        before_contrib = self._contribs.get(user)
        before_days = self._days.get(user)
        counter_keys = self._counter_keys(message)
        self.events.append(message)
        self.bytes += item_bytes
        self._users[user] += 1
        for key in counter_keys:
            self._counters[key] += 1
        if is_rollup_event(message):
            days = {d: set(m) for d, m in (before_days or {}).items()}
            days.setdefault(message.timestamp.date(), set()).update(_memberships(message))
            after = _contribution(user, days, self.states.get(user, UserState()))
            self._apply(before_contrib, -1)
            self._apply(after, +1)
            self._days[user], self._contribs[user] = days, after
        if self._fits() or len(self.events) == 1:
            return True
        self.events.pop()
        self.bytes -= item_bytes
        self._users[user] -= 1
        _drop_zeros(self._users)
        for key in counter_keys:
            self._counters[key] -= 1
            if not self._counters[key]:
                del self._counters[key]
        if is_rollup_event(message):
            self._apply(self._contribs[user], -1)
            self._apply(before_contrib, +1)
            if before_days is None:
                del self._days[user], self._contribs[user]
            else:
                self._days[user] = before_days
                self._contribs[user] = before_contrib  # type: ignore[assignment]
        return False

    def is_full(self) -> bool:
        return self.actions() >= TRANSACT_LIMIT


def _drop_zeros(counter: Counter[Any]) -> None:
    for key in [k for k, n in counter.items() if n <= 0]:
        del counter[key]


class ActionRole(NamedTuple):
    """Why an action is in a transaction, to act on its CancellationReason."""

    # "event", "seen" (first-seen or tombstone condition), "set" (a full shard item),
    # "spilled" (a FIRST# set that has spilled) or "rollup"
    kind: str
    message: QueuedMessage | None = None
    user_id: str | None = None
    key: tuple[str, str] | None = None  # a "set" action's shard item: full when it fails


@dataclass
class Transaction:
    actions: list[dict[str, Any]]
    roles: list[ActionRole]
    new_states: dict[str, UserState]


def build_transaction(
    table: str,
    events: list[tuple[QueuedMessage, dict[str, Any]]],
    states: Mapping[str, UserState],
    *,
    counter_shard: int | None = None,
    spilled_sets: frozenset[tuple[str, str]] | set[tuple[str, str]] = frozenset(),
) -> Transaction:
    """The actions storing ``events`` (message, item) and the rollups of exactly them, and
    each user's SEEN state once it commits."""
    shard = random.randrange(COUNTER_SHARDS) if counter_shard is None else counter_shard
    actions: list[dict[str, Any]] = []
    roles: list[ActionRole] = []
    for message, item in events:
        actions.append(
            {
                "Put": {
                    "TableName": table,
                    "Item": item,
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            }
        )
        roles.append(ActionRole("event", message=message))

    def update(pk: str, sk: str, expression: str, values: dict[str, Any], **extra: Any) -> None:
        used = set(_NAME_REF.findall(expression + " " + extra.get("cond", "")))
        names = {f"#{n}": n for n in sorted(used)}
        action: dict[str, Any] = {
            "TableName": table,
            "Key": {"pk": {"S": pk}, "sk": {"S": sk}},
            "UpdateExpression": expression,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }
        if extra.get("cond"):
            action["ConditionExpression"] = extra["cond"]
        actions.append({"Update": action})
        role = extra.get("role", "rollup")
        key = (pk, sk) if role == "set" else None
        roles.append(ActionRole(role, user_id=extra.get("user"), key=key))

    room, room_values = room_condition()

    def add_users(pk: str, sk: str, members: set[str], sets: str, values: dict[str, Any]) -> None:
        """An ADD to a shard item, with the ids' bytes, refused when the item is full."""
        values |= {":u": {"SS": sorted(members)}, ":b": {"N": str(member_bytes(members))}}
        expression = f"{sets} ADD #users :u, #{BYTES} :b".strip()
        update(pk, sk, expression, values | room_values, cond=room, role="set")

    rollup_messages = [m for m, _ in events if is_rollup_event(m)]
    delta = rollup_delta(rollup_messages)
    for (day, platform, event), n in sorted(delta.counts.items()):
        update(
            rollup_pk(day),
            count_sk(platform, shard, event),
            "SET #platform = :p, #event = :e ADD #events :n",
            {":p": {"S": platform}, ":e": {"S": event}, ":n": {"N": str(n)}},
        )
    for (day, platform, currency), micros in sorted(delta.revenue.items()):
        update(
            rollup_pk(day),
            revenue_sk(platform, shard, currency),
            "SET #platform = :p, #currency = :c ADD #micros :m",
            {":p": {"S": platform}, ":c": {"S": currency}, ":m": {"N": str(micros)}},
        )

    days_by_user: dict[str, dict[date, set[tuple[str, str]]]] = {}
    for message in rollup_messages:
        days = days_by_user.setdefault(message.userId, {})
        days.setdefault(message.timestamp.date(), set()).update(_memberships(message))
    set_members: dict[tuple[date, str, int, str], set[str]] = {}
    first_add: dict[tuple[date, int], set[str]] = {}
    first_del: dict[tuple[date, int], set[str]] = {}
    new_states: dict[str, UserState] = {}
    received: dict[str, str] = {}  # each user's earliest receipt in this transaction
    for message, _ in events:
        receipt = receipt_key(message)
        received[message.userId] = min(receipt, received.get(message.userId, receipt))

    def check_not_erased(user: str) -> None:
        actions.append(not_erased_check(table, user, received[user]))
        roles.append(ActionRole("seen", user_id=user))

    for user in sorted(received.keys() - days_by_user.keys()):
        check_not_erased(user)
    for user, days in sorted(days_by_user.items()):
        state = states.get(user, UserState())
        contribution = _contribution(user, days, state)
        for key in contribution.set_items:
            set_members.setdefault(key, set()).add(user)
        if contribution.first_add:
            first_add.setdefault(contribution.first_add, set()).add(user)
        if contribution.first_del:
            first_del.setdefault(contribution.first_del, set()).add(user)
        # The user's session mark rides on the same SEEN action: an Update instead of the
        # tombstone check when the mark moves, so the action count does not grow.
        mark = newer_mark(state, delta.session_marks.get(user))
        if not contribution.item_update and mark is None:
            check_not_erased(user)
            continue
        new_state, expression, values, conds = _seen_update(
            state, days, delta.first_seen[user], mark
        )
        new_states[user] = new_state
        cond = " AND ".join([*(f"({c})" for c in conds), NOT_ERASED])
        values[":received"] = {"S": received[user]}
        update(f"USER#{user}", SEEN_SK, expression, values, cond=cond, role="seen", user=user)
    for (day, platform, user_shard_, event), members in sorted(set_members.items()):
        attributes: dict[str, Any] = {":p": {"S": platform}}
        sets = "SET #platform = :p"
        if event != ANY_EVENT:
            sets += ", #event = :e"
            attributes[":e"] = {"S": event}
        sk = users_sk(platform, user_shard_, event)
        add_users(rollup_pk(day), sk, members, sets, attributes)
    for (day, user_shard_), members in sorted(first_add.items()):
        add_users(rollup_pk(day), first_sk(user_shard_), members, "", {})
    for (day, user_shard_), members in sorted(first_del.items()):
        # Out of the shard item; out of the cold items too once the set has spilled (the
        # guess that it has not fails the transaction, and the store plans again).
        first_key = (rollup_pk(day), first_sk(user_shard_))
        spilled = first_key in spilled_sets
        for index, action in enumerate(
            removals(table, *first_key, members, spilled=spilled, existing=False)
        ):
            actions.append(action)
            guess = index == 0 and not spilled
            roles.append(ActionRole("spilled", key=first_key) if guess else ActionRole("rollup"))
    if len(actions) > TRANSACT_LIMIT or first_add.keys() & first_del.keys():
        # ChunkPlan guarantees neither; sending it would only earn a ValidationException.
        raise RuntimeError(f"transaction plan broke its limits ({len(actions)} actions)")
    return Transaction(actions, roles, new_states)


_NAME_REF = re.compile(r"#(\w+)")  # every attribute goes through a name: many are reserved


def newer_mark(state: UserState, mark: SessionMark | None) -> SessionMark | None:
    """``mark`` when it replaces the stored one (its last event is at least as late)."""
    if mark is None or state.mark is None:
        return mark
    return mark if time_key(mark.last) >= time_key(state.mark.last) else None


def _seen_update(
    state: UserState,
    days: Mapping[date, set[tuple[str, str]]],
    chunk_first: date,
    mark: SessionMark | None = None,
) -> tuple[UserState, str, dict[str, Any], list[str]]:
    """The SEEN item's update, with its conditions apart (the caller parenthesizes each:
    DynamoDB rejects redundant parentheses). First-seen moves earlier under a condition on
    the value read (a concurrent mover cancels us and we re-read); membership markers need
    no condition, since a lost marker only costs a redundant (idempotent) set ADD later; the
    session mark (``mark``, already known to be newer than the state's) is set only over an
    older or no stored one, so a concurrent later mark cancels us and we re-read."""
    sets: list[str] = []
    adds: list[str] = []
    values: dict[str, Any] = {}
    conds: list[str] = []
    first = state.first
    if state.first is None or chunk_first < state.first:
        sets.append("#first = :f")
        values[":f"] = {"S": chunk_first.isoformat()}
        if state.first is None:
            conds.append("attribute_not_exists(#first)")
        else:
            conds.append("#first = :old")
            values[":old"] = {"S": state.first.isoformat()}
        first = chunk_first
    latest = max(days)
    keys = {membership_key(p, e) for p, e in days[latest]}
    marker_day, marker_keys = state.day, state.keys
    if state.day is None or latest > state.day:
        sets += ["#day = :d", "#keys = :k"]
        values[":d"] = {"S": latest.isoformat()}
        values[":k"] = {"SS": sorted(keys)}
        marker_day, marker_keys = latest, frozenset(keys)
    elif latest == state.day and keys - state.keys:
        adds.append("#keys :k")
        values[":k"] = {"SS": sorted(keys - state.keys)}
        marker_keys = state.keys | keys
    if mark is not None:
        sets += [f"#{MARK_ID} = :sid", f"#{MARK_START} = :sstart", f"#{MARK_LAST} = :slast"]
        values[":sid"] = {"S": mark.session_id}
        values[":sstart"] = {"S": time_key(mark.start)}
        values[":slast"] = {"S": time_key(mark.last)}
        conds.append(f"attribute_not_exists(#{MARK_LAST}) OR #{MARK_LAST} <= :slast")
    expression = " ".join(part for part in (_clause("SET", sets), _clause("ADD", adds)) if part)
    new_state = UserState(first, marker_day, marker_keys, state.erased, mark or state.mark)
    return new_state, expression, values, conds


def _clause(verb: str, parts: list[str]) -> str:
    return f"{verb} {', '.join(parts)}" if parts else ""


def pack_order(message: QueuedMessage) -> tuple[Any, ...]:
    """Events sharing rollup items sit next to each other, and a user's earliest events
    come first (so first-seen rarely moves twice in one batch)."""
    return (
        message.timestamp.date(),
        platform_of(message),
        message.event or "",
        user_shard(message.userId),
        message.userId,
    )
