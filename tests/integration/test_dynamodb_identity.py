"""DynamoEventStore's identity links against moto: what only this adapter has. A link's move
spans several transactions, so a crash between any two of them, followed by a re-run, must
leave exactly what an uninterrupted move leaves; the call budget of a link; and the erasure
of a linked user forgetting the link (and what a cut-short move left under the visitor).
Behaviour shared by every backend is in tests/contract/test_identity_contract.py."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import date
from functools import partial
from typing import Any

import boto3
import pytest
from mysoulmate.analytics.models import QueuedMessage
from mysoulmate.analytics.profiles import merge_identify
from mysoulmate.storage.dynamodb.rollups import user_shard
from mysoulmate.storage.dynamodb.store import DynamoEventStore, table_schema

from tests.support.aws import REGION, ApiCalls
from tests.support.messages import identify, jan, track

USER = "u1"
SPAN = (date(2026, 1, 1), date(2026, 1, 31))


class Crash(Exception):
    """The process dies: nothing after this point of the call runs."""


@pytest.fixture
def client(aws: None) -> Any:
    return boto3.client("dynamodb", region_name=REGION)


@pytest.fixture
def new_store(client: Any) -> Callable[[], DynamoEventStore]:
    """A store on a table of its own (several per test: one per crash point)."""

    def make() -> DynamoEventStore:
        table = f"identity-{uuid.uuid4().hex[:8]}"
        client.create_table(TableName=table, **table_schema())
        return DynamoEventStore(table, client, sleep=lambda _: None)

    return make


def visitor_id(*, same_shard_as: str | None = None, other_shard_than: str | None = None) -> str:
    """An anonymous id whose visitor shares (or does not share) the user's set shard."""
    for n in range(1_000):
        shard = user_shard(f"anon:v{n}")
        if same_shard_as is not None and shard == user_shard(same_shard_as):
            return f"v{n}"
        if other_shard_than is not None and shard != user_shard(other_shard_than):
            return f"v{n}"
    raise AssertionError("no such id")


def as_visitor(message: QueuedMessage, anonymous_id: str) -> QueuedMessage:
    return message.model_copy(
        update={"userId": f"anon:{anonymous_id}", "anonymousId": anonymous_id}
    )


def seed(store: DynamoEventStore, anonymous_id: str) -> None:
    """A visitor with 56 events over two days and platforms, a profile and an earlier
    first-seen day than the user; one of its messages the user has too (a duplicate)."""
    visitor = [
        track("x", ("open", "view")[i % 2], jan(3, 9, i), platform="ios", message_id=f"a{i}")
        for i in range(30)
    ]
    visitor += [
        track("x", "open", jan(4, 9, i), platform="web", message_id=f"b{i}") for i in range(20)
    ]
    visitor += [
        track("x", "buy", jan(4, 10, i), platform="web", message_id=f"c{i}", revenue=2)
        for i in range(5)
    ]
    shared = track(USER, "open", jan(4, 11), platform="web", message_id="shared")
    hello = identify("x", jan(3, 8), message_id="hello", theme="dark", plan="free")
    visitor = [as_visitor(m, anonymous_id) for m in [*visitor, hello, shared]]
    mine = identify(USER, jan(5, 8), message_id="mine", plan="pro")
    store.insert_events(
        [*visitor, shared, mine, track(USER, "open", jan(5, 9), platform="web", message_id="own")]
    )
    for message in (visitor[-2], mine):
        store.update_profile(message.userId, partial(merge_identify, message=message))


