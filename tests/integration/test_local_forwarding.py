"""Forwarding on the laptop shape: the consumer hands what it stored to each provider's own
durable queue, a provider outage holds back only that queue and dead-letters nothing, and
what waited is forwarded once the provider is back."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mysoulmate.analytics.models import QueuedMessage
from mysoulmate.providers.base import ForwardResult, ProviderUnavailableError
from mysoulmate.providers.forwarder import Forwarder
from mysoulmate.queue.local import LocalQueue
from mysoulmate.runtime.forwarding import Route, enqueue_hook, forward_once
from mysoulmate.runtime.worker import drain_once
from mysoulmate.storage.sqlite.ledger import SqliteForwardLedger
from mysoulmate.storage.sqlite.store import SqliteEventStore

from tests.support.messages import jan, track


class Switchable:
    """A provider that is up or down on command and keeps what it accepted."""

    integration = "Switchable"

    def __init__(self, name: str) -> None:
        self.name = name
        self.up = True
        self.accepted: list[str] = []

    def forward(self, messages: Sequence[QueuedMessage]) -> ForwardResult:
        if not self.up:
            raise ProviderUnavailableError("503 Service Unavailable")
        self.accepted += [m.messageId for m in messages]
        return ForwardResult(sent=len(messages), requests=1)


def route(provider: Switchable, store: SqliteEventStore, tmp_path: Path) -> Route:
    ledger = SqliteForwardLedger(tmp_path / "ledger.db")
    forwarder = Forwarder(
        provider, store, ledger, attempts=1, breaker_failures=1000, sleep=lambda _: None
    )
    queue = LocalQueue(tmp_path / f"forward-{provider.name}.db", max_receive_count=3)
    return Route(forwarder, queue)


def send(events: LocalQueue, *ids: str) -> None:
    events.send_batch([track("ann", "e", jan(1), message_id=i).model_dump_json() for i in ids])


def test_an_outage_of_one_provider_holds_back_only_its_queue_and_loses_nothing(
    tmp_path: Path,
) -> None:
    store = SqliteEventStore(tmp_path / "analytics.db")
    events = LocalQueue(tmp_path / "queue.db")
    down, up = Switchable("down"), Switchable("up")
    routes = [route(down, store, tmp_path), route(up, store, tmp_path)]
    down.up = False
    send(events, "m1", "m2")
    assert drain_once(events, store, 100, enqueue_hook([r.queue for r in routes])) == 2
    assert events.depth() == (0, 0)  # stored and handed on: the consumer is done
    assert len(store.list_events("ann", 10, None).events) == 2
    for _ in range(10):  # far more rounds than max_receive_count
        for r in routes:
            forward_once(r, 100)
            r.queue.release([], 0)
        routes[0].queue._conn.execute("UPDATE messages SET visible_at = 0")  # no waiting
    assert up.accepted == ["m1", "m2"]
    assert down.accepted == []
    assert routes[0].queue.depth() == (1, 0)  # still waiting, not dead-lettered
    down.up = True
    assert forward_once(routes[0], 100) == 1
    assert down.accepted == ["m1", "m2"]
    assert routes[0].queue.depth() == (0, 0)


def test_a_redelivered_record_is_forwarded_again_but_sent_once(tmp_path: Path) -> None:
    store = SqliteEventStore(tmp_path / "analytics.db")
    events = LocalQueue(tmp_path / "queue.db")
    provider = Switchable("p")
    chosen = [route(provider, store, tmp_path)]
    send(events, "m1")
    drain_once(events, store, 100, enqueue_hook([r.queue for r in chosen]))
    send(events, "m1")  # the same message again (an SDK retry, or a redelivery)
    drain_once(events, store, 100, enqueue_hook([r.queue for r in chosen]))
    assert chosen[0].queue.depth() == (2, 0)  # duplicates are handed on too
    forward_once(chosen[0], 100)
    assert provider.accepted == ["m1"]  # the ledger drops the second
    assert chosen[0].queue.depth() == (0, 0)


def test_a_forward_queue_failure_fails_the_record_so_it_comes_back(tmp_path: Path) -> None:
    store = SqliteEventStore(tmp_path / "analytics.db")
    events = LocalQueue(tmp_path / "queue.db", visibility_timeout=0)
    failing = {"on": True}

    def hook(messages: list[QueuedMessage]) -> None:
        if failing["on"]:
            raise RuntimeError("disk full")

    send(events, "m1")
    drain_once(events, store, 100, hook)
    assert events.depth() == (1, 0)  # stored, but kept for another try
    assert len(store.list_events("ann", 10, None).events) == 1
    failing["on"] = False
    drain_once(events, store, 100, hook)
    assert events.depth() == (0, 0)
