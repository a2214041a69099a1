"""Forwarding stored messages to Mixpanel with the official ``mixpanel`` library.

Each `MixpanelProvider.forward` call turns a chunk into Mixpanel calls
(`mixpanel_mapping.plan_message`), sends them through the library's `BufferedConsumer`
(at most 50 messages per request and endpoint) and flushes before returning. Events go
first (/track, or /import when older than 5 days), profile updates (/engage, /groups) only
once every event batch was accepted: a retried chunk re-sends events, which Mixpanel
deduplicates by ``$insert_id``, but an ``$append`` to ``$transactions`` is not deduplicated.

One attempt per request (the forwarder retries); failures are `ProviderUnavailableError`
(connection errors, timeouts, 408, 429, 5xx, with ``Retry-After``) or
`ProviderRejectedError` (other 4xx, or a 2xx whose body refuses the batch), worded without
the token or the API secret (`mixpanel_wire`). The library is imported by the constructor.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from mysoulmate.analytics.models import QueuedMessage
from mysoulmate.providers.base import ForwardResult
from mysoulmate.providers.mixpanel_mapping import (
    EventCall,
    Plan,
    ProfileCall,
    base_url,
    plan_message,
)

if TYPE_CHECKING:
    from mysoulmate.providers.mixpanel_wire import WireConsumer

DEFAULT_TIMEOUT = 10.0  # seconds, to connect and between bytes of the answer


def _utc_now() -> datetime:
    return datetime.now(UTC)


class MixpanelProvider:
    """Mixpanel as a `Provider`. ``api_host`` is a host name (``api.mixpanel.com``,
    ``api-eu.mixpanel.com``) or a full base URL (``http://127.0.0.1:PORT`` in tests);
    ``api_secret`` enables /import for events older than 5 days; ``group_key`` (a group
    key configured in the Mixpanel project, e.g. ``company``) enables group calls."""

    name = "mixpanel"
    integration = "Mixpanel"

    def __init__(
        self,
        token: str,
        api_host: str = "api.mixpanel.com",
        api_secret: str = "",
        *,
        timeout: float = DEFAULT_TIMEOUT,
        now: Callable[[], datetime] = _utc_now,
        group_key: str = "",
    ) -> None:
        from mysoulmate.providers import mixpanel_wire

        self._wire_module = mixpanel_wire
        self._base = base_url(api_host)
        self._token = token
        self._can_import = bool(api_secret)
        self._now = now
        self._group_key = group_key
        self._wire: WireConsumer = mixpanel_wire.WireConsumer(token, api_host, api_secret, timeout)
        self._lock = threading.Lock()  # one chunk at a time: the wire counts and remembers

    def __repr__(self) -> str:  # never the token
        return f"MixpanelProvider(api={self._base!r})"

    def forward(self, messages: Sequence[QueuedMessage]) -> ForwardResult:
        with self._lock:
            return self._forward(messages)

    def _forward(self, messages: Sequence[QueuedMessage]) -> ForwardResult:
        result = ForwardResult()
        now = self._now()
        plans: list[Plan] = []
        for message in messages:
            plan = plan_message(
                message, now=now, can_import=self._can_import, group_key=self._group_key
            )
            if plan.skipped:
                result.skipped[plan.skipped] += 1
            else:
                plans.append(plan)
        if not plans:
            return result
        started = self._wire.requests
        consumer = self._wire_module.ChunkConsumer(self._wire)
        client = self._wire_module.client(self._token, consumer)
        try:
            for plan in plans:
                for event in plan.events:
                    _send_event(client, event)
            consumer.flush()
            for plan in plans:
                for update in plan.profile:
                    _send_profile(client, update)
            consumer.flush()
        finally:
            result.requests = self._wire.requests - started
        result.sent = len(plans)
        return result


def _send_event(client: Any, event: EventCall) -> None:
    if event.imported:
        # No api_key/api_secret here: the wire consumer sends the secret to /import.
        time = event.properties["time"]
        client.import_data(None, event.distinct_id, event.name, time, event.properties)
    else:
        client.track(event.distinct_id, event.name, event.properties)


def _send_profile(client: Any, update: ProfileCall) -> None:
    if update.op == "set":
        client.people_set(update.target, update.values)
    elif update.op == "set_once":
        client.people_set_once(update.target, update.values)
    elif update.op == "charge":
        client.people_track_charge(update.target, update.amount, dict(update.values))
    elif update.op == "union":
        client.people_union(update.target, update.values)
    elif update.op == "group_set":
        client.group_set(update.group_key, update.target, update.values)
