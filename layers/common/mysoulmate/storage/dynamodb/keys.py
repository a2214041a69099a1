"""Keys of the table's per-user items (events, profile), of identity links and of the audit
partition, and the name of the index that orders a user's events by time; both the write and
the read side of DynamoEventStore build them from here (rollup item keys live in
`dynamodb.rollups`).
"""

from __future__ import annotations

from datetime import UTC
from typing import Any

from mysoulmate.analytics.models import QueuedMessage
from mysoulmate.analytics.ports import time_key

PROFILE_SK = "PROFILE"
BY_USER_TIME = "ByUserTime"
AUDIT_PK = "AUDIT"
SEEN_SK = "SEEN"  # per-user item: first-seen day, latest day's set memberships, session, tombstone
# The SEEN item's tombstone: time_key of the latest erasure. Every write of a user's data
# names the SEEN item with NOT_ERASED (":received" = the earliest receipt it writes), so an
# erasure and a write are ordered by DynamoDB on that one item.
ERASED = "erased"
# The person's current session (`SessionMark`) on the SEEN item: its id and the time keys of
# its first and last events. Only replaced by a mark whose last event is at least as late.
MARK_ID, MARK_START, MARK_LAST = "sid", "sstart", "slast"
MARK_ATTRIBUTES = (MARK_ID, MARK_START, MARK_LAST)
# An event item's session id (`QueuedMessage.sessionId`), also inside its `doc`.
EVENT_SESSION = "sid"
NOT_ERASED = "(attribute_not_exists(#erased) OR #erased < :received)"
# Identity links (`dynamodb.identity`): LINK#<anonymousId> names the user the anonymous id
# belongs to; the user's LINKED#<anonymousId> item, written in the same transaction, lets an
# erasure find the links to forget.
LINK_SK = "LINK"
LINKED_PREFIX = "LINKED#"
# A perf ledger item's sk starts so (`perf_plan.ledger_sk`), a forward ledger item's so
# (`ledger.forward_sk`); their RECEIVED attribute is the message's receipt, which an erasure
# compares with its tombstone (`erasure.plan_erasure`).
PERF_LEDGER_PREFIX = "PERF"
FORWARD_LEDGER_PREFIX = "FWD#"
RECEIVED = "received"


def user_pk(user_id: str) -> str:
    return f"USER#{user_id}"


def seen_key(user_id: str) -> dict[str, Any]:
    return {"pk": {"S": user_pk(user_id)}, "sk": {"S": SEEN_SK}}


def link_key(anonymous_id: str) -> dict[str, Any]:
    return {"pk": {"S": f"LINK#{anonymous_id}"}, "sk": {"S": LINK_SK}}


def linked_key(user_id: str, anonymous_id: str) -> dict[str, Any]:
    return {"pk": {"S": user_pk(user_id)}, "sk": {"S": LINKED_PREFIX + anonymous_id}}


def event_sk(message_id: str) -> str:
    return f"EVENT#{message_id}"


def receipt_key(message: QueuedMessage) -> str:
    """What NOT_ERASED compares with the tombstone: the message's receipt, in UTC."""
    return time_key(message.receivedAt.astimezone(UTC))


def not_erased_check(table: str, user_id: str, received: str) -> dict[str, Any]:
    """A transaction action that fails when an erasure of the user recorded at or after
    ``received`` (a receipt time key) exists: the transaction is then cancelled as a whole."""
    return {
        "ConditionCheck": {
            "TableName": table,
            "Key": seen_key(user_id),
            "ConditionExpression": NOT_ERASED,
            "ExpressionAttributeNames": {"#erased": ERASED},
            "ExpressionAttributeValues": {":received": {"S": received}},
        }
    }
