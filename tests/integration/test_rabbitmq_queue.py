"""The RabbitMQ adapter against the real broker (127.0.0.1:5672): publisher confirms,
redelivery when a consumer dies, dead letters after 5 deliveries, idempotent declaration,
and a worker that holds its batch while storage is down."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
from mysoulmate.analytics.ingest import Forward
from mysoulmate.analytics.models import QueuedMessage
from mysoulmate.analytics.ports import QueueError, StorageUnavailableError, StoreResult
from mysoulmate.queue.limits import MAX_MESSAGE_BYTES
from mysoulmate.queue.rabbitmq import MAX_DELIVERIES, RabbitQueue, Topology
from mysoulmate.queue.rabbitmq_consumer import RabbitConsumer
from mysoulmate.runtime.broker_worker import BrokerWorker

from tests.support.memory_store import MemoryEventStore
from tests.support.messages import jan, track
from tests.support.rabbitmq import (
    BROKER_URL,
    TcpRelay,
    broker_channel,
    depth,
    drain,
    scratch_queue,
)

SECRET = "hunter2-do-not-log"


@pytest.fixture
def queue_name() -> Iterator[str]:
    with scratch_queue() as name:
        yield name


@pytest.fixture
def producer(queue_name: str) -> Iterator[RabbitQueue]:
    queue = RabbitQueue(BROKER_URL, queue=queue_name)
    yield queue
    queue.close()


@dataclass(frozen=True)
class LimitedTopology(Topology):
    """The real topology plus a length limit, so that the broker refuses (nacks) publishes."""

    max_length: int = 1

    def queue_arguments(self) -> dict[str, Any]:
        return {**super().queue_arguments(), "x-max-length": self.max_length}


def limited(queue_name: str, max_length: int) -> RabbitQueue:
    queue = RabbitQueue(BROKER_URL, queue=queue_name)
    queue.topology = LimitedTopology(queue_name, max_length)
    return queue


def wait_until(check: Callable[[], bool], within: float = 15) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


# -- producer -------------------------------------------------------------------------------


def test_send_returns_once_the_message_is_queued_and_persistent(
    producer: RabbitQueue, queue_name: str
) -> None:
    producer.send('{"v":1}')
    assert depth(queue_name) == 1  # there already, not on its way
    with broker_channel() as channel:
        _, properties, body = channel.basic_get(queue_name, auto_ack=True)
    assert body == b'{"v":1}'
    assert properties.delivery_mode == 2


def test_a_message_the_broker_refuses_raises_instead_of_returning(queue_name: str) -> None:
    # A quorum queue over its length limit nacks publishes (it takes max_length + 1).
    # Without waiting for the confirm, the refused publish would "succeed" silently.
    queue = limited(queue_name, max_length=1)
    try:
        queue.send("first")
        queue.send("second")
        with pytest.raises(QueueError, match=r"1 of 1 message\(s\) not queued .*nack"):
            queue.send("third")
    finally:
        queue.close()
    assert [body for body, _ in drain(queue_name)] == [b"first", b"second"]


def test_send_batch_names_what_failed_and_keeps_what_was_confirmed(queue_name: str) -> None:
    queue = limited(queue_name, max_length=1)
    try:
        with pytest.raises(QueueError, match=r"2 of 4 message\(s\) not queued"):
            queue.send_batch(["a", "b", "c", "d"])
    finally:
        queue.close()
    assert [body for body, _ in drain(queue_name)] == [b"a", b"b"]


def test_an_oversized_message_fails_the_batch_before_anything_is_sent(
    producer: RabbitQueue, queue_name: str
) -> None:
    with pytest.raises(QueueError, match="exceeds"):
        producer.send_batch(["small", "x" * (MAX_MESSAGE_BYTES + 1)])
    producer.ping()
    assert depth(queue_name) == 0


def test_concurrent_senders_share_one_producer_safely(
    producer: RabbitQueue, queue_name: str
) -> None:
    def send_many(thread: int) -> None:
        for i in range(25):
            producer.send(f"{thread}-{i}")

    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(send_many, range(16)))
    assert depth(queue_name) == 400


def test_a_lost_connection_is_replaced_once_without_failing_the_send(queue_name: str) -> None:
    with TcpRelay() as relay:
        queue = RabbitQueue(relay.url(), queue=queue_name)
        try:
            queue.send("before")
            relay.cut()  # the pooled connection is dead, and its client does not know yet
            queue.send("after")
        finally:
            queue.close()
    assert sorted(body for body, _ in drain(queue_name)) == [b"after", b"before"]


def test_a_queue_deleted_behind_the_producers_back_is_declared_again(
    producer: RabbitQueue, queue_name: str
) -> None:
    producer.send("one")
    with broker_channel() as channel:
        channel.queue_delete(queue_name)
    producer.send("two")  # unroutable at first (mandatory): declared again, sent again
    assert [body for body, _ in drain(queue_name)] == [b"two"]


# -- declaration --------------------------------------------------------------------------


def test_declaration_is_idempotent_for_producers_and_consumers(queue_name: str) -> None:
    producers = [RabbitQueue(BROKER_URL, queue=queue_name) for _ in range(2)]
    consumer = RabbitConsumer(BROKER_URL, queue=queue_name, prefetch=10)
    try:
        for queue in producers:
            queue.declare()
        consumer.connect()
        consumer.connect()  # reconnecting declares again
        producers[0].send("x")
        assert [d.body for d in consumer.take(1, 2)] == ["x"]
    finally:
        consumer.close()
        for queue in producers:
            queue.close()
    with broker_channel() as channel:
        for name in (queue_name, f"{queue_name}-dlq"):
            channel.queue_declare(name, passive=True)
        channel.exchange_declare(f"{queue_name}-dlx", passive=True)


def test_a_queue_declared_otherwise_is_a_clear_error(queue_name: str) -> None:
    with broker_channel() as channel:
        channel.queue_declare(queue_name, durable=True)  # classic, not quorum
    queue = RabbitQueue(BROKER_URL, queue=queue_name)
    with pytest.raises(QueueError, match=f"cannot declare '{queue_name}'.*inequivalent"):
        queue.ping()


# -- errors never show the password -----------------------------------------------------------


def test_an_unreachable_broker_is_a_queue_error_naming_host_not_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    url = f"amqp://ops:{SECRET}@127.0.0.1:1/%2F"
    with pytest.raises(QueueError) as raised:
        RabbitQueue(url, queue="never-declared").send("x")
    assert "ops@127.0.0.1:1" in str(raised.value)
    assert SECRET not in str(raised.value)
    assert SECRET not in caplog.text


def test_wrong_credentials_are_refused_without_naming_the_password(
    queue_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    url = f"amqp://guest:{SECRET}@127.0.0.1:5672/%2F"
    with pytest.raises(QueueError) as from_producer:
        RabbitQueue(url, queue=queue_name).ping()
    consumer = RabbitConsumer(url, queue=queue_name, prefetch=1)
    with pytest.raises(QueueError) as from_consumer:
        consumer.connect()
    for error in (from_producer.value, from_consumer.value):
        assert "guest@127.0.0.1:5672" in str(error)
        assert SECRET not in str(error)
    assert SECRET not in caplog.text


# -- consumer: redelivery and dead letters -------------------------------------------------


def test_a_message_comes_back_when_its_consumer_dies_without_acking(
    producer: RabbitQueue, queue_name: str
) -> None:
    producer.send("work")
    with TcpRelay() as relay:
        doomed = RabbitConsumer(relay.url(), queue=queue_name, prefetch=10)
        doomed.connect()
        (first,) = doomed.take(1, 5)
        assert first.delivery == 1
        relay.cut()  # the worker dies mid-batch: no ack, no nack, no goodbye
    survivor = RabbitConsumer(BROKER_URL, queue=queue_name, prefetch=10)
    try:
        survivor.connect()
        (again,) = survivor.take(1, 5)
        assert (again.body, again.delivery) == ("work", 2)
        survivor.settle([again.tag], [])
    finally:
        survivor.close()
        doomed.close()
    assert depth(queue_name) == 0


def test_after_five_deliveries_a_message_is_dead_lettered(
    producer: RabbitQueue, queue_name: str
) -> None:
    producer.send("poison")
    consumer = RabbitConsumer(BROKER_URL, queue=queue_name, prefetch=10)
    seen: list[int] = []
    try:
        consumer.connect()
        while batch := consumer.take(1, 1):
            seen += [d.delivery for d in batch]
            consumer.settle([], [d.tag for d in batch])
    finally:
        consumer.close()
    assert seen == list(range(1, MAX_DELIVERIES + 1)) == [1, 2, 3, 4, 5]
    assert depth(queue_name) == 0
    ((body, headers),) = drain(f"{queue_name}-dlq")
    assert body == b"poison"
    assert headers["x-first-death-reason"] == "delivery_limit"


# -- the worker -----------------------------------------------------------------------------


class FlakyStore(MemoryEventStore):
    """An in-memory store that can be switched off, as a database outage looks."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.pings = 0

    def insert_events(self, messages: Sequence[QueuedMessage]) -> StoreResult:
        if self.down:
            return StoreResult(failed={m.key: "database is down" for m in messages})
        return super().insert_events(messages)

    def ping(self) -> None:
        self.pings += 1
        if self.down:
            raise StorageUnavailableError("database is down")

    def message_ids(self) -> list[str]:
        return sorted(message_id for _, message_id in self._events)


