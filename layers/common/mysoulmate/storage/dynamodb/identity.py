"""Identity links on DynamoDB, as a mixin of DynamoEventStore: `linked_users` and
`link_anonymous` (the steps of a move and their packing are in `dynamodb.moves`).

The link is written first, on its own: a Put of LINK#<anonymousId> conditioned on not
existing (the first link wins), the user's LINKED# item, and the user's tombstone check, in
one transaction. Only then is the visitor's partition read (a consistent Query): a consumer
that stored a visitor's message without seeing the link re-checks the link afterwards, so
each such message is either read by this move or moved by the consumer's own re-link.

The move itself is re-planned from what is still stored under the visitor on every call,
so a call that failed half-way (or a concurrent one) is completed by the next. Calls for a
visitor with nothing left to move cost one BatchGetItem and one Query.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from mysoulmate.analytics.models import ANONYMOUS_PREFIX
from mysoulmate.analytics.ports import LinkResult, StorageUnavailableError
from mysoulmate.storage.dynamodb.keys import link_key, seen_key, user_pk
from mysoulmate.storage.dynamodb.reads import DynamoReads, _utc_key
from mysoulmate.storage.dynamodb.retry import (
    MAX_WRITE_ATTEMPTS,
    backoff_delay,
    cancellation_reasons,
    is_retryable,
)
from mysoulmate.storage.dynamodb.rollups import UserState, parse_state

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

    from mysoulmate.storage.dynamodb.moves import Move, SetKey

BATCH_GET_LIMIT = 100  # keys per BatchGetItem (AWS)
_FAILED = "ConditionalCheckFailed"
ItemKey = tuple[str, str]  # (pk, sk)


class DynamoIdentity(DynamoReads):
    """The identity methods of DynamoEventStore; the store sets `_table`, `_client` and
    `_sleep`."""

    _table: str
    _client: DynamoDBClient
    _sleep: Callable[[float], None]

    def linked_users(self, anonymous_ids: Collection[str]) -> dict[str, str]:
        keys = [link_key(anonymous_id) for anonymous_id in sorted(set(anonymous_ids))]
        found = self._batch_get(keys, "pk, sk, #user", {"#user": "user"})
        return {pk.removeprefix("LINK#"): item["user"]["S"] for (pk, _), item in found.items()}

    def link_anonymous(self, anonymous_id: str, user_id: str, received_at: datetime) -> LinkResult:
        visitor = ANONYMOUS_PREFIX + anonymous_id
        if user_id.startswith(ANONYMOUS_PREFIX):
            return LinkResult(None)  # a visitor is linked to a user, never to a visitor
        # `moves` only when a visitor is linked: most batches link no one, and the consumer
        # builds this store at every cold start.
        from mysoulmate.storage.dynamodb.moves import Move

        received = _utc_key(received_at)
        linked = self._link(anonymous_id, user_id, received)
        if linked is None:
            return LinkResult(None)
        target, state = linked
        moved = self._move(Move(target, visitor, received), state)
        return LinkResult(None) if moved is None else LinkResult(target, moved)

    # -- the link -------------------------------------------------------------------------

    def _link(self, anonymous_id: str, user_id: str, received: str) -> tuple[str, UserState] | None:
        """The user the anonymous id is linked to (linking it to ``user_id`` if it is not
        yet) and their SEEN state; None when that user's tombstone covers ``received``."""
        # Not at module level: see `link_anonymous` (cold start).
        from mysoulmate.storage.dynamodb.moves import link_actions

        for attempt in range(MAX_WRITE_ATTEMPTS):
            found = self._batch_get([link_key(anonymous_id), seen_key(user_id)])
            link = found.get(_pair(link_key(anonymous_id)))
            target = link["user"]["S"] if link else user_id
            if target == user_id:
                state = parse_state(found.get(_pair(seen_key(user_id)), {}))
            else:
                state = self._seen_state(target)
            if _erased(state, received):
                return None
            if link:
                return target, state
            try:
                actions = link_actions(self._table, anonymous_id, user_id, received)
                self._client.transact_write_items(TransactItems=actions)
                return target, state
            except BotoCoreError as exc:
                raise StorageUnavailableError(f"dynamodb: {exc}") from exc
            except ClientError as exc:
                reasons = cancellation_reasons(exc)
                if _FAILED in reasons:
                    continue  # linked meanwhile, or erased meanwhile: read again
                if not is_retryable(exc):
                    raise StorageUnavailableError(f"dynamodb: {exc}") from exc
                self._sleep(backoff_delay(attempt))
        raise StorageUnavailableError(f"dynamodb: linking {anonymous_id!r} kept conflicting")

    # -- the move -------------------------------------------------------------------------

    def _move(self, move: Move, state: UserState) -> int | None:
        """Move what is stored under the visitor to the user; the number of events moved,
        or None when the user was erased meanwhile. A failed condition that means the
        reads are stale (first-seen, profile version, tombstone) makes it read again."""
        # Not at module level: see `link_anonymous` (cold start).
        from mysoulmate.storage.dynamodb.moves import plan_move, read_visitor

        moved = 0
        for attempt in range(MAX_WRITE_ATTEMPTS):
            if _erased(state, move.received):
                return None
            found = read_visitor(
                self._query_all(
                    TableName=self._table,
                    KeyConditionExpression="pk = :pk",
                    ExpressionAttributeValues={":pk": {"S": user_pk(move.visitor)}},
                    ConsistentRead=True,
                )
            )
            if found.empty:
                return moved
            profile = self.get_profile(move.user_id) if found.profile is not None else None
            planned = plan_move(self._table, move, state, found, profile)
            count, done = self._commit(planned)
            moved += count
            if done:
                return moved
            if attempt:
                self._sleep(backoff_delay(attempt))
            state = self._seen_state(move.user_id)
        raise StorageUnavailableError(f"dynamodb: moving {move.visitor!r} kept conflicting")

    def _commit(self, move: Move) -> tuple[int, bool]:
        """Commit the move's steps in order: (events moved, whether every step committed)."""
        # Not at module level: see `link_anonymous` (cold start).
        from mysoulmate.storage.dynamodb.moves import after_failed_conditions, next_transaction

        added: set[SetKey] = set()
        moved = retries = 0
        steps = move.steps
        while steps:
            tx = next_transaction(self._table, move, steps, added)
            try:
                self._client.transact_write_items(TransactItems=tx.actions)  # type: ignore[arg-type]
            except BotoCoreError as exc:
                raise StorageUnavailableError(f"dynamodb: {exc}") from exc
            except ClientError as exc:
                failed = [i for i, r in enumerate(cancellation_reasons(exc)) if r == _FAILED]
                if failed:
                    pending = after_failed_conditions(steps, tx, failed)
                    if pending is None:
                        return moved, False
                    steps = pending
                    continue
                retries += 1
                if not is_retryable(exc) or retries >= MAX_WRITE_ATTEMPTS:
                    raise StorageUnavailableError(f"dynamodb: {exc}") from exc
                self._sleep(backoff_delay(retries))
                continue
            moved += sum(step.moves for step in steps[: tx.steps])
            added |= tx.sets
            steps = steps[tx.steps :]
        return moved, True

    # -- reads ----------------------------------------------------------------------------

    def _seen_state(self, user_id: str) -> UserState:
        try:
            response = self._client.get_item(
                TableName=self._table, Key=seen_key(user_id), ConsistentRead=True
            )
        except (ClientError, BotoCoreError) as exc:
            raise StorageUnavailableError(f"dynamodb: {exc}") from exc
        return parse_state(response.get("Item", {}))

    def _batch_get(
        self,
        keys: list[dict[str, Any]],
        projection: str | None = None,
        names: dict[str, str] | None = None,
    ) -> dict[ItemKey, dict[str, Any]]:
        """The items of ``keys`` that exist (consistent reads, ≤100 keys per BatchGetItem,
        unprocessed keys retried after a backoff)."""
        found: dict[ItemKey, dict[str, Any]] = {}
        for start in range(0, len(keys), BATCH_GET_LIMIT):
            request: dict[str, Any] = {
                "Keys": keys[start : start + BATCH_GET_LIMIT],
                "ConsistentRead": True,
            }
            if projection:
                request["ProjectionExpression"] = projection
                request["ExpressionAttributeNames"] = names or {}
            found.update(self._batch_get_all(request))
        return found

    def _batch_get_all(self, request: dict[str, Any]) -> dict[ItemKey, dict[str, Any]]:
        found: dict[ItemKey, dict[str, Any]] = {}
        pending: Any = {self._table: request}
        for attempt in range(MAX_WRITE_ATTEMPTS):
            try:
                response = self._client.batch_get_item(RequestItems=pending)
            except (ClientError, BotoCoreError) as exc:
                raise StorageUnavailableError(f"dynamodb: {exc}") from exc
            for item in response.get("Responses", {}).get(self._table, []):
                found[_pair(item)] = item
            pending = response.get("UnprocessedKeys") or {}
            if not pending:
                return found
            self._sleep(backoff_delay(attempt))
        raise StorageUnavailableError("dynamodb: reads still unprocessed after retries")


def _pair(key: dict[str, Any]) -> ItemKey:
    return key["pk"]["S"], key["sk"]["S"]


def _erased(state: UserState, received: str) -> bool:
    """The same rule as NOT_ERASED: an erasure at or after the receipt covers it."""
    return state.erased is not None and received <= state.erased
