"""Forwarding in the container shape against the real RabbitMQ: the worker's forward hook
puts what it stored on each provider's broker queue; a thread per provider drains it. A
provider outage holds the batch without spending deliveries, and recovery sends it once;
refused and unreadable records are dead-lettered at once; erasure applies to what waits."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from mysoulmate.analytics.gdpr import erase
from mysoulmate.analytics.models import QueuedMessage
from mysoulmate.core.settings import Settings
from mysoulmate.providers.base import ForwardResult, ProviderRejectedError, ProviderUnavailableError
from mysoulmate.providers.forwarder import Forwarder
from mysoulmate.queue.rabbitmq import RabbitQueue
from mysoulmate.runtime.broker_forwarding import BrokerForwardWorker, forward_queue_name
from mysoulmate.runtime.forwarding import enqueue_hook
from mysoulmate.storage.sqlite.ledger import SqliteForwardLedger
from mysoulmate.storage.sqlite.store import SqliteEventStore

from tests.support.messages import jan, track
from tests.support.rabbitmq import BROKER_URL, delete_topology, depth, drain, scratch_queue


class Provider:
    """Up, down or refusing on command; keeps what it accepted."""

    integration = "Test"

    def __init__(self) -> None:
        self.name = "test"
        self.mode = "up"
        self.accepted: list[str] = []
        self.calls = 0

    def forward(self, messages: Sequence[QueuedMessage]) -> ForwardResult:
        self.calls += 1
        if self.mode == "down":
            raise ProviderUnavailableError("503 Service Unavailable")
        if self.mode == "refuse":
            raise ProviderRejectedError("400 Bad Request")
        self.accepted += [m.messageId for m in messages]
        return ForwardResult(sent=len(messages), requests=1)


@pytest.fixture
def events_queue() -> Iterator[str]:
    with scratch_queue() as name:
        yield name
        delete_topology(f"{name}-forward-test")


@pytest.fixture
def store(tmp_path: Path) -> SqliteEventStore:
    return SqliteEventStore(tmp_path / "analytics.db")


@pytest.fixture
def provider() -> Provider:
    return Provider()


@pytest.fixture
def worker(
    events_queue: str, store: SqliteEventStore, provider: Provider, tmp_path: Path
) -> Iterator[BrokerForwardWorker]:
    settings = Settings(
        rabbitmq_url=BROKER_URL,
        rabbitmq_queue=events_queue,
        worker_batch_size=50,
        worker_poll_interval_seconds=0.1,
        jwt_secret="x" * 32,
    )
    forwarder = Forwarder(
        provider,  # type: ignore[arg-type]
        store,
        SqliteForwardLedger(tmp_path / "ledger.db"),
        attempts=1,
        breaker_failures=1000,
        sleep=lambda _: None,
    )
    running = BrokerForwardWorker(forwarder, settings)
    yield running
    running.stop()


def queue_for(events_queue: str) -> RabbitQueue:
    return RabbitQueue(BROKER_URL, queue=f"{events_queue}-forward-test")


def stored(store: SqliteEventStore, *ids: str, user: str = "ann") -> list[QueuedMessage]:
    """Messages as the consumer hands them on after storing them."""
    messages = [track(user, "open", jan(1), message_id=i) for i in ids]
    store.insert_events(messages)
    return messages


def wait_until(check: Callable[[], bool], within: float = 15) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_stored_messages_reach_the_provider_through_the_broker(
    worker: BrokerForwardWorker, provider: Provider, store: SqliteEventStore, events_queue: str
) -> None:
    queue = queue_for(events_queue)
    queue.declare()
    enqueue_hook([queue])(stored(store, "m1", "m2", "m3"))
    worker.start()
    wait_until(lambda: sorted(provider.accepted) == ["m1", "m2", "m3"])
    wait_until(lambda: depth(forward_queue_name_of(events_queue)) == 0)
    assert depth(f"{forward_queue_name_of(events_queue)}-dlq") == 0


def forward_queue_name_of(events_queue: str) -> str:
    return f"{events_queue}-forward-test"


def test_an_outage_holds_the_batch_without_spending_deliveries(
    worker: BrokerForwardWorker, provider: Provider, store: SqliteEventStore, events_queue: str
) -> None:
    queue = queue_for(events_queue)
    queue.declare()
    provider.mode = "down"
    enqueue_hook([queue])(stored(store, "m1", "m2"))
    worker.start()
    wait_until(lambda: provider.calls >= 2)  # tried, held, tried again: still down
    assert provider.accepted == []
    assert depth(f"{forward_queue_name_of(events_queue)}-dlq") == 0
    provider.mode = "up"
    wait_until(lambda: sorted(provider.accepted) == ["m1", "m2"], within=20)
    worker.stop()
    # Held, never returned: no redelivery happened, and nothing is left or dead-lettered.
    assert depth(forward_queue_name_of(events_queue)) == 0
    assert depth(f"{forward_queue_name_of(events_queue)}-dlq") == 0


def test_refused_and_unreadable_records_are_dead_lettered_at_once(
    worker: BrokerForwardWorker, provider: Provider, store: SqliteEventStore, events_queue: str
) -> None:
    queue = queue_for(events_queue)
    queue.declare()
    queue.send("not a forward message")
    worker.start()
    wait_until(lambda: depth(f"{forward_queue_name_of(events_queue)}-dlq") == 1)
    provider.mode = "refuse"
    enqueue_hook([queue])(stored(store, "m1"))
    wait_until(lambda: depth(f"{forward_queue_name_of(events_queue)}-dlq") == 2)
    bodies = [body for body, _ in drain(f"{forward_queue_name_of(events_queue)}-dlq")]
    assert bodies[0] == b"not a forward message"
    assert b"m1" in bodies[1]
    assert provider.accepted == []


def test_an_erasure_stops_what_waits_in_the_forward_queue(
    worker: BrokerForwardWorker, provider: Provider, store: SqliteEventStore, events_queue: str
) -> None:
    queue = queue_for(events_queue)
    queue.declare()
    enqueue_hook([queue])(stored(store, "b1", user="bob") + stored(store, "a1"))
    erase(store, "admin", "bob")
    worker.start()
    wait_until(lambda: provider.accepted == ["a1"])
    wait_until(lambda: depth(forward_queue_name_of(events_queue)) == 0)
    assert provider.accepted == ["a1"]


def test_the_queue_name_follows_the_events_queue() -> None:
    settings = Settings(rabbitmq_queue="events-x", jwt_secret="x" * 32)
    assert forward_queue_name(settings, "mixpanel") == "events-x-forward-mixpanel"
