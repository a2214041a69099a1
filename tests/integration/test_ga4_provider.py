"""The GA4 provider against a live local HTTP server: what goes over the wire (URL, query
string, JSON body, chunking, the body-size split) and how every kind of answer or failure
becomes a result or a provider error, without the API secret ever leaking into one."""

from __future__ import annotations

import json
import socket
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
from mysoulmate.analytics.models import QueuedMessage
from mysoulmate.providers.base import (
    Provider,
    ProviderRejectedError,
    ProviderUnavailableError,
)
from mysoulmate.providers.ga4 import Ga4Provider
from mysoulmate.providers.ga4_mapping import ga4_session_id

from tests.support.capture_server import CapturedRequest, CaptureServer, Reply

NOW = datetime(2026, 1, 31, 12, tzinfo=UTC)
SECRET = "s3cr3t/+Key=="  # characters that URL-encoding changes, so both forms are checked
MEASUREMENT_ID = "G-TEST123"


def message(
    n: int,
    *,
    user: str = "alice",
    at: datetime | None = None,
    fields: dict[str, Any] | None = None,
    **props: Any,
) -> QueuedMessage:
    moment = at or NOW - timedelta(minutes=5)
    return QueuedMessage(
        type="track",
        messageId=f"m-{n}",
        userId=user,
        event="Song Played",
        timestamp=moment,
        receivedAt=moment,
        sessionId="s_1",
        properties={**(fields or {}), **props},
    )


@pytest.fixture
def server() -> Iterator[CaptureServer]:
    with CaptureServer(status=204, body=b"") as running:
        yield running


def provider_for(server: CaptureServer, timeout: float = 5.0) -> Ga4Provider:
    return Ga4Provider(
        MEASUREMENT_ID, SECRET, f"{server.url}/mp/collect", timeout=timeout, now=lambda: NOW
    )


def bodies(server: CaptureServer) -> list[dict[str, Any]]:
    return [request.json() for request in server.received()]


def assert_no_secret(error: BaseException) -> None:
    """Neither the message nor anything chained to the error holds the secret."""
    texts = [str(error), repr(error), *map(str, error.args)]
    for text in texts:
        for form in (SECRET, "s3cr3t%2F%2BKey%3D%3D", "s3cr3t"):
            assert form not in text, text
    assert error.__cause__ is None
    assert error.__context__ is None


# ----------------------------------------------------------------------------- the wire


def test_the_request_as_sent(server: CaptureServer) -> None:
    provider: Provider = provider_for(server)
    assert (provider.name, provider.integration) == ("ga4", "Google Analytics 4")
    page = QueuedMessage(
        type="page",
        messageId="p-1",
        userId="alice",
        anonymousId="device-1",
        name="Home",
        timestamp=NOW - timedelta(minutes=1),
        receivedAt=NOW,
        sessionId="1712345678",
        properties={"url": "https://ex.com/"},
    )
    identify = QueuedMessage(
        type="identify",
        messageId="i-1",
        userId="alice",
        anonymousId="device-1",
        timestamp=NOW - timedelta(minutes=2),
        receivedAt=NOW,
        traits={"plan": "gold"},
    )

    result = provider.forward([page, identify])

    assert (result.sent, result.requests, result.skipped) == (2, 1, Counter())
    (request,) = server.received()
    assert (request.method, request.path) == ("POST", "/mp/collect")
    assert request.query == {"measurement_id": [MEASUREMENT_ID], "api_secret": [SECRET]}
    assert request.headers["content-type"].startswith("application/json")
    assert request.json() == {
        "client_id": "device-1",
        "user_id": "alice",
        "user_properties": {
            "plan": {
                "value": "gold",
                "timestamp_micros": int((NOW - timedelta(minutes=2)).timestamp()) * 10**6,
            }
        },
        "events": [
            {
                "name": "page_view",
                "params": {
                    "engagement_time_msec": 1,
                    "session_id": 1712345678,
                    "page_title": "Home",
                    "page_location": "https://ex.com/",
                },
                "timestamp_micros": int((NOW - timedelta(minutes=1)).timestamp()) * 10**6,
            }
        ],
    }


def test_60_events_go_in_3_requests(server: CaptureServer) -> None:
    result = provider_for(server).forward([message(n, track=n) for n in range(60)])

    assert (result.sent, result.requests) == (60, 3)
    sent = bodies(server)
    assert [len(body["events"]) for body in sent] == [25, 25, 10]
    tracks = [event["params"]["track"] for body in sent for event in body["events"]]
    assert tracks == list(range(60))  # in order, each once
    assert {event["params"]["session_id"] for b in sent for event in b["events"]} == {
        ga4_session_id("s_1")
    }


def test_a_body_over_130_kb_is_split(server: CaptureServer) -> None:
    heavy = {f"field{i}": "€" * 100 for i in range(23)}  # ~7.4 kB of UTF-8 per event
    result = provider_for(server).forward([message(n, fields=heavy) for n in range(25)])

    assert (result.sent, result.requests) == (25, 2)
    received = server.received()
    assert all(len(request.raw_body) < 130_000 for request in received)
    assert sum(len(request.raw_body) for request in received) > 130_000
    assert sum(len(request.json()["events"]) for request in received) == 25


def test_old_and_unsupported_messages_are_counted_not_sent(server: CaptureServer) -> None:
    old = message(1, at=NOW - timedelta(hours=73))
    alias = message(2).model_copy(update={"type": "alias", "event": None, "previousId": "x"})
    result = provider_for(server).forward([old, alias, message(3)])

    assert result.skipped == Counter({"too_old": 1, "unsupported": 1})
    assert (result.sent, result.requests) == (1, 1)
    assert len(bodies(server)[0]["events"]) == 1


