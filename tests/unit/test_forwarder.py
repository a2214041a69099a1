"""The forwarder's rules, with a scripted provider: what may go (erasure, opt-out,
integrations, private keys), retries that honour Retry-After, the circuit breaker, and the
ledger that keeps a redelivered batch from being sent twice."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

import pytest
from mysoulmate.analytics.models import Profile, QueuedMessage
from mysoulmate.analytics.ports import MessageKey
from mysoulmate.providers.base import (
    ForwardResult,
    ProviderRejectedError,
    ProviderUnavailableError,
)
from mysoulmate.providers.forwarder import Forwarder

from tests.support.memory_store import MemoryEventStore
from tests.support.messages import identify, jan, track


class ScriptedProvider:
    """Takes every chunk, or raises the next scripted error first."""

    name = "test"
    integration = "Test Provider"

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.chunks: list[list[QueuedMessage]] = []
        self.calls = 0

    def forward(self, messages: Sequence[QueuedMessage]) -> ForwardResult:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        self.chunks.append(list(messages))
        return ForwardResult(sent=len(messages), requests=1)

    @property
    def sent(self) -> list[str]:
        return [m.messageId for chunk in self.chunks for m in chunk]


class MemoryLedger:
    def __init__(self) -> None:
        self.receipts: dict[tuple[str, MessageKey], datetime] = {}

    @property
    def keys(self) -> set[tuple[str, MessageKey]]:
        return set(self.receipts)

    def forwarded(self, provider: str, keys: Collection[MessageKey]) -> set[MessageKey]:
        return {key for key in keys if (provider, key) in self.receipts}

    def record(self, provider: str, receipts: Mapping[MessageKey, datetime]) -> None:
        self.receipts.update({(provider, key): at for key, at in receipts.items()})


def forwarder(
    provider: ScriptedProvider,
    store: MemoryEventStore | None = None,
    ledger: MemoryLedger | None = None,
    **options: Any,
) -> tuple[Forwarder, list[float]]:
    slept: list[float] = []
    built = Forwarder(provider, store or MemoryEventStore(), ledger, sleep=slept.append, **options)
    return built, slept


def test_everything_stored_goes_in_chunks_of_the_batch_size() -> None:
    provider = ScriptedProvider()
    messages = [track("ann", "e", jan(1, 9), message_id=f"m{i}") for i in range(5)]
    outcome = forwarder(provider, batch_size=2)[0].forward(messages)
    assert [len(chunk) for chunk in provider.chunks] == [2, 2, 1]
    assert (outcome.sent, outcome.deferred, outcome.rejected) == (5, None, None)


def test_integrations_follow_segments_rule() -> None:
    provider = ScriptedProvider()
    off = {"All": False}
    messages = [
        track("ann", "e", jan(1)).model_copy(update={"messageId": "all-off", "integrations": off}),
        track("ann", "e", jan(1)).model_copy(
            update={"messageId": "own-on", "integrations": {"All": False, "Test Provider": True}}
        ),
        track("ann", "e", jan(1)).model_copy(
            update={"messageId": "own-off", "integrations": {"Test Provider": False}}
        ),
        track("ann", "e", jan(1)).model_copy(
            update={"messageId": "options", "integrations": {"All": False, "Test Provider": {}}}
        ),
        track("ann", "e", jan(1), message_id="default"),
    ]
    outcome = forwarder(provider)[0].forward(messages)
    assert provider.sent == ["own-on", "options", "default"]
    assert outcome.skipped == {"integrations": 2}


def test_opted_out_and_erased_people_are_not_forwarded() -> None:
    store = MemoryEventStore()
    store.update_profile("opt", lambda _: Profile(userId="opt", traits={"analytics_opt_out": True}))
    store.delete_user("gone", jan(2))
    provider = ScriptedProvider()
    messages = [
        track("opt", "e", jan(3), message_id="opted-out"),
        track("gone", "e", jan(1), message_id="erased-later"),
        track("gone", "e", jan(3), message_id="after-erasure"),
        identify("new", jan(3), analytics_opt_out=True).model_copy(update={"messageId": "optout"}),
        track("ann", "e", jan(3), message_id="ok"),
    ]
    outcome = forwarder(provider, store)[0].forward(messages)
    assert sorted(provider.sent) == ["after-erasure", "ok"]
    assert outcome.skipped == {"opt_out": 2, "erased": 1}


def test_secrets_and_contact_traits_stay_home_unless_allowed() -> None:
    provider = ScriptedProvider()
    message = identify("ann", jan(1), email="a@example.com", phone="+33 6 12 34 56 78", plan="pro")
    message = message.model_copy(update={"properties": {"api_token": "t", "plan": "pro"}})
    forwarder(provider)[0].forward([message])
    (sent,) = provider.chunks[0]
    assert sent.traits == {"plan": "pro"}
    assert sent.properties == {"plan": "pro"}
    allowed = ScriptedProvider()
    forwarder(allowed, allowed_properties=frozenset({"email"}))[0].forward([message])
    assert allowed.chunks[0][0].traits == {"email": "a@example.com", "plan": "pro"}


def test_unavailable_is_retried_with_backoff_never_sooner_than_retry_after() -> None:
    provider = ScriptedProvider(
        ProviderUnavailableError("503"), ProviderUnavailableError("429", retry_after=7.5)
    )
    built, slept = forwarder(provider)
    outcome = built.forward([track("ann", "e", jan(1), message_id="m")])
    assert provider.sent == ["m"]
    assert outcome.deferred is None
    assert len(slept) == 2
    assert 0 <= slept[0] <= 30
    assert slept[1] >= 7.5


def test_a_refusal_is_not_retried_and_does_not_trip_the_breaker() -> None:
    provider = ScriptedProvider(*[ProviderRejectedError("400 bad request")] * 10)
    built, slept = forwarder(provider, breaker_failures=2)
    for _ in range(3):
        outcome = built.forward([track("ann", "e", jan(1))])
        assert outcome.rejected == "400 bad request"
    assert (provider.calls, slept) == (3, [])
    assert built.breaker.current_state == "closed"


def test_the_breaker_opens_after_failures_and_then_defers_without_calling() -> None:
    provider = ScriptedProvider(*[ProviderUnavailableError("down")] * 100)
    built, _ = forwarder(provider, attempts=2, breaker_failures=3, breaker_reset=60)
    first = built.forward([track("ann", "e", jan(1))])
    second = built.forward([track("ann", "e", jan(1))])
    assert first.deferred
    assert second.deferred
    assert provider.calls == 3  # 2 attempts, then the 3rd failure trips the breaker
    assert built.breaker.current_state == "open"
    assert built.open_for() > 50
    assert built.forward([track("ann", "e", jan(1))]).deferred
    assert provider.calls == 3  # no call while open


def test_the_ledger_sends_each_message_once_even_after_a_partial_failure() -> None:
    ledger = MemoryLedger()
    provider = ScriptedProvider()
    messages = [track("ann", "e", jan(1), message_id=f"m{i}") for i in range(4)]
    built, _ = forwarder(provider, ledger=ledger, batch_size=2, attempts=1)
    provider.errors = []
    # The second chunk fails: the first is recorded as sent.
    original = provider.forward

    def fail_second(chunk: Sequence[QueuedMessage]) -> ForwardResult:
        if chunk[0].messageId == "m2" and provider.calls == 1:
            provider.calls += 1
            raise ProviderUnavailableError("timeout")
        return original(chunk)

    provider.forward = fail_second  # type: ignore[method-assign]
    assert built.forward(messages).deferred == "timeout"
    assert provider.sent == ["m0", "m1"]
    outcome = built.forward(messages)  # the redelivery
    assert provider.sent == ["m0", "m1", "m2", "m3"]
    assert outcome.skipped == {"duplicate": 2}
    assert built.forward(messages).sent == 0


@pytest.mark.parametrize("attempts", [1, 3])
def test_a_batch_that_stays_unavailable_is_deferred_not_lost(attempts: int) -> None:
    provider = ScriptedProvider(*[ProviderUnavailableError("down")] * attempts)
    built, slept = forwarder(provider, attempts=attempts)
    outcome = built.forward([track("ann", "e", jan(1))])
    assert outcome.deferred == "down"
    assert (outcome.sent, len(slept)) == (0, attempts - 1)


def test_what_a_provider_accepted_before_failing_is_never_sent_again() -> None:
    """GA4 sends one person per request: a chunk can fail half-way through."""
    ledger = MemoryLedger()
    messages = [
        track(user, "e", jan(day), message_id=user)
        for day, user in ((1, "ann"), (2, "bob"), (3, "cy"))
    ]
    failure = ProviderUnavailableError("503 on the third request")
    failure.accepted = (messages[0].key, messages[1].key)
    provider = ScriptedProvider(failure)
    built, _ = forwarder(provider, ledger=ledger, attempts=1)
    outcome = built.forward(messages)
    assert (outcome.deferred, outcome.sent) == ("503 on the third request", 2)
    # Each entry keeps its message's receipt, which an erasure compares with its time.
    assert {key: at for (_, key), at in ledger.receipts.items()} == {
        m.key: m.receivedAt for m in messages[:2]
    }
    built.forward(messages)  # the redelivery, as another process would see it
    assert provider.sent == ["cy"]
