"""DynamoDB user sets of 10 million users per (day, platform, event) (issue 18 item 4).

1. **Fill, against moto.** One day's any-event set on one platform gets N distinct UUID
   user ids (default 1M, `--quick` 200k) through the consumer's own write rules for sets:
   an `ADD` of the ids to their shard item (`users_sk`), conditioned as the consumer's
   transaction conditions it (`set_spill.room_condition`), and a refused `ADD` makes room
   with `set_spill.spill` before it is sent again, as `DynamoEventStore` does. The consumer
   adds at most a hundred ids per item and transaction; here 1,000 at a time, so that the
   set fills in minutes (item sizes are checked after, with that larger step included).
   10M through moto would take most of an hour (each ADD re-measures the whole item), so
   the fill stops at 1M and step 3 places the 10M.
   moto backs the whole table up before every transaction to undo a cancelled one; no
   transaction of this run is cancelled (the run stops if one is), so the copy is skipped.
2. **Checked**: the set read back through `DynamoEventStore.rollup_users` holds exactly the
   N users; every item of the set is under DynamoDB's 400 KB (our count of the item size:
   attribute names and values, UTF-8); calls per spill and spills per million users.
3. **Where 10M users land.** Once spilled, a user is in one cold item, a function of the
   id alone (`rollup_keys.cold_sk`), and a shard item never holds more than
   `HOT_SET_BYTES` plus one ADD (its condition). So the bytes every cold item would hold
   with 10M users are computed exactly, without writing them: for 10M UUIDs (36 bytes) and
   for 10M ids of 255 bytes, the API's longest.

Goal (issue 18): a set holds ≥ 10M users; write cost per 1,000 events within the consumer's
budget (that is `python -m bench consumer`: spills are not part of a 1,000-event run, so
their amortized calls per 1,000 new set members are printed here).
"""

from __future__ import annotations

import random
import time
import uuid
import zlib
from collections import Counter
from datetime import date
from typing import Any

from bench._common import print_table, standalone_main

TARGET_USERS = 10_000_000
FILL_USERS = 1_000_000
ADD_STEP = 1_000
ITEM_LIMIT = 400 * 1024
DAY = date(2026, 1, 31)


def _item_bytes(item: dict[str, Any]) -> int:
    size = 0
    for name, value in item.items():
        size += len(name.encode())
        for kind, content in value.items():
            if kind == "SS":
                size += sum(len(member.encode()) for member in content)
            else:
                size += len(str(content).encode())
    return size


def _no_rollback_copy() -> None:
    """moto deep-copies every table before a transaction (to undo a cancelled one): with
    millions of ids stored that copy is the whole run. Nothing here is cancelled."""
    import moto.dynamodb.models as moto_dynamodb

    moto_dynamodb.copy = type(
        "NoCopy", (), {"deepcopy": staticmethod(lambda value, memo=None: value)}
    )  # type: ignore[attr-defined]


def _fill(client: Any, table: str, users: int) -> dict[str, Any]:
    from botocore.exceptions import ClientError
    from mysoulmate.storage.dynamodb import set_spill
    from mysoulmate.storage.dynamodb.rollup_keys import (
        USER_SET_SHARDS,
        rollup_pk,
        user_shard,
        users_sk,
    )

    calls: Counter[str] = Counter()
    client.meta.events.register(
        "provide-client-params.dynamodb", lambda model, **_: calls.update([model.name])
    )
    rng = random.Random(18)
    pending: dict[int, list[str]] = {shard: [] for shard in range(USER_SET_SHARDS)}
    condition, cap = set_spill.room_condition()
    spills = refused = 0

    def add(shard: int, members: list[str]) -> None:
        nonlocal spills, refused
        key = (rollup_pk(DAY), users_sk("ios", shard, ""))
        for _ in range(3):
            try:
                client.update_item(
                    TableName=table,
                    Key={"pk": {"S": key[0]}, "sk": {"S": key[1]}},
                    UpdateExpression="SET #platform = :p ADD #users :u, #bytes :b",
                    ConditionExpression=condition,
                    ExpressionAttributeNames={
                        "#platform": "platform",
                        "#users": "users",
                        "#bytes": "bytes",
                    },
                    ExpressionAttributeValues={
                        ":p": {"S": "ios"},
                        ":u": {"SS": members},
                        ":b": {"N": str(set_spill.member_bytes(members))},
                        **cap,
                    },
                )
                return
            except ClientError as exc:
                if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                    raise
                refused += 1
                set_spill.spill(client, table, key)
                spills += 1
        raise RuntimeError("a shard item stayed full after spilling")

    started = time.perf_counter()
    for _ in range(users):
        user = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        batch = pending[user_shard(user)]
        batch.append(user)
        if len(batch) == ADD_STEP:
            add(user_shard(user), batch)
            batch.clear()
    for shard, batch in pending.items():
        if batch:
            add(shard, batch)
    fill_seconds = time.perf_counter() - started
    spill_calls = calls["GetItem"] + calls["TransactWriteItems"]
    return {
        "users": users,
        "fill_seconds": round(fill_seconds, 1),
        "calls": dict(calls),
        "spills": spills,
        "spill_calls": spill_calls,
        "spill_calls_per_1000_members": round(1000 * spill_calls / users, 3),
        "transactions_per_spill": round(calls["TransactWriteItems"] / max(spills, 1), 2),
    }


