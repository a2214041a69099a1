"""The forwarder's ports: what it asks storage before sending, and the ledger that makes
forwarding exactly-once for providers that cannot deduplicate (GA4)."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Protocol

from mysoulmate.analytics.models import Profile
from mysoulmate.analytics.ports import MessageKey


class ForwardGuard(Protocol):
    """The part of `EventStore` the forwarder reads: erasures and opt-outs are checked when
    a message is sent, not when it was queued, so they apply to what is still waiting."""

    def erased_users(self, users: Collection[str]) -> dict[str, datetime]:
        """The latest erasure time of each of ``users`` who was ever erased."""
        ...

    def get_profile(self, user_id: str) -> Profile | None: ...


class ForwardLedger(Protocol):
    """Which messages a provider has accepted, per provider."""

    def forwarded(self, provider: str, keys: Collection[MessageKey]) -> set[MessageKey]:
        """Those of ``keys`` already accepted by ``provider``."""
        ...

    def record(self, provider: str, receipts: Mapping[MessageKey, datetime]) -> None:
        """Remember that ``provider`` accepted these messages (idempotent). Each key comes with
        its message's receipt: an erasure forgets the entries received at or before its
        time, and keeps the others (new data, whose redelivery must still be recognised)."""
        ...
