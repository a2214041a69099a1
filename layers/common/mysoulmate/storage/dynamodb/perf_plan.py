"""Perf telemetry items of the DynamoDB adapter and how messages become transactions; pure
code (no I/O), like `rollups`. Key layout: docs/dynamodb.md (perf telemetry).

A cell's counters are one item, pk ``PERF#<day>#<shard>``, sk
``<metric>#<name>#<platform>#<app version>#<device class>``, one number attribute per
bucket (``b<bucket>``) only ever raised with ``ADD``. The shard is a stable hash of the sk
(`PERF_SHARDS` partitions per day), so a day's writes spread and a reader knows where to look.

A message is counted by one transaction: a Put of its ledger item in the person's partition
(``USER#<id>``, sk ``PERF#<messageId>``, `attribute_not_exists`), the tombstone check
`insert_events` uses, and the ADDs. A message whose counters need more than one transaction
holds (over 98 items, or a cell with more than `MAX_BUCKETS_PER_UPDATE` buckets, kept under
DynamoDB's 4 KB expression limit) is cut into parts in a fixed way, each with a ledger item of
its own (``PERF<part>#<messageId>``): every part is then counted exactly once, whichever
delivery commits it. Several messages share a transaction when their actions fit in 100.
"""

from __future__ import annotations

import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from mysoulmate.analytics.models import QueuedMessage
from mysoulmate.analytics.perf_sketch import PerfCell, PerfDelta, PerfRow, delta_rows
from mysoulmate.analytics.ports import MessageKey
from mysoulmate.storage.dynamodb.keys import RECEIVED, not_erased_check, receipt_key, user_pk
from mysoulmate.storage.dynamodb.rollup_keys import UserState
from mysoulmate.storage.dynamodb.rollups import TRANSACT_LIMIT

PERF_SHARDS = 4
PERF_PK_PREFIX = "PERF#"
LEDGER_PREFIX = "PERF#"
EXPIRES = "expiresAt"  # the table's TTL attribute
# Buckets one ADD names: DynamoDB caps an expression at 4 KB and 300 operators, and moto's
# recursive parser gives up somewhere under 200 clauses; 100 ("#b<i> :v<i>, " each, about
# 1.1 KB) stay well inside all three. A cell's buckets beyond that go to more updates.
MAX_BUCKETS_PER_UPDATE = 100
# Counter updates of one part: the rest of a transaction is its ledger Put and one check.
# (These two constants decide how a message is cut into parts: change them only knowing that a
# message cut short by a failure and redelivered across that deploy may count a part twice.)
PART_UPDATES = TRANSACT_LIMIT - 2
BUCKET_PREFIX = "b"

ItemKey = tuple[str, str]  # (pk, sk)


def _escaped(part: str) -> str:
    """Names and versions never hold '#' once validated; escape anyway so sort keys stay
    unambiguous whatever a platform string holds."""
    return part.replace("%", "%25").replace("#", "%23")


def _unescaped(part: str) -> str:
    return part.replace("%23", "#").replace("%25", "%")


def cell_prefix(metric: str, name: str | None) -> str:
    """The sort-key prefix of a metric's cells, or of one name's."""
    prefix = _escaped(metric) + "#"
    return prefix if name is None else f"{prefix}{_escaped(name)}#"


def cell_sk(cell: PerfCell) -> str:
    parts = (cell.metric, cell.name, cell.platform, cell.app_version, cell.device_class)
    return "#".join(_escaped(part) for part in parts)


def perf_pk(day: date, shard: int) -> str:
    return f"{PERF_PK_PREFIX}{day.isoformat()}#{shard}"


def cell_key(cell: PerfCell) -> ItemKey:
    sk = cell_sk(cell)
    return perf_pk(cell.day, zlib.crc32(sk.encode()) % PERF_SHARDS), sk


def ledger_sk(message_id: str, part: int) -> str:
    """``PERF#<id>`` for a message's first part (nearly always its only one), else
    ``PERF<part>#<id>``: the digits before the first '#' keep every key distinct."""
    return f"{LEDGER_PREFIX}{message_id}" if part == 0 else f"PERF{part}#{message_id}"


def item_rows(day: date, item: dict[str, Any]) -> list[PerfRow]:
    """The counters of one stored cell item."""
    metric, name, platform, version, device = (_unescaped(p) for p in item["sk"]["S"].split("#"))
    cell = PerfCell(day, metric, name, version, platform, device)
    return [
        PerfRow(cell, int(attribute[1:]), int(value["N"]))
        for attribute, value in item.items()
        if attribute.startswith(BUCKET_PREFIX) and "N" in value
    ]


# -- messages as parts ---------------------------------------------------------------------

Update = tuple[ItemKey, dict[int, int]]  # an item and what to add to which of its buckets


@dataclass(frozen=True)
class PerfPart:
    """What one message adds, or a fixed share of it, with its own ledger item."""

    message: QueuedMessage
    part: int
    updates: tuple[Update, ...]

    @property
    def ledger_key(self) -> ItemKey:
        return user_pk(self.message.userId), ledger_sk(self.message.messageId, self.part)