def _read_back(client: Any, table: str, users: int) -> dict[str, Any]:
    from mysoulmate.storage.dynamodb.store import DynamoEventStore

    store = DynamoEventStore(table, client)
    items = list(
        store._query_all(  # the store's own paginated Query
            TableName=table,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :prefix)",
            ExpressionAttributeValues={
                ":pk": {"S": f"ROLLUP#{DAY.isoformat()}"},
                ":prefix": {"S": "ACTIVE#"},
            },
        )
    )
    sizes = sorted(_item_bytes(item) for item in items)
    started = time.perf_counter()
    [row] = store.rollup_users(DAY, DAY, by_event=False)
    read_seconds = time.perf_counter() - started
    if len(row.users) != users:
        raise AssertionError(f"the set holds {len(row.users)} users, not {users}")
    return {
        "items": len(items),
        "cold_items": sum("-" in item["sk"]["S"] for item in items),
        "largest_item_bytes": sizes[-1],
        "median_item_bytes": sizes[len(sizes) // 2],
        "read_back_users": len(row.users),
        "read_seconds": round(read_seconds, 1),
        "under_limit": sizes[-1] < ITEM_LIMIT,
    }


def _placed(users: int, id_bytes: int) -> dict[str, Any]:
    """Bytes of the fullest cold item if ``users`` ids of ``id_bytes`` bytes had all been
    spilled (no writes needed: an id's cold item is a function of the id)."""
    from mysoulmate.storage.dynamodb.rollup_keys import COLD_SETS_PER_SHARD, USER_SET_SHARDS

    per_item: Counter[int] = Counter()
    rng = random.Random(id_bytes)
    cold_items = USER_SET_SHARDS * COLD_SETS_PER_SHARD
    for _ in range(users):
        if id_bytes == 36:
            user = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        else:
            user = rng.randbytes(id_bytes // 2).hex() + "x" * (id_bytes % 2)
        # user_shard and user_cold_set together: the CRC modulo 16 x 512.
        per_item[zlib.crc32(user.encode()) % cold_items] += 1
    fullest = max(per_item.values())
    item_bytes = fullest * id_bytes + 64  # ids plus keys and attribute names
    return {
        "users": users,
        "id_bytes": id_bytes,
        "cold_items": cold_items,
        "fullest_item_users": fullest,
        "mean_item_users": round(users / cold_items),
        "fullest_item_bytes": item_bytes,
        "under_limit": item_bytes < ITEM_LIMIT,
    }


def run(quick: bool) -> dict[str, Any]:
    import boto3
    from moto import mock_aws
    from mysoulmate.storage.dynamodb.store import table_schema

    users = 200_000 if quick else FILL_USERS
    with mock_aws():
        _no_rollback_copy()
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(TableName="bench-sets", **table_schema())
        fill = _fill(client, "bench-sets", users)
        layout = _read_back(client, "bench-sets", users)
    placed = [_placed(TARGET_USERS, id_bytes) for id_bytes in (36, 255)]
    print_table(
        [
            "UUID ids",
            "users",
            "items",
            "cold",
            "largest item",
            "spills",
            "tx/spill",
            "spill calls / 1k members",
            "fill s",
            "read s",
        ],
        [
            [
                "any-event set, one day",
                f"{users:,}",
                layout["items"],
                layout["cold_items"],
                f"{layout['largest_item_bytes']:,} B",
                fill["spills"],
                fill["transactions_per_spill"],
                fill["spill_calls_per_1000_members"],
                fill["fill_seconds"],
                layout["read_seconds"],
            ]
        ],
        title="DynamoDB user set filled through the consumer's set writes (moto)",
    )
    print_table(
        ["10M users, placed", "cold items", "users: mean / fullest", "fullest item", "< 400 KB"],
        [
            [
                f"ids of {p['id_bytes']} bytes",
                p["cold_items"],
                f"{p['mean_item_users']:,} / {p['fullest_item_users']:,}",
                f"{p['fullest_item_bytes']:,} B",
                p["under_limit"],
            ]
            for p in placed
        ],
    )
    return {
        "fill": fill,
        "layout": layout,
        "placed": placed,
        "target_users": TARGET_USERS,
        "met": layout["under_limit"] and all(p["under_limit"] for p in placed),
    }


if __name__ == "__main__":
    standalone_main("dynamo_sets", run)
