"""User sets beyond one item: a full shard item spills its users into cold items.

A day's user set (ACTIVE#, USERS# or FIRST#) is written as `USER_SET_SHARDS` shard items, the
ones the consumer's event transactions ADD users to. An item holds at most 400 KB, so a shard
item whose users reach `HOT_SET_BYTES` *spills*: its users move to the shard's cold items
(`rollup_keys.cold_sk`, `COLD_SETS_PER_SHARD` of them, chosen by the user id) and it starts
empty again. The write path keeps touching the same 16 items per set however large the set
grows; readers read every item under the set's prefix, cold ones included. Capacity and
costs: docs/dynamodb.md.

Why nothing is lost, counted twice or brought back:

- every ADD to a shard item adds the ids' bytes to `bytes` as well (an upper bound of the
  users' bytes: a redundant ADD counts again), and the consumer's ADD is conditioned on
  `bytes < HOT_SET_BYTES`; a full item cancels the transaction, the store spills it and
  plans again;
- a spill transaction DELETEs users from the shard item and ADDs them to their cold items
  together, conditioned on the shard item's `bytes` and `ever` being as read: a concurrent
  ADD or removal makes it read again;
- every removal (erasure, a link's move, first-seen moving earlier) takes the user out of the
  shard item, counting `ever` up, no later than out of the cold item. A spill that read the
  user before the removal then fails its condition; one that committed before it put the user
  where the removal looks next.

Most sets never spill, so a removal first assumes its set has not (conditioned on the shard
item's `spilled` mark being absent, one action); only a set that has spilled costs a second
attempt, with the cold item's removal added.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from mysoulmate.analytics.ports import StorageUnavailableError
from mysoulmate.storage.dynamodb.retry import backoff_delay, cancellation_reasons, is_retryable
from mysoulmate.storage.dynamodb.rollup_keys import cold_sk

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

HOT_SET_BYTES = 300_000  # spill past this; one batch's ADD (≤ 100 ids of ≤ 260 bytes) still fits
# The shard item's byte bound, its removal count, and its mark of having spilled.
BYTES, EVER, SPILLED = "bytes", "ever", "spilled"
_COLD_ITEMS_PER_TRANSACTION = 99  # with the shard item's own update: AWS's 100 actions
_MAX_SPILL_ROUNDS = 16

SetKey = tuple[str, str]  # (pk, sk) of a shard item


def member_bytes(members: Iterable[str]) -> int:
    """What the ids weigh in a string set (DynamoDB counts UTF-8 bytes)."""
    return sum(len(member.encode()) for member in members)


# -- the expressions every writer of a set uses -------------------------------------------


def room_condition() -> tuple[str, dict[str, Any]]:
    """The consumer's condition on an ADD to a shard item: it is not full."""
    return (
        f"attribute_not_exists(#users) OR #{BYTES} < :cap",
        {":cap": {"N": str(HOT_SET_BYTES)}},
    )


def removals(
    table: str, pk: str, hot_sk: str, users: Iterable[str], *, spilled: bool, existing: bool
) -> list[Any]:
    """Update actions taking ``users`` out of a set: its shard item first (counting `ever`
    up), then, if the set has ``spilled``, each cold item that may hold them. Otherwise the
    shard item's removal is conditioned on it never having spilled: a failure means "try
    again with ``spilled``". ``existing`` also conditions the shard item's removal on the
    item existing, rather than creating a key-only item for a set that does not exist."""
    members = sorted(set(users))
    names = {"#users": "users", f"#{EVER}": EVER}
    conditions = ["attribute_exists(pk)"] if existing else []
    if not spilled:
        conditions.append(f"attribute_not_exists(#{SPILLED})")
        names[f"#{SPILLED}"] = SPILLED
    actions = [_removal(table, pk, hot_sk, members, names, " AND ".join(conditions))]
    if spilled:
        by_item: dict[str, list[str]] = {}
        for user in members:
            by_item.setdefault(cold_sk(hot_sk, user), []).append(user)
        plain = {"#users": "users", f"#{EVER}": EVER}
        actions += [_removal(table, pk, sk, users, plain, "") for sk, users in by_item.items()]
    return actions


def _removal(
    table: str, pk: str, sk: str, members: list[str], names: dict[str, str], condition: str
) -> dict[str, Any]:
    update: dict[str, Any] = {
        "TableName": table,
        "Key": {"pk": {"S": pk}, "sk": {"S": sk}},
        "UpdateExpression": f"DELETE #users :u ADD #{EVER} :one",
        "ExpressionAttributeNames": names,
        "ExpressionAttributeValues": {":u": {"SS": members}, ":one": {"N": "1"}},
    }
    if condition:
        update["ConditionExpression"] = condition
    return {"Update": update}


