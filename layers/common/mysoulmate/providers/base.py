"""What every provider adapter offers the forwarder, and the errors it may raise.

A provider turns a chunk of stored messages into its own requests and sends them. It does not
retry: the forwarder owns retries (exponential backoff with full jitter, ``Retry-After``) and
each provider's circuit breaker, so every provider behaves the same under an outage.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from mysoulmate.analytics.models import QueuedMessage
from mysoulmate.analytics.ports import MessageKey


@dataclass
class ForwardResult:
    """What one `Provider.forward` call did: messages sent, messages left out on purpose
    (by reason: too old, a limit, …) and the HTTP requests it made."""

    sent: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    requests: int = 0


class ProviderUnavailableError(RuntimeError):
    """The provider could not take the chunk now (5xx, 429, timeout, refused connection):
    send it again later, not before ``retry_after`` seconds when the provider said so."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after
        # Messages of the chunk the provider did accept before failing (several requests
        # per chunk): the forwarder's ledger records them, so a redelivery skips them.
        self.accepted: tuple[MessageKey, ...] = ()


class ProviderRejectedError(RuntimeError):
    """The provider refused the chunk for good (a 4xx other than 429): retrying the same
    request cannot help, so it is dead-lettered with this reason."""


class Provider(Protocol):
    """One analytics provider. ``name`` is its key in metrics, ledgers and queues
    (``mixpanel``, ``ga4``); ``integration`` its name in a message's ``integrations``
    (Segment's: ``Mixpanel``, ``Google Analytics 4``)."""

    name: str
    integration: str

    def forward(self, messages: Sequence[QueuedMessage]) -> ForwardResult:
        """Send ``messages`` (already filtered for opt-out, integrations and erasure, each
        at most once per provider as far as the forwarder knows). Raise
        `ProviderUnavailableError` or `ProviderRejectedError` when they were not accepted."""
        ...