def message_parts(message: QueuedMessage, delta: PerfDelta) -> list[PerfPart]:
    """The message's delta (``perf_delta([message])``) cut into parts that each fit one
    transaction: the same cut for every delivery, since delta_rows' order is fixed."""
    updates: list[Update] = []
    for cell, bucket, amount in delta_rows(delta):
        key = cell_key(cell)
        if not updates or updates[-1][0] != key or len(updates[-1][1]) >= MAX_BUCKETS_PER_UPDATE:
            updates.append((key, {}))
        updates[-1][1][bucket] = amount
    parts: list[list[Update]] = [[]]
    for update in updates:
        current = parts[-1]
        if len(current) >= PART_UPDATES or (current and current[-1][0] == update[0]):
            parts.append(current := [])
        current.append(update)
    return [PerfPart(message, n, tuple(part)) for n, part in enumerate(parts)]


# -- parts as transactions -----------------------------------------------------------------


@dataclass(frozen=True)
class Role:
    """What a transaction action is, to read a cancellation's reasons by."""

    kind: str  # "ledger", "check" or "counter"
    part: PerfPart | None = None
    user_id: str | None = None


@dataclass
class PerfTransaction:
    """Parts that fit one TransactWriteItems call, counter updates of one item merged."""

    parts: list[PerfPart] = field(default_factory=list)
    receipts: dict[str, str] = field(default_factory=dict)  # user → earliest receipt key
    counters: dict[ItemKey, Counter[int]] = field(default_factory=dict)

    def actions(self) -> int:
        return len(self.parts) + len(self.receipts) + len(self.counters)

    def try_add(self, part: PerfPart) -> bool:
        added = 1 + (part.message.userId not in self.receipts)
        for key, buckets in part.updates:
            held = self.counters.get(key)
            if held is None:
                added += 1
            elif len(held.keys() | buckets.keys()) > MAX_BUCKETS_PER_UPDATE:
                return False
        if self.actions() + added > TRANSACT_LIMIT:
            return False
        self.parts.append(part)
        receipt = receipt_key(part.message)
        user = part.message.userId
        self.receipts[user] = min(receipt, self.receipts.get(user, receipt))
        for key, buckets in part.updates:
            self.counters.setdefault(key, Counter()).update(buckets)
        return True

    def build(self, table: str, expires_at: int) -> tuple[list[dict[str, Any]], list[Role]]:
        """The actions and, index for index, their roles."""
        actions: list[dict[str, Any]] = []
        roles: list[Role] = []
        for part in self.parts:
            pk, sk = part.ledger_key
            actions.append(
                {
                    "Put": {
                        "TableName": table,
                        "Item": {
                            "pk": {"S": pk},
                            "sk": {"S": sk},
                            EXPIRES: {"N": str(expires_at)},
                            RECEIVED: {"S": receipt_key(part.message)},
                        },
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                }
            )
            roles.append(Role("ledger", part=part))
        for user, received in sorted(self.receipts.items()):
            actions.append(not_erased_check(table, user, received))
            roles.append(Role("check", user_id=user))
        for (pk, sk), buckets in sorted(self.counters.items()):
            actions.append({"Update": _counter_update(table, pk, sk, buckets)})
            roles.append(Role("counter"))
        return actions, roles


def _counter_update(table: str, pk: str, sk: str, buckets: Counter[int]) -> dict[str, Any]:
    ordered = sorted(buckets.items())
    return {
        "TableName": table,
        "Key": {"pk": {"S": pk}, "sk": {"S": sk}},
        "UpdateExpression": "ADD " + ", ".join(f"#b{i} :v{i}" for i in range(len(ordered))),
        "ExpressionAttributeNames": {
            f"#b{i}": f"{BUCKET_PREFIX}{bucket}" for i, (bucket, _) in enumerate(ordered)
        },
        "ExpressionAttributeValues": {
            f":v{i}": {"N": str(amount)} for i, (_, amount) in enumerate(ordered)
        },
    }


def pack(parts: list[PerfPart]) -> tuple[PerfTransaction, list[PerfPart]]:
    """First fit: the parts (in order) that fit one transaction, and the rest."""
    transaction = PerfTransaction()
    rest: list[PerfPart] = []
    for part in parts:
        if transaction.actions() >= TRANSACT_LIMIT or not transaction.try_add(part):
            rest.append(part)
    return transaction, rest


# -- what became of the parts --------------------------------------------------------------


@dataclass
class PerfOutcome:
    """What became of each message's parts (`DynamoPerf.record_perf`)."""

    counted: set[MessageKey] = field(default_factory=set)  # a part committed by this call
    erased: set[MessageKey] = field(default_factory=set)
    failed: dict[MessageKey, str] = field(default_factory=dict)

    def fail(self, parts: Sequence[PerfPart], reason: str) -> None:
        for part in parts:
            self.failed[part.message.key] = reason

    def without_erased(self, parts: list[PerfPart], states: dict[str, UserState]) -> list[PerfPart]:
        """The parts no tombstone covers (erased at or after the message's receipt); the keys
        of the others go to ``erased``."""
        kept: list[PerfPart] = []
        for part in parts:
            tombstone = states.get(part.message.userId, UserState()).erased
            if tombstone is not None and receipt_key(part.message) <= tombstone:
                self.erased.add(part.message.key)
            else:
                kept.append(part)
        return kept
