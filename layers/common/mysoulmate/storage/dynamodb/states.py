"""Reads of the per-user SEEN items (rollup state, tombstone, session mark) for
`DynamoEventStore`: the store sets `_table`, `_client`, `_sleep` and `_prefetched`."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection
from datetime import datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from mysoulmate.analytics.models import Profile, SessionMark
from mysoulmate.analytics.ports import StorageUnavailableError
from mysoulmate.storage.dynamodb.erasure import SEEN_STATE
from mysoulmate.storage.dynamodb.identity import BATCH_GET_LIMIT
from mysoulmate.storage.dynamodb.keys import ERASED, PROFILE_SK, SEEN_SK, user_pk
from mysoulmate.storage.dynamodb.retry import MAX_WRITE_ATTEMPTS, backoff_delay
from mysoulmate.storage.dynamodb.rollup_keys import UserState, parse_state

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

# The SEEN item's rollup state and session mark, as expression names (erasure clears them),
# and with the tombstone (what `parse_state` reads).
STATE_NAMES = {f"#{name}": name for name in SEEN_STATE}
SEEN_NAMES = {**STATE_NAMES, "#erased": ERASED}
# How long a `session_marks` read may stand in for the insert's own read of the same items.
PREFETCH_SECONDS = 5.0


class DynamoUserStates:
    _table: str
    _client: DynamoDBClient
    _sleep: Callable[[float], None]
    _prefetched: threading.local

    def session_marks(
        self, users: Collection[str], identified: Collection[str] = ()
    ) -> dict[str, SessionMark]:
        """Each person's current session, from their SEEN item (one BatchGetItem per 100).

        The consumer stores these people's events right after: the `insert_events` that
        follows on this thread starts from this read instead of repeating it. That is safe
        because every write it plans stays conditioned on the state it planned from (the
        tombstone, first-seen, the mark): a change in between cancels and re-reads."""
        wanted = set(users)
        states = self._read_states(wanted, set(identified)) if wanted or identified else {}
        self._prefetched.read = (frozenset(wanted), states, time.monotonic())
        return {user: state.mark for user, state in states.items() if state.mark is not None}

    def _initial_states(self, users: set[str]) -> dict[str, UserState]:
        """The SEEN items of ``users``: this thread's `session_marks` read when it covers
        them and is fresh, else a new read."""
        held = getattr(self._prefetched, "read", None)
        self._prefetched.read = None
        if held is not None:
            covered, states, read_at = held
            if users <= covered and time.monotonic() - read_at < PREFETCH_SECONDS:
                return {user: state for user, state in states.items() if user in users}
        return self._read_states(users)

    def _read_states(
        self, users: set[str], profiles_of: set[str] | None = None
    ) -> dict[str, UserState]:
        """The SEEN items of ``users`` (consistent reads, ≤100 keys per BatchGetItem), and,
        in the same calls, the profiles of ``profiles_of``: kept for this thread's
        `update_profiles` (`DynamoProfiles.prefetched_profiles`)."""
        states: dict[str, UserState] = {}
        profiles: dict[str, Profile] = {}
        keys = [{"pk": {"S": user_pk(u)}, "sk": {"S": SEEN_SK}} for u in sorted(users)]
        keys += [
            {"pk": {"S": user_pk(u)}, "sk": {"S": PROFILE_SK}} for u in sorted(profiles_of or ())
        ]
        for start in range(0, len(keys), BATCH_GET_LIMIT):
            request: Any = {
                self._table: {
                    "Keys": keys[start : start + BATCH_GET_LIMIT],
                    "ConsistentRead": True,
                    "ProjectionExpression": ", ".join(["pk", "sk", "#doc", *SEEN_NAMES]),
                    "ExpressionAttributeNames": {**SEEN_NAMES, "#doc": "doc"},
                }
            }
            for attempt in range(MAX_WRITE_ATTEMPTS):
                try:
                    response = self._client.batch_get_item(RequestItems=request)
                except (ClientError, BotoCoreError) as exc:
                    raise StorageUnavailableError(f"dynamodb: {exc}") from exc
                for item in response.get("Responses", {}).get(self._table, []):
                    user = item["pk"]["S"].removeprefix("USER#")
                    if item["sk"]["S"] == PROFILE_SK:
                        profiles[user] = Profile.model_validate_json(item["doc"]["S"])
                    else:
                        states[user] = parse_state(item)
                request = response.get("UnprocessedKeys") or {}
                if not request:
                    break
                if attempt + 1 < MAX_WRITE_ATTEMPTS:
                    self._sleep(backoff_delay(attempt))
            else:
                raise StorageUnavailableError("dynamodb: user state reads still unprocessed")
        if profiles_of:
            self._prefetched.profiles = (frozenset(profiles_of), profiles, time.monotonic())
        return states

    def erased_users(self, users: Collection[str]) -> dict[str, datetime]:
        """The tombstones on the users' SEEN items (one BatchGetItem per 100 users)."""
        states = self._read_states(set(users)) if users else {}
        return {
            user: datetime.fromisoformat(state.erased)
            for user, state in states.items()
            if state.erased is not None
        }