StartWorker = Callable[[FlakyStore, int, Forward | None], BrokerWorker]


@pytest.fixture
def run_worker(queue_name: str) -> Iterator[StartWorker]:
    started: list[tuple[BrokerWorker, threading.Thread]] = []

    def start(store: FlakyStore, batch_size: int, forward: Forward | None = None) -> BrokerWorker:
        consumer = RabbitConsumer(BROKER_URL, queue=queue_name, prefetch=batch_size)
        worker = BrokerWorker(consumer, store, batch_size=batch_size, linger=0.05, forward=forward)
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        started.append((worker, thread))
        return worker

    yield start
    for worker, thread in started:
        worker.request_stop()
        thread.join(10)
        assert not thread.is_alive(), "the worker did not stop"


def test_the_worker_stores_batches_and_dead_letters_poison(
    producer: RabbitQueue,
    queue_name: str,
    run_worker: StartWorker,
) -> None:
    messages = [track(f"u{i % 7}", "tap", jan(3), message_id=f"w-{i}") for i in range(250)]
    producer.send_batch([m.model_dump_json() for m in messages] + ['{"v":1,"type":"nope"}'])
    store = FlakyStore()
    forwarded: list[str] = []
    run_worker(store, 100, lambda stored: forwarded.extend(m.messageId for m in stored))
    wait_until(lambda: depth(f"{queue_name}-dlq") == 1)
    wait_until(lambda: depth(queue_name) == 0)
    assert store.message_ids() == sorted(m.messageId for m in messages)
    assert sorted(forwarded) == store.message_ids()  # stored, then handed to the providers
    ((body, headers),) = drain(f"{queue_name}-dlq")
    assert body == b'{"v":1,"type":"nope"}'
    assert headers["x-first-death-reason"] == "delivery_limit"


def test_the_worker_holds_its_batch_while_storage_is_down(
    producer: RabbitQueue,
    queue_name: str,
    run_worker: StartWorker,
) -> None:
    store = FlakyStore()
    store.down = True
    run_worker(store, 10, None)
    producer.send(track("ann", "tap", jan(3), message_id="held-1").model_dump_json())
    wait_until(lambda: store.pings >= 1)  # it found storage down
    time.sleep(2.5)  # long enough for 5+ deliveries, had each failure been handed back
    store.down = False
    wait_until(lambda: store.message_ids() == ["held-1"])
    wait_until(lambda: depth(queue_name) == 0)
    assert depth(f"{queue_name}-dlq") == 0
