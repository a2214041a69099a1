"""Forwarding's wiring: which providers are on, and the queues between the consumer and them.

Laptop (single-process) shape: one durable local queue and one forwarder thread per
configured provider, fed by the consumer after it stores a batch. Each provider has its
own queue file (``DATA_DIR/forward-<provider>.db``, with its own dead-letter table) and its
own thread, so a provider that is down holds back only its own messages: the consumer only
appends to the queues, and never waits for a provider.

AWS shape: the consumer appends to each provider's SQS queue (`sqs_forward_hook`), and a
forwarder function per provider drains it (runtime/lambda_forwarder.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from pydantic import ValidationError

from mysoulmate.analytics.ingest import Forward, parse_body
from mysoulmate.analytics.models import QueuedMessage
from mysoulmate.analytics.packing import queue_bodies
from mysoulmate.analytics.ports import MessageQueue
from mysoulmate.core.settings import Settings, get_settings
from mysoulmate.observability import get_logger
from mysoulmate.providers.base import Provider
from mysoulmate.providers.forwarder import Forwarder
from mysoulmate.providers.ports import ForwardGuard
from mysoulmate.queue.local import LocalQueue
from mysoulmate.runtime.backends import forward_ledger
from mysoulmate.runtime.secrets import secret
from mysoulmate.runtime.worker import BackgroundLoop

# Seconds a deferred batch waits before it is tried again (the breaker decides the rest).
DEFER_SECONDS = 5.0


@dataclass(frozen=True)
class Route:
    """One provider's forwarding: its forwarder and its queue."""

    forwarder: Forwarder
    queue: LocalQueue


def configured_providers(settings: Settings) -> list[str]:
    """The names of the providers settings turn on (their secret set, or its parameter)."""
    names = []
    if settings.mixpanel_token or settings.mixpanel_token_parameter:
        names.append("mixpanel")
    if settings.ga_measurement_id and (settings.ga_api_secret or settings.ga_api_secret_parameter):
        names.append("ga4")
    return names


def build_providers(settings: Settings, only: str = "") -> list[tuple[Provider, int]]:
    """The providers that settings turn on (``only``: that one alone), each with its batch
    size. Their libraries are imported only here, and only for a provider that is on; their
    secrets are read here (from SSM on AWS), so a function that forwards to one provider
    never reads the other's."""
    wanted = [name for name in configured_providers(settings) if only in ("", name)]
    providers: list[tuple[Provider, int]] = []
    if "mixpanel" in wanted:
        from mysoulmate.providers.mixpanel import MixpanelProvider

        mixpanel = MixpanelProvider(
            secret(settings.mixpanel_token, settings.mixpanel_token_parameter),
            settings.mixpanel_api_host,
            api_secret=secret(settings.mixpanel_api_secret, settings.mixpanel_api_secret_parameter),
        )
        # The library sends 50 events per request; a larger chunk also packs the profile
        # updates (identify, revenue) 50 to a request instead of one request per chunk.
        providers.append((mixpanel, 2000))
    if "ga4" in wanted:
        from mysoulmate.providers.ga4 import Ga4Provider

        api_secret = secret(settings.ga_api_secret, settings.ga_api_secret_parameter)
        ga4 = Ga4Provider(settings.ga_measurement_id, api_secret, settings.ga_endpoint)
        # GA4 takes one person and up to 25 events per request: the provider splits a
        # chunk by person, so chunks far larger than 25 cost the fewest requests.
        providers.append((ga4, 500))
    return providers


def forward_queue(settings: Settings, provider: str) -> LocalQueue:
    return LocalQueue(
        settings.data_dir / f"forward-{provider}.db",
        visibility_timeout=settings.queue_visibility_timeout_seconds,
        max_receive_count=settings.queue_max_receive_count,
        dead_letter_signal="ForwardDeadLettered",
        signal_labels={"provider": provider},
    )


def forwarders(guard: ForwardGuard, settings: Settings) -> list[Forwarder]:
    """A forwarder per configured provider (none when no provider is configured); ``guard``
    is the event store, asked about erasures and opt-outs. Built once, at start-up."""
    providers = build_providers(settings)
    if not providers:
        return []
    ledger = forward_ledger()
    allowed = frozenset(settings.forward_allowed_properties)
    return [
        Forwarder(provider, guard, ledger, batch_size=size, allowed_properties=allowed)
        for provider, size in providers
    ]


