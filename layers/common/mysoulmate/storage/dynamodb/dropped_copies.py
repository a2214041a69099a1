"""What a link's move does when the user already has a messageId of the visitor: the
visitor's copy is deleted, and leaves the day's event count and revenue it added when stored
(the two people are one now, so the two copies are one message). The updates ride in the
transaction of the copy's delete (`moves.Step.without_put`), so a re-run never takes twice.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import date
from typing import Any

from mysoulmate.analytics.rollups import copies_delta
from mysoulmate.storage.dynamodb.rollup_keys import count_sk, revenue_sk, rollup_pk


def uncount_copy(table: str, item: Mapping[str, Any]) -> tuple[dict[str, Any], ...]:
    """The counter updates taking a stored copy out of its day's event count and revenue."""
    if "event" not in item:
        return ()
    platform = item["platform"]["S"] if "platform" in item else None
    day = date.fromisoformat(item["ts"]["S"][:10])
    properties = json.loads(item["doc"]["S"]).get("properties") or {}
    delta = copies_delta([(day, platform, item["event"]["S"], properties)])
    updates: list[dict[str, Any]] = []
    for (day_, platform_, event), n in delta.counts.items():
        key = (rollup_pk(day_), count_sk(platform_, 0, event))
        updates.append(_counter(table, key, platform_, ("event", event), ("events", -n)))
    for (day_, platform_, currency), micros in delta.revenue.items():
        key = (rollup_pk(day_), revenue_sk(platform_, 0, currency))
        updates.append(_counter(table, key, platform_, ("currency", currency), ("micros", -micros)))
    return tuple(updates)


def _counter(
    table: str,
    key: tuple[str, str],
    platform: str,
    label: tuple[str, str],
    change: tuple[str, int],
) -> dict[str, Any]:
    """ADD to a counter item (shard 0: reads sum the shards), as ingest writes them."""
    (name, value), (counter, amount) = label, change
    return {
        "Update": {
            "TableName": table,
            "Key": {"pk": {"S": key[0]}, "sk": {"S": key[1]}},
            "UpdateExpression": f"SET #platform = :p, #{name} = :l ADD #{counter} :n",
            "ExpressionAttributeNames": {
                "#platform": "platform",
                f"#{name}": name,
                f"#{counter}": counter,
            },
            "ExpressionAttributeValues": {
                ":p": {"S": platform},
                ":l": {"S": value},
                ":n": {"N": str(amount)},
            },
        }
    }