# -- spilling ------------------------------------------------------------------------------


def spill_plan(table: str, key: SetKey, item: Mapping[str, Any] | None) -> list[list[Any]]:
    """The transactions that spill the shard item ``item`` (as read, consistently) if it is
    full; nothing if it is not (another consumer spilled it). Each moves the users of up to
    99 cold items, conditioned on the shard item being as the previous one left it. An item
    whose `bytes` overstated its users only has `bytes` corrected."""
    if item is None:
        return []
    members = sorted(item.get("users", {}).get("SS", []))
    read_bytes = int(item[BYTES]["N"]) if BYTES in item else None
    if read_bytes is not None and read_bytes < HOT_SET_BYTES:
        return []
    left = member_bytes(members)
    ever = item.get(EVER)
    pk, sk = key
    if left < HOT_SET_BYTES // 2:
        return [[_shard_update(table, key, read_bytes, ever, left, [])]]
    groups: dict[str, list[str]] = {}
    for user in members:
        groups.setdefault(cold_sk(sk, user), []).append(user)
    kept = {name: item[name] for name in ("platform", "event") if name in item}
    plan, expected = [], read_bytes
    cold = sorted(groups.items())
    for start in range(0, len(cold), _COLD_ITEMS_PER_TRANSACTION):
        part = cold[start : start + _COLD_ITEMS_PER_TRANSACTION]
        moved = [user for _, users in part for user in users]
        left -= member_bytes(moved)
        actions = [_shard_update(table, key, expected, ever, left, moved)]
        actions += [_cold_addition(table, pk, cold_key, users, kept) for cold_key, users in part]
        plan.append(actions)
        expected = left
    return plan


def _shard_update(
    table: str,
    key: SetKey,
    expected: int | None,
    ever: Mapping[str, str] | None,
    left: int,
    moved: list[str],
) -> dict[str, Any]:
    names = {f"#{BYTES}": BYTES, f"#{EVER}": EVER}
    values: dict[str, Any] = {":left": {"N": str(left)}}
    conditions = []
    if expected is None:
        conditions.append(f"attribute_not_exists(#{BYTES})")
    else:
        conditions.append(f"#{BYTES} = :expected")
        values[":expected"] = {"N": str(expected)}
    if ever is None:
        conditions.append(f"attribute_not_exists(#{EVER})")
    else:
        conditions.append(f"#{EVER} = :ever")
        values[":ever"] = dict(ever)
    expression = f"SET #{BYTES} = :left"
    if moved:
        # The mark comes with the first users moved: from then on removals look in cold items.
        expression += f", #{SPILLED} = :one DELETE #users :moved"
        names |= {"#users": "users", f"#{SPILLED}": SPILLED}
        values |= {":moved": {"SS": moved}, ":one": {"N": "1"}}
    return {
        "Update": {
            "TableName": table,
            "Key": {"pk": {"S": key[0]}, "sk": {"S": key[1]}},
            "UpdateExpression": expression,
            "ConditionExpression": " AND ".join(conditions),
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }
    }


def _cold_addition(
    table: str, pk: str, sk: str, users: list[str], kept: Mapping[str, Any]
) -> dict[str, Any]:
    """Users into a cold item, with the shard item's platform and event (for the readers)."""
    names = {"#users": "users", **{f"#{name}": name for name in kept}}
    values = {":u": {"SS": users}, **{f":{name}": value for name, value in kept.items()}}
    sets = ", ".join(f"#{name} = :{name}" for name in kept)
    return {
        "Update": {
            "TableName": table,
            "Key": {"pk": {"S": pk}, "sk": {"S": sk}},
            "UpdateExpression": (f"SET {sets} " if sets else "") + "ADD #users :u",
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }
    }


def spill(
    client: DynamoDBClient,
    table: str,
    key: SetKey,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Spill the shard item ``key`` if it is full, reading it again whenever a concurrent
    writer changed it between the read and a transaction."""
    for attempt in range(_MAX_SPILL_ROUNDS):
        try:
            item = client.get_item(
                TableName=table,
                Key={"pk": {"S": key[0]}, "sk": {"S": key[1]}},
                ConsistentRead=True,
            ).get("Item")
            for actions in spill_plan(table, key, item):
                client.transact_write_items(TransactItems=actions)
            return
        except BotoCoreError as exc:
            raise StorageUnavailableError(f"dynamodb: {exc}") from exc
        except ClientError as exc:
            changed = "ConditionalCheckFailed" in cancellation_reasons(exc)
            if not (changed or is_retryable(exc)):
                raise StorageUnavailableError(f"dynamodb: {exc}") from exc
            if not changed:
                sleep(backoff_delay(attempt))
    raise StorageUnavailableError("dynamodb: a full user set item kept changing while spilled")
