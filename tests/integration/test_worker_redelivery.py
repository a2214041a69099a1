"""The laptop's and the containers' consumers tell a redelivered record from a first one, so
a visitor's message whose first delivery was cut short is stored once, as its user.

The cut-short move: a visitor's message is stored as the visitor while another consumer
links the visitor to ann, and the re-check link that would move it fails. The record fails;
its redelivery resolves to ann, and linking again moves the visitor's copy (the same message,
so ann has it once). Only a redelivery links again: a first delivery costs no link call.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from mysoulmate.queue.local import LocalQueue
from mysoulmate.queue.rabbitmq_consumer import Delivery
from mysoulmate.runtime.broker_worker import ingest
from mysoulmate.runtime.worker import drain_once
from mysoulmate.storage.sqlite.store import SqliteEventStore

from tests.support.messages import cut_short_links, jan, visit


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SqliteEventStore:
    store = SqliteEventStore(tmp_path / "analytics.db")
    cut_short_links(store, monkeypatch)
    return store


def owners(store: SqliteEventStore) -> dict[str, list[str]]:
    return {
        person: [point.message_id for point in store.user_event_points(person)]
        for person in ("ann", "anon:v-1")
    }


def test_the_local_worker_links_again_on_the_queues_second_receive(
    store: SqliteEventStore, tmp_path: Path
) -> None:
    queue = LocalQueue(tmp_path / "queue.db", visibility_timeout=0.05)
    message = visit("v-1", jan(5))
    queue.send(message.model_dump_json())

    drain_once(queue, store, 10)  # the record fails: left in the queue
    assert owners(store) == {"ann": [], "anon:v-1": [message.messageId]}
    assert queue.depth()[0] == 1

    time.sleep(0.1)  # past the visibility timeout: received a second time
    assert drain_once(queue, store, 10) == 1
    assert owners(store) == {"ann": [message.messageId], "anon:v-1": []}
    assert queue.depth()[0] == 0


def test_the_broker_worker_links_again_on_a_redelivery(store: SqliteEventStore) -> None:
    message = visit("v-1", jan(5))
    body = message.model_dump_json()

    first = ingest([Delivery(tag=1, body=body, delivery=1)], store)
    assert first.requeue == [1]
    assert owners(store) == {"ann": [], "anon:v-1": [message.messageId]}

    again = ingest([Delivery(tag=2, body=body, delivery=2)], store)
    assert again.ack == [2]
    assert owners(store) == {"ann": [message.messageId], "anon:v-1": []}
