"""Forwarding stored messages to one provider: what may go, retries, and a circuit breaker.

One `Forwarder` per provider, fed from that provider's own queue, so a provider that is
down only backs up its own queue: storage and the other providers go on. Per message it
checks, when sending (not when queueing), that its person was not erased since it was
received and did not opt out (trait `analytics_opt_out`), and that the message's
``integrations`` do not turn the provider off. Only what the provider needs leaves: keys
that name secrets and contact traits (e-mail, phone) stay home unless allowed.

Sending retries with exponential backoff and full jitter (tenacity), never sooner than a
``Retry-After`` the provider asked for, behind the provider's circuit breaker (pybreaker):
after `BREAKER_FAILURES` failed sends in a row it stops calling for `BREAKER_RESET_SECONDS`
and every batch is deferred at once (redelivered by its queue later), so an outage costs
no time per batch. A ledger, where given, records what the provider accepted, chunk by
chunk: a redelivered batch is never sent twice to a provider that cannot deduplicate.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pybreaker
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from mysoulmate.analytics.models import QueuedMessage
from mysoulmate.analytics.pii import is_secret_key
from mysoulmate.analytics.ports import MessageKey
from mysoulmate.observability import count, get_logger, observe
from mysoulmate.providers.base import (
    ForwardResult,
    Provider,
    ProviderRejectedError,
    ProviderUnavailableError,
)
from mysoulmate.providers.ports import ForwardGuard, ForwardLedger

OPT_OUT_TRAIT = "analytics_opt_out"
# Profile traits that identify a person directly: kept in our profile, not sent on.
CONTACT_TRAITS = frozenset({"email", "phone", "phone_number", "mobile", "address"})
ATTEMPTS = 4  # per batch and delivery; the queue redelivers after that
MAX_WAIT_SECONDS = 30.0
BREAKER_FAILURES = 5
BREAKER_RESET_SECONDS = 60.0


@dataclass
class ForwardOutcome:
    """What one batch came to: sent, skipped by reason, and whether it must come back
    (``deferred``: the provider is unavailable) or can never go (``rejected``: why)."""

    sent: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    requests: int = 0
    deferred: str | None = None
    rejected: str | None = None


class Forwarder:
    def __init__(
        self,
        provider: Provider,
        guard: ForwardGuard,
        ledger: ForwardLedger | None = None,
        *,
        batch_size: int = 50,
        allowed_properties: frozenset[str] = frozenset(),
        attempts: int = ATTEMPTS,
        max_wait: float = MAX_WAIT_SECONDS,
        breaker_failures: int = BREAKER_FAILURES,
        breaker_reset: float = BREAKER_RESET_SECONDS,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.provider = provider
        self._guard = guard
        self._ledger = ledger
        self._batch_size = batch_size
        self._allowed = allowed_properties
        self._attempts = attempts
        self._max_wait = max_wait
        self._sleep = sleep
        # Only unavailability trips the breaker: a refused batch says nothing of the provider.
        self.breaker = pybreaker.CircuitBreaker(
            fail_max=breaker_failures,
            reset_timeout=breaker_reset,
            exclude=[ProviderRejectedError],
            name=provider.name,
        )

    def forward(self, messages: Sequence[QueuedMessage]) -> ForwardOutcome:
        outcome = ForwardOutcome()
        first: dict[MessageKey, QueuedMessage] = {}
        for message in messages:
            first.setdefault(message.key, message)
        unique = list(first.values())
        if len(unique) < len(messages):
            outcome.skipped["duplicate"] += len(messages) - len(unique)
        eligible = self._eligible(unique, outcome)
        if self._ledger is not None and eligible:
            done = self._ledger.forwarded(self.provider.name, [m.key for m in eligible])
            if done:
                outcome.skipped["duplicate"] += len(done)
                eligible = [m for m in eligible if m.key not in done]
        # A person's messages side by side (in time order): providers that send one
        # person per request (GA4) then need the fewest requests.
        eligible.sort(key=lambda m: m.userId)
        receipts = {m.key: m.receivedAt for m in eligible}
        for chunk in _chunks(eligible, self._batch_size):
            try:
                self._send(chunk, outcome)
            except ProviderRejectedError as exc:
                outcome.rejected = str(exc)
                break
            except ProviderUnavailableError as exc:
                if self._ledger is not None and exc.accepted:
                    accepted = {key: receipts[key] for key in exc.accepted}
                    self._ledger.record(self.provider.name, accepted)
                    outcome.sent += len(exc.accepted)
                outcome.deferred = str(exc)
                break
            except pybreaker.CircuitBreakerError as exc:
                outcome.deferred = str(exc) or "circuit open"
                break
        self._report(outcome)
        return outcome

    def open_for(self) -> float:
        """Seconds until the open breaker lets a trial call through; 0 when it would now."""
        # pybreaker keeps the opening time in its state storage only.
        opened = self.breaker._state_storage.opened_at
        if self.breaker.current_state != "open" or opened is None:
            return 0.0
        resting = self.breaker.reset_timeout - (datetime.now(UTC) - opened).total_seconds()
        return max(resting, 0.0)

    # -- what may go --------------------------------------------------------------------

    def _eligible(
        self, messages: Sequence[QueuedMessage], outcome: ForwardOutcome
    ) -> list[QueuedMessage]:
        kept = self._not_erased(messages)
        if len(kept) < len(messages):
            outcome.skipped["erased"] += len(messages) - len(kept)
        opted_out = {person for person in {m.userId for m in kept} if self._opted_out(person)}
        eligible: list[QueuedMessage] = []
        for message in kept:
            if message.userId in opted_out or _opts_out(message):
                outcome.skipped["opt_out"] += 1
            elif not _integration_on(message, self.provider.integration):
                outcome.skipped["integrations"] += 1
            else:
                eligible.append(self._outgoing(message))
        return eligible

    def _not_erased(self, messages: Sequence[QueuedMessage]) -> list[QueuedMessage]:
        """``messages`` less those whose person was erased at or after their receipt."""
        people = {m.userId for m in messages}
        erased = self._guard.erased_users(people) if people else {}
        if not erased:
            return list(messages)
        return [
            m for m in messages if erased.get(m.userId) is None or m.receivedAt > erased[m.userId]
        ]

    def _opted_out(self, person: str) -> bool:
        profile = self._guard.get_profile(person)
        return profile is not None and profile.traits.get(OPT_OUT_TRAIT) is True

    def _outgoing(self, message: QueuedMessage) -> QueuedMessage:
        """The message with only what may leave us."""
        return message.model_copy(
            update={
                "properties": _kept(message.properties, self._allowed, contact=False),
                "traits": _kept(message.traits, self._allowed, contact=True),
                "traitsOnce": _kept(message.traitsOnce, self._allowed, contact=True),
                "context": _kept(message.context, self._allowed, contact=False),
            }
        )

    # -- sending ------------------------------------------------------------------------

    def _send(self, chunk: list[QueuedMessage], outcome: ForwardOutcome) -> None:
        retrying = Retrying(
            stop=stop_after_attempt(self._attempts),
            wait=self._wait,
            retry=retry_if_exception_type(ProviderUnavailableError),
            sleep=self._sleep,
            before_sleep=lambda _: count("ForwardRetried", provider=self.provider.name),
            reraise=True,
        )
        result = retrying(self.breaker.call, self._attempt, chunk)
        outcome.sent += result.sent
        outcome.skipped.update(result.skipped)
        outcome.requests += result.requests
        if self._ledger is not None:
            self._ledger.record(self.provider.name, {m.key: m.receivedAt for m in chunk})
        lag = datetime.now(UTC) - min(m.receivedAt for m in chunk)
        observe("ForwardLag", lag.total_seconds(), provider=self.provider.name)

    def _attempt(self, chunk: list[QueuedMessage]) -> ForwardResult:
        """One send of ``chunk``, less whoever was erased since it was checked: a retry
        after a wait must not send what an erasure in the meantime stopped."""
        fresh = self._not_erased(chunk)
        if len(fresh) == len(chunk):
            return self.provider.forward(chunk)
        result = self.provider.forward(fresh) if fresh else ForwardResult()
        result.skipped["erased"] += len(chunk) - len(fresh)
        return result

    def _wait(self, state: RetryCallState) -> float:
        """Full jitter over an exponential ceiling, but never sooner than Retry-After."""
        jitter = wait_random_exponential(multiplier=0.5, max=self._max_wait)(state)
        error = state.outcome.exception() if state.outcome else None
        asked = getattr(error, "retry_after", None) or 0.0
        return float(min(max(jitter, asked), max(self._max_wait, asked)))

    def _report(self, outcome: ForwardOutcome) -> None:
        name = self.provider.name
        count("Forwarded", outcome.sent, provider=name)
        for reason, skipped in outcome.skipped.items():
            count("ForwardSkipped", skipped, provider=name, reason=reason)
        if outcome.deferred or outcome.rejected:
            count("ForwardFailed", provider=name)
            get_logger().warning(
                "forwarding failed",
                extra={
                    "provider": name,
                    "deferred": outcome.deferred,
                    "rejected": outcome.rejected,
                },
            )


def _integration_on(message: QueuedMessage, integration: str) -> bool:
    """Segment's rule: a provider's own key wins, else ``All`` (default on)."""
    settings = message.integrations
    own = settings.get(integration)
    if isinstance(own, bool):
        return own
    if own is not None:  # an options object turns it on
        return True
    return settings.get("All", True) is not False


def _opts_out(message: QueuedMessage) -> bool:
    """An identify that opts out stops its own forwarding too."""
    return message.traits.get(OPT_OUT_TRAIT) is True


def _kept(values: dict[str, Any], allowed: frozenset[str], *, contact: bool) -> dict[str, Any]:
    def private(key: str) -> bool:
        if key in allowed:
            return False
        return is_secret_key(key) or (contact and key.lower() in CONTACT_TRAITS)

    if not any(private(key) for key in values):
        return values
    return {key: value for key, value in values.items() if not private(key)}


def _chunks(messages: list[QueuedMessage], size: int) -> Iterator[list[QueuedMessage]]:
    for start in range(0, len(messages), size):
        yield messages[start : start + size]