def test_nothing_to_send_makes_no_request(server: CaptureServer) -> None:
    result = provider_for(server).forward([message(1, at=NOW - timedelta(days=4))])
    assert (result.sent, result.requests, result.skipped) == (0, 0, Counter({"too_old": 1}))
    assert server.received() == []


# ----------------------------------------------------------------------------- failures


def test_429_with_retry_after_is_unavailable_with_the_wait(server: CaptureServer) -> None:
    server.replies.append(Reply(429, {"Retry-After": "7"}))
    with pytest.raises(ProviderUnavailableError) as caught:
        provider_for(server).forward([message(1)])
    assert caught.value.retry_after == 7.0
    assert "429" in str(caught.value)
    assert "api_secret=%5Bredacted%5D" in str(caught.value)
    assert_no_secret(caught.value)


def test_a_retry_after_date_is_read_too(server: CaptureServer) -> None:
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    server.replies.append(Reply(503, {"Retry-After": later}))
    with pytest.raises(ProviderUnavailableError) as caught:
        provider_for(server).forward([message(1)])
    assert caught.value.retry_after is not None
    assert 25 <= caught.value.retry_after <= 30


def test_500_is_unavailable(server: CaptureServer) -> None:
    server.replies.append(Reply(500, body=f"oops {SECRET}".encode()))
    with pytest.raises(ProviderUnavailableError) as caught:
        provider_for(server).forward([message(1)])
    assert caught.value.retry_after is None
    assert "HTTP 500" in str(caught.value)
    assert_no_secret(caught.value)


def test_400_is_rejected_and_the_echoed_secret_is_redacted(server: CaptureServer) -> None:
    echo = f'{{"error": "bad request to /mp/collect?api_secret={SECRET}"}}'
    server.replies.append(Reply(400, body=echo.encode()))
    with pytest.raises(ProviderRejectedError) as caught:
        provider_for(server).forward([message(1)])
    assert "HTTP 400" in str(caught.value)
    assert "bad request" in str(caught.value)
    assert_no_secret(caught.value)


def test_a_redirect_is_not_followed(server: CaptureServer) -> None:
    server.replies.append(Reply(302, {"Location": f"{server.url}/elsewhere"}))
    with pytest.raises(ProviderRejectedError) as caught:
        provider_for(server).forward([message(1)])
    assert "HTTP 302" in str(caught.value)
    assert [request.path for request in server.received()] == ["/mp/collect"]
    assert_no_secret(caught.value)


def test_a_hang_beyond_the_timeout_is_unavailable(server: CaptureServer) -> None:
    server.replies.append(Reply(204, delay=3.0))
    started = time.monotonic()
    with pytest.raises(ProviderUnavailableError) as caught:
        provider_for(server, timeout=0.3).forward([message(1)])
    assert time.monotonic() - started < 2.5  # gave up at the timeout, not at the answer
    assert "timed out" in str(caught.value).lower() or "Timeout" in str(caught.value)
    assert_no_secret(caught.value)


def test_a_refused_connection_is_unavailable() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}/mp/collect"
    provider = Ga4Provider(MEASUREMENT_ID, SECRET, endpoint, now=lambda: NOW)
    with pytest.raises(ProviderUnavailableError) as caught:
        provider.forward([message(1)])
    assert "ConnectionRefusedError" in str(caught.value)
    assert_no_secret(caught.value)


def test_a_retried_chunk_does_not_resend_what_ga4_accepted(server: CaptureServer) -> None:
    provider = provider_for(server)
    chunk = [message(n, track=n) for n in range(60)]
    server.replies.extend([Reply(204), Reply(500)])
    with pytest.raises(ProviderUnavailableError):
        provider.forward(chunk)  # the first 25 accepted, the next 25 not, the last 10 not tried

    result = provider.forward(chunk)  # the forwarder's retry

    assert (result.sent, result.requests) == (60, 2)
    sent: list[CapturedRequest] = server.received()
    assert len(sent) == 4
    tracks = [[event["params"]["track"] for event in r.json()["events"]] for r in sent]
    assert tracks[0] == list(range(25))
    assert tracks[1] == list(range(25, 50))
    assert tracks[2] + tracks[3] == list(range(25, 60))  # 0-24 are not sent twice


# ----------------------------------------------------------------------------- the rest


def test_the_validation_server(server: CaptureServer) -> None:
    answer = {
        "validationMessages": [
            {"fieldPath": "events", "description": "bad", "validationCode": "NAME_INVALID"}
        ]
    }
    server.replies.append(Reply(200, body=json.dumps(answer).encode()))
    found = provider_for(server).validate([message(1)])
    assert found == answer["validationMessages"]
    (request,) = server.received()
    assert request.path == "/debug/mp/collect"
    assert request.query["api_secret"] == [SECRET]


def test_configuration_is_checked_and_never_shows_the_secret() -> None:
    for endpoint in ("ftp://example.com/mp/collect", "not a url", "https://x/mp/collect?a=1"):
        with pytest.raises(ValueError, match="endpoint") as caught:
            Ga4Provider(MEASUREMENT_ID, SECRET, endpoint)
        assert SECRET not in str(caught.value)
    with pytest.raises(ValueError, match="API secret"):
        Ga4Provider(MEASUREMENT_ID, "")
    provider = Ga4Provider(MEASUREMENT_ID, SECRET)
    assert SECRET not in repr(provider)
    assert SECRET not in provider.redacted_url()
    assert provider.debug_endpoint() == "https://www.google-analytics.com/debug/mp/collect"