def snapshot(store: DynamoEventStore, anonymous_id: str) -> dict[str, Any]:
    """Everything the read side shows about the user and the visitor."""
    people = (USER, f"anon:{anonymous_id}")
    profiles = {p: store.get_profile(p) for p in people}
    return {
        "events": {p: _event_ids(store, p) for p in people},
        "points": {p: store.user_event_points(p) for p in people},
        "users": [
            (r.day, r.platform, r.event, sorted(r.users))  # type: ignore[call-overload]
            for r in store.rollup_users(*SPAN, by_event=True)
        ],
        "first": {d: sorted(u) for d, u in store.first_seen_users(*SPAN).items()},  # type: ignore[call-overload]
        "counts": store.rollup_counts(*SPAN),
        "revenue": store.rollup_revenue(*SPAN),
        "profiles": {
            p: (profile.traits, profile.anonymousIds) if profile else None
            for p, profile in profiles.items()
        },
        "links": store.linked_users([anonymous_id]),
    }


def _event_ids(store: DynamoEventStore, person: str) -> list[str]:
    page = store.list_events(person, 500, None)
    assert page.next_cursor is None
    return sorted(event.messageId for event in page.events)


def crash_after(monkeypatch: pytest.MonkeyPatch, client: Any, calls: int) -> list[int]:
    """Let ``calls`` TransactWriteItems through, then crash on the next one."""
    real = client.transact_write_items
    sent: list[int] = []

    def transact_write_items(**kwargs: Any) -> Any:
        if len(sent) == calls:
            raise Crash
        sent.append(len(kwargs["TransactItems"]))
        return real(**kwargs)

    monkeypatch.setattr(client, "transact_write_items", transact_write_items)
    return sent


def link_until_crash(
    monkeypatch: pytest.MonkeyPatch,
    client: Any,
    store: DynamoEventStore,
    anonymous_id: str,
    calls: int,
) -> None:
    """Link the visitor to USER, crashing before the transaction after ``calls``."""
    with monkeypatch.context() as patch:
        crash_after(patch, client, calls)
        with pytest.raises(Crash):
            store.link_anonymous(anonymous_id, USER, jan(6))


# -- a crash at every point, then a re-run -----------------------------------------------------


@pytest.mark.parametrize("same_shard", [False, True], ids=["own-shards", "shared-shard"])
def test_a_move_cut_short_anywhere_is_completed_exactly_by_a_rerun(
    new_store: Callable[[], DynamoEventStore],
    client: Any,
    monkeypatch: pytest.MonkeyPatch,
    same_shard: bool,
) -> None:
    anonymous_id = visitor_id(
        same_shard_as=USER if same_shard else None,
        other_shard_than=None if same_shard else USER,
    )
    clean = new_store()
    seed(clean, anonymous_id)
    before = snapshot(clean, anonymous_id)
    with monkeypatch.context() as patch:
        sent = crash_after(patch, client, 10_000)
        result = clean.link_anonymous(anonymous_id, USER, jan(6))
    expected = snapshot(clean, anonymous_id)

    # The uninterrupted move: 56 events moved (the duplicate dropped), one person.
    assert (result.user_id, result.moved_events) == (USER, 56)
    assert len(sent) >= 3  # the link, then a move of several transactions
    assert all(n <= 100 for n in sent)
    visitor_events = before["events"][f"anon:{anonymous_id}"]
    assert expected["events"][USER] == sorted({*visitor_events, *before["events"][USER]})
    assert expected["events"][f"anon:{anonymous_id}"] == []
    assert all(users == [USER] for *_, users in expected["users"])
    assert expected["first"] == {date(2026, 1, 3): [USER]}
    # The dropped copy of "shared" leaves its day's count; nothing else changes.
    assert expected["counts"] == [
        row._replace(events=row.events - 1) if row[:3] == (date(2026, 1, 4), "web", "open") else row
        for row in before["counts"]
    ]
    assert expected["revenue"] == before["revenue"]
    assert expected["profiles"][USER][0] == {"theme": "dark", "plan": "pro"}
    assert expected["profiles"][f"anon:{anonymous_id}"] is None
    assert expected["links"] == {anonymous_id: USER}

    for calls in range(len(sent)):
        store = new_store()
        seed(store, anonymous_id)
        link_until_crash(monkeypatch, client, store, anonymous_id, calls)
        # Cut short, no event is lost or doubled: each is under the user or the visitor.
        halfway = snapshot(store, anonymous_id)
        under_user = set(halfway["events"][USER]) - set(before["events"][USER])
        assert under_user.isdisjoint(halfway["events"][f"anon:{anonymous_id}"])
        assert under_user | set(halfway["events"][f"anon:{anonymous_id}"]) >= set(
            visitor_events
        ) - {"shared"}

        rerun = store.link_anonymous(anonymous_id, USER, jan(6))

        assert rerun.user_id == USER
        assert snapshot(store, anonymous_id) == expected, f"crashed after {calls} calls"
        assert store.link_anonymous(anonymous_id, USER, jan(6)).moved_events == 0


