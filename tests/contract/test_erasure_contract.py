"""An erasure sticks, on every backend: messages received before it never come back, whether
they arrive after it (a stopped worker) or race it (a live worker); messages received after
it are new data and are stored."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta
from functools import partial

from mysoulmate.analytics import gdpr
from mysoulmate.analytics.ingest import IngestBatch
from mysoulmate.analytics.models import QueuedMessage
from mysoulmate.analytics.ports import ANY_EVENT, EventStore
from mysoulmate.analytics.profiles import merge_identify

from tests.support.messages import consume, identify, jan, track

ERASED_AT = jan(10)


def received(message: QueuedMessage, at: datetime) -> QueuedMessage:
    return message.model_copy(update={"receivedAt": at})


def active_users(store: EventStore, day: date) -> int:
    rows = [r for r in store.rollup_users(day, day, by_event=False) if r.event == ANY_EVENT]
    union = store.empty_user_set()
    for row in rows:
        union = union | row.users
    return len(union)


def test_messages_received_before_an_erasure_are_dropped_when_they_arrive_after_it(
    store: EventStore,
) -> None:
    consume(store, track("carol", "signup", jan(1)), identify("carol", jan(1), plan="pro"))
    assert store.delete_user("carol", ERASED_AT).events == 2
    # In the queue when the erasure ran (received before it), consumed afterwards.
    in_flight = [
        received(track("carol", "song_played", jan(9)), jan(9)),
        received(identify("carol", jan(9), email="carol@example.com"), jan(9)),
        received(track("carol", "song_played", jan(9, 23)), ERASED_AT),  # the same instant
    ]
    result = store.insert_events(in_flight)
    assert result.written == 0
    assert result.erased == {m.key for m in in_flight}

    batch = IngestBatch(store)
    for index, message in enumerate(in_flight):
        batch.add(f"r{index}", message.model_dump_json())
    outcome = batch.flush()
    assert outcome.stored == 0
    assert outcome.erased == 3

    assert store.list_events("carol", 50, None).events == []
    assert store.get_profile("carol") is None
    assert active_users(store, date(2026, 1, 9)) == 0
    first_seen = store.first_seen_users(date(2026, 1, 1), date(2026, 1, 31))
    assert all(len(users) == 0 for users in first_seen.values())


def test_messages_received_after_an_erasure_are_new_data(store: EventStore) -> None:
    consume(store, track("dan", "signup", jan(1)))
    store.delete_user("dan", ERASED_AT)
    later = ERASED_AT + timedelta(seconds=1)
    comeback = [
        received(track("dan", "signup", jan(11)), later),
        received(identify("dan", jan(11), plan="free"), later),
    ]
    consume(store, *comeback)
    assert [e.event for e in store.list_events("dan", 50, None).events if e.type == "track"] == [
        "signup"
    ]
    profile = store.get_profile("dan")
    assert profile is not None
    assert profile.traits == {"plan": "free"}
    assert active_users(store, date(2026, 1, 11)) == 1


def test_an_erasure_covers_what_it_found_received_after_its_time(store: EventStore) -> None:
    """Requested at its time, the erasure runs a moment later: an event received in between
    and already stored is deleted with the rest, and the erasure's time moves up to it. So its
    redelivery (a record stored but not yet acknowledged) is refused, not stored and counted
    again; what is received later still is new data."""
    before = track("ivy", "open", jan(3))
    between = received(track("ivy", "open", jan(10, 13)), jan(10, 13))
    consume(store, before, between)
    assert store.delete_user("ivy", ERASED_AT).events == 2
    assert store.erased_users(["ivy"]) == {"ivy": jan(10, 13)}
    result = store.insert_events([between])
    assert (result.written, result.erased) == (0, {between.key})
    assert store.list_events("ivy", 10, None).events == []
    assert store.rollup_counts(date(2026, 1, 10), date(2026, 1, 10))[0].events == 1
    later = received(track("ivy", "open", jan(10, 14)), jan(10, 14))
    assert store.insert_events([later]).written == 1


def test_a_profile_update_for_messages_received_before_the_erasure_writes_nothing(
    store: EventStore,
) -> None:
    store.delete_user("erin", ERASED_AT)
    message = received(identify("erin", jan(9), email="erin@example.com"), jan(9))
    update = partial(_merge_one, message)
    assert store.update_profile("erin", update, received_at=message.receivedAt) is None
    assert store.get_profile("erin") is None
    after = received(identify("erin", jan(11), plan="pro"), jan(11))
    merged = store.update_profile("erin", partial(_merge_one, after), received_at=after.receivedAt)
    assert merged is not None
    assert store.get_profile("erin") is not None


def test_the_latest_erasure_time_wins(store: EventStore) -> None:
    store.delete_user("fay", jan(20))
    store.delete_user("fay", jan(5))  # an older request finishing late does not shorten it
    result = store.insert_events([received(track("fay", "x", jan(12)), jan(12))])
    assert result.written == 0
    assert len(result.erased) == 1


def test_erasure_racing_a_live_consumer_leaves_nothing_received_before_it(
    store: EventStore,
) -> None:
    """A consumer keeps storing batches of messages received before the erasure while the
    erasure runs: whatever the interleaving, nothing of the user is left afterwards."""
    batches = [
        [received(track("gus", "tick", jan(8, 0, n, s)), jan(9)) for s in range(10)]
        for n in range(30)
    ]
    started = threading.Event()
    errors: list[BaseException] = []

    def insert_batches() -> None:
        try:
            for index, batch in enumerate(batches):
                store.insert_events(batch)
                if index == 3:
                    started.set()
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            errors.append(exc)
            started.set()

    consumer = threading.Thread(target=insert_batches)
    consumer.start()
    started.wait(timeout=60)
    report = gdpr.erase(store, "admin", "gus")
    consumer.join(timeout=120)
    assert not errors
    assert report.erased
    assert store.list_events("gus", 500, None).events == []
    assert active_users(store, date(2026, 1, 8)) == 0
    assert store.get_profile("gus") is None


def _merge_one(message: QueuedMessage, profile: object) -> object:
    return merge_identify(profile, message)  # type: ignore[arg-type]


def test_erasure_time_is_kept_in_utc(store: EventStore) -> None:
    cest = datetime(2026, 1, 10, 14, 0, tzinfo=UTC).astimezone()
    store.delete_user("hal", cest)
    before = received(track("hal", "x", jan(10, 13, 59)), jan(10, 13, 59))
    after = received(track("hal", "x", jan(10, 14, 1)), jan(10, 14, 1))
    result = store.insert_events([before, after])
    assert result.erased == {before.key}
    assert result.written == 1


def test_an_erasure_empties_the_sets_of_events_with_an_empty_platform(store: EventStore) -> None:
    # The API refuses "", a queued message can carry it: it counts as "unknown" everywhere.
    consume(store, track("gus", "open", jan(5), platform=""), track("hal", "open", jan(5)))
    assert active_users(store, date(2026, 1, 5)) == 2
    store.delete_user("gus", ERASED_AT)
    assert active_users(store, date(2026, 1, 5)) == 1
    platforms = {
        r.platform
        for r in store.rollup_users(date(2026, 1, 5), date(2026, 1, 5), by_event=False)
        if len(r.users)
    }
    assert platforms == {"web"}
