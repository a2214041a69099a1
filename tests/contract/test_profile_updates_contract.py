"""`update_profiles`: a delivery's profile merges for many users at once behave, per user,
exactly like `update_profile` — merged by event time, idempotent, and never written for a
user erased at or after the messages were received."""

from __future__ import annotations

from datetime import datetime
from functools import partial

from mysoulmate.analytics.models import Profile, QueuedMessage
from mysoulmate.analytics.ports import EventStore, ProfileUpdate
from mysoulmate.analytics.profiles import merge_identify

from tests.support.messages import identify, jan


def merge(message: QueuedMessage, profile: Profile | None) -> Profile:
    return merge_identify(profile, message)


def updates_of(*messages: QueuedMessage) -> dict[str, tuple[ProfileUpdate, datetime]]:
    return {m.userId: (partial(merge, m), m.receivedAt) for m in messages}


def test_many_users_merged_at_once_as_one_by_one(store: EventStore) -> None:
    store.update_profile("u-0", partial(merge, identify("u-0", jan(1), plan="free")))
    messages = [identify(f"u-{n}", jan(5), plan="pro", n=n) for n in range(120)]
    results = store.update_profiles(updates_of(*messages))
    assert results.failed == {}
    assert set(results.merged) == {f"u-{n}" for n in range(120)}
    for n in (0, 1, 77, 119):
        profile = store.get_profile(f"u-{n}")
        assert profile is not None
        assert profile.traits == {"plan": "pro", "n": n}
        assert results.merged[f"u-{n}"] == profile
    # The same deliveries again (a redelivery): nothing changes.
    assert store.update_profiles(updates_of(*messages)).failed == {}
    assert store.get_profile("u-7").traits == {"plan": "pro", "n": 7}  # type: ignore[union-attr]


def test_a_later_trait_wins_whatever_order_the_merges_run_in(store: EventStore) -> None:
    store.update_profiles(updates_of(identify("ava", jan(9), plan="pro")))
    store.update_profiles(updates_of(identify("ava", jan(3), plan="free", locale="fr")))
    assert store.get_profile("ava").traits == {"plan": "pro", "locale": "fr"}  # type: ignore[union-attr]


def test_an_erased_user_is_skipped_and_the_others_written(store: EventStore) -> None:
    store.delete_user("erin", jan(10))
    erin = identify("erin", jan(9), email="erin@example.com")
    bob = identify("bob", jan(9), plan="pro")
    late = identify("cy", jan(11), plan="pro")
    results = store.update_profiles(updates_of(erin, bob, late))
    assert results.failed == {}
    assert results.merged["erin"] is None
    assert store.get_profile("erin") is None
    assert results.merged["bob"] is not None
    assert store.get_profile("bob") is not None
    assert store.get_profile("cy") is not None