def test_a_later_link_to_another_user_completes_the_first_links_move(
    new_store: Callable[[], DynamoEventStore], client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    anonymous_id = visitor_id(other_shard_than=USER)
    store = new_store()
    seed(store, anonymous_id)
    link_until_crash(monkeypatch, client, store, anonymous_id, 2)  # linked, moved in part

    result = store.link_anonymous(anonymous_id, "someone-else", jan(7))

    assert result.user_id == USER
    assert result.moved_events > 0
    after = snapshot(store, anonymous_id)
    assert after["events"][f"anon:{anonymous_id}"] == []
    assert store.list_events("someone-else", 10, None).events == []


# -- the call budget ------------------------------------------------------------------------


def test_a_link_moving_ten_events_over_two_days_costs_four_calls(
    new_store: Callable[[], DynamoEventStore], client: Any
) -> None:
    anonymous_id = visitor_id(other_shard_than=USER)
    store = new_store()
    events = [
        track("x", ("open", "play")[i % 2], jan(day, 9, i), message_id=f"e{day}-{i}")
        for day in (1, 2)
        for i in range(5)
    ]
    store.insert_events([as_visitor(m, anonymous_id) for m in events])
    store.insert_events([track(USER, "open", jan(3, 9))])
    calls = ApiCalls(client, "dynamodb")

    result = store.link_anonymous(anonymous_id, USER, jan(3, 10))

    assert result.moved_events == 10
    # Read the link (and the user's tombstone), link, read the visitor, move.
    assert [name for name, _ in calls.calls] == [
        "BatchGetItem",
        "TransactWriteItems",
        "Query",
        "TransactWriteItems",
    ]
    # 10 Puts and 10 Deletes; the visitor out of 6 sets and the user into them; first-seen:
    # the user's FIRST# moves (2) with their SEEN update (which checks the tombstone), the
    # visitor's FIRST# membership and SEEN item go (2).
    (link, move) = calls.of("TransactWriteItems")
    assert len(link["TransactItems"]) == 3
    assert len(move["TransactItems"]) == 10 * 2 + 6 + 6 + 3 + 2
    calls.calls.clear()

    assert store.link_anonymous(anonymous_id, USER, jan(3, 11)).moved_events == 0
    assert [name for name, _ in calls.calls] == ["BatchGetItem", "Query"]


def test_linked_users_reads_at_most_100_keys_a_call_and_retries_unprocessed_ones(
    new_store: Callable[[], DynamoEventStore], client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = new_store()
    for n in range(0, 150, 2):
        store.link_anonymous(f"a{n}", f"user{n}", jan(1))
    real = client.batch_get_item
    requests: list[dict[str, Any]] = []

    def batch_get_item(**kwargs: Any) -> Any:
        ((table, request),) = kwargs["RequestItems"].items()
        requests.append(request)
        response = real(**kwargs)
        if len(requests) == 1:  # the first call leaves its last 10 keys unprocessed
            left = request["Keys"][-10:]
            unprocessed = {key["pk"]["S"] for key in left}
            response["Responses"][table] = [
                item for item in response["Responses"][table] if item["pk"]["S"] not in unprocessed
            ]
            response["UnprocessedKeys"] = {table: {**request, "Keys": left}}
        return response

    monkeypatch.setattr(client, "batch_get_item", batch_get_item)

    found = store.linked_users([f"a{n}" for n in range(150)])

    assert found == {f"a{n}": f"user{n}" for n in range(0, 150, 2)}
    assert [len(request["Keys"]) for request in requests] == [100, 10, 50]
    assert all(request["ConsistentRead"] for request in requests)


# -- erasure ---------------------------------------------------------------------------------


def _table_keys(client: Any, store: DynamoEventStore, prefix: str) -> list[str]:
    items = client.scan(TableName=store._table)["Items"]
    return sorted(
        f"{i['pk']['S']}|{i['sk']['S']}"
        for i in items
        if i["pk"]["S"].startswith(prefix) or i["sk"]["S"].startswith(prefix)
    )


def test_erasing_the_user_forgets_the_link_and_what_a_cut_short_move_left(
    new_store: Callable[[], DynamoEventStore], client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    anonymous_id = visitor_id(other_shard_than=USER)
    store = new_store()
    seed(store, anonymous_id)
    before = snapshot(store, anonymous_id)
    link_until_crash(monkeypatch, client, store, anonymous_id, 2)  # linked, moved in part
    halfway = snapshot(store, anonymous_id)["events"]
    assert halfway[USER] != before["events"][USER]
    assert halfway[f"anon:{anonymous_id}"] != []

    result = store.delete_user(USER, jan(8))

    after = snapshot(store, anonymous_id)
    assert result.events == len(halfway[USER]) + len(halfway[f"anon:{anonymous_id}"])
    assert after["events"] == {USER: [], f"anon:{anonymous_id}": []}
    assert after["users"] == []
    assert after["first"] == {}
    assert after["links"] == {}
    assert _table_keys(client, store, "LINK") == []
    assert (after["counts"], after["revenue"]) == (before["counts"], before["revenue"])
    # A link consumed after the erasure but sent before it is refused; a later one is new.
    assert store.link_anonymous(anonymous_id, USER, jan(7)).user_id is None
    assert store.linked_users([anonymous_id]) == {}


def test_an_erasure_landing_before_the_move_commits_refuses_it(
    new_store: Callable[[], DynamoEventStore], client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    anonymous_id = visitor_id(other_shard_than=USER)
    store = new_store()
    eraser = DynamoEventStore(
        store._table, boto3.client("dynamodb", region_name=REGION), sleep=lambda _: None
    )
    seed(store, anonymous_id)
    real = client.transact_write_items
    sent: list[int] = []

    def erase_before_the_move(**kwargs: Any) -> Any:
        sent.append(len(kwargs["TransactItems"]))
        if len(sent) == 2:  # linked, the visitor's items read: the move is about to commit
            eraser.delete_user(USER, jan(8))
        return real(**kwargs)

    monkeypatch.setattr(client, "transact_write_items", erase_before_the_move)

    result = store.link_anonymous(anonymous_id, USER, jan(6))

    assert result.user_id is None
    assert len(sent) == 2  # the move's transaction was cancelled by the tombstone check
    after = snapshot(store, anonymous_id)
    assert after["events"] == {USER: [], f"anon:{anonymous_id}": []}
    assert after["users"] == []
    assert after["first"] == {}
    assert after["links"] == {}
    assert after["profiles"] == {USER: None, f"anon:{anonymous_id}": None}


def test_a_link_to_a_user_erased_after_its_receipt_writes_nothing(
    new_store: Callable[[], DynamoEventStore], client: Any
) -> None:
    anonymous_id = visitor_id(other_shard_than=USER)
    store = new_store()
    seed(store, anonymous_id)
    store.delete_user(USER, jan(8))
    before = snapshot(store, anonymous_id)
    calls = ApiCalls(client, "dynamodb")

    assert store.link_anonymous(anonymous_id, USER, jan(8)).user_id is None

    assert [name for name, _ in calls.calls] == ["BatchGetItem"]
    assert snapshot(store, anonymous_id) == before