def routes(guard: ForwardGuard) -> tuple[Route, ...]:
    """Every configured provider's forwarder with its local queue (the laptop shape)."""
    settings = get_settings()
    return tuple(
        Route(forwarder, forward_queue(settings, forwarder.provider.name))
        for forwarder in forwarders(guard, settings)
    )


def enqueue_hook(queues: Sequence[MessageQueue]) -> Forward:
    """The consumer's forward hook: the stored messages, packed, into every provider's queue."""

    def enqueue(messages: list[QueuedMessage]) -> None:
        bodies = queue_bodies(messages)
        for queue in queues:
            queue.send_batch(bodies)

    return enqueue


def forward_queue_urls(settings: Settings) -> dict[str, str]:
    """Provider name -> its SQS forward queue URL, for the providers the stack forwards to."""
    urls = {"mixpanel": settings.mixpanel_forward_queue_url, "ga4": settings.ga4_forward_queue_url}
    return {name: url for name, url in urls.items() if url}


def sqs_forward_hook(settings: Settings) -> Forward | None:
    """The SQS consumer's forward hook: stored messages into each provider's SQS queue (the
    consumer needs only the queues' URLs, never a provider's secret)."""
    urls = forward_queue_urls(settings)
    if not urls:
        return None
    from mysoulmate.queue.sqs import SqsQueue
    from mysoulmate.storage.aws import aws_client

    client = aws_client("sqs")
    return enqueue_hook([SqsQueue(url, client) for url in urls.values()])


T = TypeVar("T")


@dataclass(frozen=True)
class ParsedBatch(Generic[T]):
    """A batch of queued forward bodies: the messages of those that parse, the items they
    came in, and the items that can never be forwarded, each with why."""

    messages: list[QueuedMessage]
    readable: list[T]
    unreadable: list[tuple[T, str]]


def parse_forward_batch(items: Sequence[T], body: Callable[[T], str]) -> ParsedBatch[T]:
    """Parse each item's body (``body`` reads it); the three forwarding shapes share this."""
    parsed: ParsedBatch[T] = ParsedBatch([], [], [])
    for item in items:
        try:
            parsed.messages.extend(parse_body(body(item)))
            parsed.readable.append(item)
        except ValidationError as exc:
            parsed.unreadable.append(
                (item, f"invalid forward message: {exc.error_count()} error(s)")
            )
    return parsed


def forward_once(route: Route, batch_size: int) -> int:
    """Receive one batch from the route's queue and forward it; return bodies handled."""
    received = route.queue.receive(batch_size)
    if not received:
        return 0
    parsed = parse_forward_batch(received, lambda record: record.body)
    receipts = [record.receipt for record in parsed.readable]
    route.queue.record_failures({record.receipt: why for record, why in parsed.unreadable})
    outcome = route.forwarder.forward(parsed.messages)
    if outcome.deferred:
        route.queue.release(receipts, DEFER_SECONDS)
    elif outcome.rejected:
        route.queue.record_failures(dict.fromkeys(receipts, f"rejected: {outcome.rejected}"))
    else:
        route.queue.delete(receipts)
    return len(received)


class ForwardWorker(BackgroundLoop):
    """A thread per route draining its queue; it waits while the provider's breaker is
    open instead of receiving (and deferring) the same messages again and again."""

    def __init__(self, route: Route, *, batch_size: int, poll_interval: float) -> None:
        super().__init__()
        self.thread_name = f"forward-{route.forwarder.provider.name}"
        self._route = route
        self._batch_size = batch_size
        self._poll_interval = poll_interval

    def _run(self) -> None:
        while not self._stop.is_set():
            resting = self._route.forwarder.open_for()
            if resting > 0:
                self._stop.wait(min(resting, DEFER_SECONDS))
                continue
            try:
                handled = forward_once(self._route, self._batch_size)
            except Exception:  # noqa: BLE001 - the thread must outlive any one batch
                get_logger().exception("forward worker iteration failed; retrying")
                handled = 0
            if not handled:
                self._stop.wait(self._poll_interval)
