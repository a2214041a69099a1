"""Client performance telemetry on DynamoDB: `record_perf` and `perf_rows` of
`DynamoEventStore` (the items, the transaction plan and the parts' outcome are in
`perf_plan`, imported on first use: the store is built at every cold start, perf or not).

`record_perf` reads the batch's tombstones (SEEN items) up front and drops what they cover,
then writes the messages' parts in transactions of at most 100 actions. A cancelled
transaction names why: a ledger item that exists is a part already counted (a duplicate,
dropped), a failed tombstone check an erasure that landed since the read (the user's state is
read again and what it covers is dropped); the rest is planned again. Only a committed
transaction counts, and it counts its parts' buckets exactly once. Throttling and contention
are retried with the adapter's backoff (`retry`).

The ledger items live in the person's partition with the table's TTL attribute
(`PERF_LEDGER_DAYS` ahead): an erasure, which deletes every item of that partition but SEEN
(`erasure.plan_erasure`), forgets them with the rest, and nothing that reads a user's items
looks at them (events are read through ByUserTime, which they are not in).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from mysoulmate.analytics.models import QueuedMessage
from mysoulmate.analytics.ports import PERF_LEDGER_DAYS, StorageUnavailableError, StoreResult
from mysoulmate.storage.dynamodb.retry import (
    MAX_WRITE_ATTEMPTS,
    backoff_delay,
    cancellation_reasons,
    is_retryable,
)
from mysoulmate.storage.dynamodb.rollup_keys import UserState, days_between

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

    from mysoulmate.analytics.perf_sketch import PerfRow
    from mysoulmate.storage.dynamodb.perf_plan import PerfOutcome, PerfPart, PerfTransaction

READ_THREADS = 8  # a summary's Queries (4 per day) run this many at a time


class DynamoPerf:
    """`PerfStore` for `DynamoEventStore`, which supplies the table, client, sleep, the
    SEEN-item reads and the paginated Query."""

    _table: str
    _client: DynamoDBClient
    _sleep: Callable[[float], None]

    if TYPE_CHECKING:

        def _read_states(self, users: set[str]) -> dict[str, UserState]: ...
        def _query_all(self, **query: Any) -> Iterator[dict[str, Any]]: ...

    def record_perf(self, messages: Sequence[QueuedMessage]) -> StoreResult:
        # Imported on the first perf message: every cold start that builds the store (the
        # analytics API, the consumer) would otherwise load the plan, the sketches, ddsketch.
        from mysoulmate.storage.dynamodb.perf_plan import PerfOutcome, message_parts, pack
        from mysoulmate.storage.perf_batch import all_failed, perf_batch, perf_result

        batch = perf_batch(messages, "dynamodb")
        outcome = PerfOutcome(failed=dict(batch.failed))
        if not batch.messages:
            return perf_result(messages, (), (), outcome.failed)
        try:
            states = self._read_states({m.userId for m in batch.messages.values()})
        except StorageUnavailableError as exc:
            return all_failed(messages, str(exc))
        pending = [
            part
            for key, message in batch.messages.items()
            for part in message_parts(message, batch.deltas[key])
        ]
        expires_at = int(time.time()) + PERF_LEDGER_DAYS * 86400
        while pending:
            pending = outcome.without_erased(pending, states)
            if not pending:
                break
            transaction, pending = pack(pending)
            pending = self._commit_perf(transaction, states, expires_at, outcome) + pending
        new_keys = outcome.counted - outcome.erased - outcome.failed.keys()
        return perf_result(messages, new_keys, outcome.erased, outcome.failed)

    def _commit_perf(
        self,
        transaction: PerfTransaction,
        states: dict[str, UserState],
        expires_at: int,
        outcome: PerfOutcome,
    ) -> list[PerfPart]:
        """Commit one transaction (retrying contention); after a cancellation that rules
        some parts out, return the others to be planned again."""
        parts = transaction.parts
        for attempt in range(MAX_WRITE_ATTEMPTS):
            actions, roles = transaction.build(self._table, expires_at)
            try:
                self._client.transact_write_items(TransactItems=actions)  # type: ignore[arg-type]
            except BotoCoreError as exc:
                # Outcome unknown: a redelivery finds committed parts' ledger items.
                outcome.fail(parts, f"dynamodb: {exc}")
                return []
            except ClientError as exc:
                reasons = cancellation_reasons(exc)
                failed = [
                    roles[i]
                    for i, reason in enumerate(reasons[: len(roles)])
                    if reason == "ConditionalCheckFailed"
                ]
                if failed:
                    counted_before = {id(r.part) for r in failed if r.kind == "ledger"}
                    stale = {r.user_id for r in failed if r.kind == "check" and r.user_id}
                    if stale:
                        try:
                            states.update(self._read_states(stale))
                        except StorageUnavailableError as read_error:
                            outcome.fail(parts, str(read_error))
                            return []
                    rest = [p for p in parts if id(p) not in counted_before]
                    rest = outcome.without_erased(rest, states)
                    if len(rest) == len(parts):  # nothing ruled out: not a cancellation we know
                        outcome.fail(parts, f"dynamodb: {exc}")
                        return []
                    return rest  # progress, not contention: no backoff
                if not is_retryable(exc):
                    outcome.fail(parts, f"dynamodb: {exc}")
                    return []
                if attempt + 1 < MAX_WRITE_ATTEMPTS:
                    self._sleep(backoff_delay(attempt))
                continue
            outcome.counted.update(part.message.key for part in parts)
            return []
        outcome.fail(parts, "dynamodb: still conflicting or throttled after retries")
        return []

    def perf_rows(self, metric: str, start: date, end: date, name: str | None) -> list[PerfRow]:
        """One Query per day and shard (``begins_with`` the metric's or name's sort-key
        prefix), paginated, a few at a time."""
        # Imported on the first summary read: not at cold start (the consumer never reads).
        from mysoulmate.storage.dynamodb.perf_plan import (
            PERF_SHARDS,
            cell_prefix,
            item_rows,
            perf_pk,
        )

        prefix = cell_prefix(metric, name)
        wanted = [(day, shard) for day in days_between(start, end) for shard in range(PERF_SHARDS)]

        def read(day_shard: tuple[date, int]) -> list[PerfRow]:
            day, shard = day_shard
            rows: list[PerfRow] = []
            for item in self._query_all(
                TableName=self._table,
                KeyConditionExpression="pk = :pk AND begins_with(sk, :prefix)",
                ExpressionAttributeValues={
                    ":pk": {"S": perf_pk(day, shard)},
                    ":prefix": {"S": prefix},
                },
            ):
                rows.extend(item_rows(day, item))
            return rows

        if len(wanted) <= PERF_SHARDS:
            return [row for day_shard in wanted for row in read(day_shard)]
        with ThreadPoolExecutor(max_workers=READ_THREADS) as pool:
            return [row for rows in pool.map(read, wanted) for row in rows]
