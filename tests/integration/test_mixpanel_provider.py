"""Forwarding to Mixpanel end to end: the official ``mixpanel`` library, driven by
`MixpanelProvider`, pointed at a capture server on 127.0.0.1.

Assertions are on what went over the wire: the library posts ``data=<JSON array>``
form-encoded to /track, /engage, /groups and /import; the server scripts Mixpanel's
answers (``{"status": 1}``, 5xx, 429 with ``Retry-After``, a hang).
"""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import sys
import traceback
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

import pytest
from mysoulmate.analytics.models import QueuedMessage
from mysoulmate.providers.base import (
    ForwardResult,
    ProviderRejectedError,
    ProviderUnavailableError,
)
from mysoulmate.providers.mixpanel import MixpanelProvider
from mysoulmate.providers.mixpanel_gdpr import delete_user_data
from mysoulmate.providers.mixpanel_wire import WireConsumer

from tests.support.capture_server import CapturedRequest, CaptureServer, Reply
from tests.support.messages import identify, identify_as, jan, track, visit

TOKEN = "tok3n-0f-the-pr0ject"
SECRET = "s3cret-0f-the-pr0ject"
GDPR_TOKEN = "gdpr-0auth-t0ken"
NOW = jan(20)
OK = b'{"status": 1, "error": null}'


@pytest.fixture(scope="module")
def capture() -> Iterator[CaptureServer]:
    with CaptureServer(body=OK) as running:  # stopping one takes ~0.5 s: one per module
        yield running


@pytest.fixture
def server(capture: CaptureServer) -> CaptureServer:
    capture.replies.clear()
    capture.clear()
    return capture


def provider_for(
    server: CaptureServer, *, api_secret: str = SECRET, timeout: float = 5.0, **kwargs: Any
) -> MixpanelProvider:
    return MixpanelProvider(
        TOKEN, server.url, api_secret=api_secret, timeout=timeout, now=lambda: NOW, **kwargs
    )


def records(request: CapturedRequest) -> list[dict[str, Any]]:
    """The JSON array the library posted as ``data=``."""
    form = parse_qs(request.text)
    data: list[dict[str, Any]] = json.loads(form["data"][0])
    return data


def sent(server: CapturedRequest | CaptureServer, path: str) -> list[dict[str, Any]]:
    assert isinstance(server, CaptureServer)
    return [record for r in server.received(lambda r: r.path == path) for record in records(r)]


def page(user: str, name: str | None, at: datetime, kind: str = "page") -> QueuedMessage:
    event = f"${kind}:{name}" if name else f"${kind}"
    return QueuedMessage.model_validate(
        {
            "type": kind,
            "messageId": f"{kind}-{name}-{at:%d%H%M}",
            "userId": user,
            "event": event,
            "name": name,
            "timestamp": at,
            "receivedAt": at,
            "properties": {"path": "/home"},
        }
    )


# -- what events look like ---------------------------------------------------------------


def test_a_track_event_carries_the_token_the_user_its_time_and_a_stable_insert_id(
    server: CaptureServer,
) -> None:
    message = track("user-1", "Signed Up", jan(19, 8, 30, 15), message_id="msg-42", plan="pro")
    message = message.model_copy(update={"sessionId": "s-7"})
    provider = provider_for(server)

    result = provider.forward([message])
    provider.forward([message])  # redelivered

    assert result == ForwardResult(sent=1, requests=1)
    first, second = sent(server, "/track")
    assert first == second
    assert first["event"] == "Signed Up"
    props = first["properties"]
    assert props["token"] == TOKEN
    assert props["distinct_id"] == "user-1"
    assert props["$user_id"] == "user-1"
    assert "$device_id" not in props
    assert props["time"] == int(jan(19, 8, 30, 15).timestamp() * 1000)
    assert props["$insert_id"] == "msg-42"
    assert props["session_id"] == "s-7"
    assert props["platform"] == "web"
    assert props["plan"] == "pro"
    request = server.received()[0]
    assert request.method == "POST"
    assert "authorization" not in request.headers  # /track takes the token only


def test_a_message_id_mixpanel_would_refuse_becomes_the_same_hash_every_time(
    server: CaptureServer,
) -> None:
    message = track("user-1", "Opened", jan(19), message_id="ios:2026/01/19#" + "x" * 60)

    provider_for(server).forward([message])
    provider_for(server).forward([message])  # another process, the same message

    first, second = (r["properties"]["$insert_id"] for r in sent(server, "/track"))
    assert first == second
    assert len(first) <= 36
    assert first.isalnum()


def test_a_client_property_named_token_or_time_cannot_redirect_or_redate_the_event(
    server: CaptureServer,
) -> None:
    message = track("user-1", "Opened", jan(19), message_id="m-1", token="other", time=1)

    provider_for(server).forward([message])

    (record,) = sent(server, "/track")
    assert record["properties"]["token"] == TOKEN
    assert record["properties"]["time"] == int(jan(19).timestamp() * 1000)


def test_an_anonymous_visitor_is_sent_as_a_device(server: CaptureServer) -> None:
    provider_for(server).forward([visit("dev-9", jan(19), "Browsed")])

    (record,) = sent(server, "/track")
    props = record["properties"]
    assert props["distinct_id"] == "$device:dev-9"
    assert props["$device_id"] == "dev-9"
    assert "$user_id" not in props


def test_page_and_screen_views_get_segment_style_names(server: CaptureServer) -> None:
    views = [
        page("user-1", "Home", jan(19, 1)),
        page("user-1", None, jan(19, 2)),
        page("user-1", "Settings", jan(19, 3), kind="screen"),
    ]

    provider_for(server).forward(views)

    names = [r["event"] for r in sent(server, "/track")]
    assert names == ["Viewed Home Page", "Loaded a Page", "Viewed Settings Screen"]
    assert sent(server, "/track")[0]["properties"]["name"] == "Home"


def test_120_events_go_in_three_requests_of_at_most_50(server: CaptureServer) -> None:
    messages = [track("user-1", "Tick", jan(19, 0, i // 60, i % 60)) for i in range(120)]

    result = provider_for(server).forward(messages)

    sizes = [len(records(r)) for r in server.received()]
    assert sizes == [50, 50, 20]
    assert result == ForwardResult(sent=120, requests=3)
    insert_ids = {r["properties"]["$insert_id"] for r in sent(server, "/track")}
    assert len(insert_ids) == 120


# -- old events --------------------------------------------------------------------------


def test_events_older_than_five_days_go_to_import_with_the_secret(server: CaptureServer) -> None:
    old = track("user-1", "Old", NOW - timedelta(days=6), message_id="old-1")
    new = track("user-1", "New", NOW - timedelta(days=1), message_id="new-1")

    result = provider_for(server).forward([old, new])

    assert result == ForwardResult(sent=2, requests=2)
    (imported,) = server.received(lambda r: r.path == "/import")
    expected = "Basic " + base64.b64encode(f"{SECRET}:".encode()).decode()
    assert imported.headers["authorization"] == expected
    assert [r["event"] for r in records(imported)] == ["Old"]
    assert records(imported)[0]["properties"]["$insert_id"] == "old-1"
    assert [r["event"] for r in sent(server, "/track")] == ["New"]
    (tracked,) = server.received(lambda r: r.path == "/track")
    assert "authorization" not in tracked.headers


def test_without_a_secret_old_events_are_skipped_and_nothing_is_sent(
    server: CaptureServer,
) -> None:
    old = track("user-1", "Old", NOW - timedelta(days=6))

    result = provider_for(server, api_secret="").forward([old])

    assert result.sent == 0
    assert result.skipped == {"too_old_no_secret": 1}
    assert result.requests == 0
    assert server.received() == []


def test_the_secret_goes_to_import_only_whatever_the_order_of_calls(
    server: CaptureServer,
) -> None:
    """The library's BufferedConsumer sends every endpoint the credentials of its latest
    call: here /track would get the secret (and, the other way round, /import none)."""
    new = track("user-1", "New", NOW - timedelta(days=1))
    old = track("user-1", "Old", NOW - timedelta(days=6))

    provider_for(server).forward([new, old, identify("user-1", jan(19), plan="pro")])

    (imported,) = server.received(lambda r: r.path == "/import")
    assert imported.headers["authorization"].startswith("Basic ")
    for path in ("/track", "/engage"):
        (request,) = [r for r in server.received() if r.path == path]
        assert "authorization" not in request.headers


# -- profiles, revenue and identity ------------------------------------------------------


def test_identify_sets_traits_and_traits_once_on_the_profile(server: CaptureServer) -> None:
    message = identify("user-1", jan(19), plan="pro", email="a@example.com")
    message = message.model_copy(update={"traitsOnce": {"first_plan": "free"}})

    result = provider_for(server).forward([message])

    assert result == ForwardResult(sent=1, requests=1)
    updates = sent(server, "/engage")
    assert {"$set", "$set_once"} <= {key for u in updates for key in u}
    (set_,) = (u for u in updates if "$set" in u)
    (once,) = (u for u in updates if "$set_once" in u)
    assert set_["$distinct_id"] == once["$distinct_id"] == "user-1"
    assert set_["$token"] == TOKEN
    assert set_["$set"] == {"plan": "pro", "$email": "a@example.com"}
    assert once["$set_once"] == {"first_plan": "free"}
    assert sent(server, "/track") == []  # no anonymousId: nothing to merge


def test_revenue_is_charged_to_the_profile_after_the_events_are_accepted(
    server: CaptureServer,
) -> None:
    message = track("user-1", "Purchased", jan(19, 9), revenue=9.99, currency="eur")

    result = provider_for(server).forward([message])

    assert result == ForwardResult(sent=1, requests=2)
    assert [r.path for r in server.received()] == ["/track", "/engage"]
    (charge,) = sent(server, "/engage")
    assert charge["$distinct_id"] == "user-1"
    assert charge["$append"] == {
        "$transactions": {"$amount": 9.99, "$time": "2026-01-19T09:00:00", "currency": "EUR"}
    }


def test_no_profile_update_is_sent_when_the_events_were_not_accepted(
    server: CaptureServer,
) -> None:
    """A retried chunk re-sends its events (deduplicated by $insert_id), but an $append
    to $transactions would count twice: profiles go only after every event batch."""
    server.replies.append(Reply(status=503))
    old_purchase = track("user-1", "Purchased", NOW - timedelta(days=6), revenue=5)

    with pytest.raises(ProviderUnavailableError):
        provider_for(server).forward([old_purchase])

    assert [r.path for r in server.received()] == ["/import"]


def test_identify_with_an_anonymous_id_merges_the_device_into_the_user(
    server: CaptureServer,
) -> None:
    provider_for(server).forward([identify_as("user-1", "dev-9", jan(19), plan="pro")])

    (merge,) = sent(server, "/track")
    assert merge["event"] == "$identify"
    props = merge["properties"]
    assert props["distinct_id"] == "user-1"
    # Simplified ID Merge: an event with both ids merges them.
    assert (props["$user_id"], props["$device_id"]) == ("user-1", "dev-9")
    # Original ID Merge: $identify with the anonymous distinct_id and the identified one.
    assert (props["$identified_id"], props["$anon_distinct_id"]) == ("user-1", "$device:dev-9")
    assert sent(server, "/engage")[0]["$set"] == {"plan": "pro"}


def test_alias_sends_create_alias(server: CaptureServer) -> None:
    alias = QueuedMessage(
        type="alias",
        messageId="al-1",
        userId="user-2",
        previousId="user-1",
        timestamp=jan(19),
        receivedAt=jan(19),
    )

    provider_for(server).forward([alias])

    (record,) = sent(server, "/track")
    assert record["event"] == "$create_alias"
    assert record["properties"]["distinct_id"] == "user-1"
    assert record["properties"]["alias"] == "user-2"


def test_group_calls_need_a_group_key(server: CaptureServer) -> None:
    group = QueuedMessage(
        type="group",
        messageId="g-1",
        userId="user-1",
        groupId="acme",
        traits={"plan": "team"},
        timestamp=jan(19),
        receivedAt=jan(19),
    )

    skipped = provider_for(server).forward([group])
    result = provider_for(server, group_key="company").forward([group])

    assert skipped.skipped == {"unsupported": 1}
    assert result == ForwardResult(sent=1, requests=2)
    (group_update,) = sent(server, "/groups")
    assert group_update["$group_key"] == "company"
    assert group_update["$group_id"] == "acme"
    assert group_update["$set"] == {"plan": "team"}
    (membership,) = sent(server, "/engage")
    assert membership["$union"] == {"company": ["acme"]}


# -- failures ----------------------------------------------------------------------------


def failure_text(error: BaseException) -> str:
    return "".join(traceback.format_exception(error)) + repr(error.__context__)


def test_a_500_means_unavailable(server: CaptureServer) -> None:
    server.replies.append(Reply(status=500, body=b'{"status": 0, "error": "boom"}'))

    with pytest.raises(ProviderUnavailableError) as caught:
        provider_for(server).forward([track("user-1", "Tick", jan(19))])

    assert "HTTP 500" in str(caught.value)
    assert caught.value.retry_after is None
    assert len(server.received()) == 1  # one attempt: the forwarder retries


def test_a_503_from_a_proxy_with_an_html_body_is_unavailable(server: CaptureServer) -> None:
    server.replies.append(Reply(status=503, body=b"<html>Service Unavailable</html>"))

    with pytest.raises(ProviderUnavailableError, match="HTTP 503"):
        provider_for(server).forward([track("user-1", "Tick", jan(19))])


def test_a_429_says_when_to_come_back(server: CaptureServer) -> None:
    body = b'{"code": 429, "error": "Project exceeded rate limits", "status": "Too Many Requests"}'
    server.replies.append(Reply(status=429, headers={"Retry-After": "7"}, body=body))

    with pytest.raises(ProviderUnavailableError) as caught:
        provider_for(server).forward([track("user-1", "Tick", jan(19))])

    assert caught.value.retry_after == 7.0
    assert "rate limits" in str(caught.value)


def test_a_400_is_a_rejection_and_its_text_never_holds_the_token_or_secret(
    server: CaptureServer,
) -> None:
    body = json.dumps({"status": 0, "error": f"token {TOKEN} / secret {SECRET} refused"})
    server.replies.append(Reply(status=400, body=body.encode()))
    old = track("user-1", "Old", NOW - timedelta(days=6))

    with pytest.raises(ProviderRejectedError) as caught:
        provider_for(server).forward([old])

    text = failure_text(caught.value)
    assert "HTTP 400" in str(caught.value)
    assert TOKEN not in text
    assert SECRET not in text
    assert "***" in str(caught.value)


def test_a_200_whose_body_refuses_the_batch_is_a_rejection(server: CaptureServer) -> None:
    server.replies.append(Reply(status=200, body=b'{"status": 0, "error": "invalid data"}'))

    with pytest.raises(ProviderRejectedError, match="invalid data"):
        provider_for(server).forward([track("user-1", "Tick", jan(19))])


def test_import_answering_in_its_current_words_is_a_success(server: CaptureServer) -> None:
    server.replies.append(Reply(body=b'{"code": 200, "num_records_imported": 1, "status": "OK"}'))
    old = track("user-1", "Old", NOW - timedelta(days=6))

    assert provider_for(server).forward([old]).sent == 1


def test_a_hang_past_the_timeout_is_unavailable(server: CaptureServer) -> None:
    server.replies.append(Reply(delay=3.0))

    with pytest.raises(ProviderUnavailableError, match="Timeout") as caught:
        provider_for(server, timeout=0.5).forward([track("user-1", "Tick", jan(19))])

    text = failure_text(caught.value)
    assert TOKEN not in text
    assert SECRET not in text


def test_a_refused_connection_is_unavailable() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    provider = MixpanelProvider(TOKEN, f"http://127.0.0.1:{port}", api_secret=SECRET)

    with pytest.raises(ProviderUnavailableError, match="ConnectionError") as caught:
        provider.forward([track("user-1", "Tick", jan(19))])

    assert TOKEN not in failure_text(caught.value)


def test_https_has_one_attempt_and_no_status_retries() -> None:
    """The library's own HTTPS adapter turns a 5xx into an opaque RetryError."""
    wire = WireConsumer(TOKEN, "api-eu.mixpanel.com", SECRET, 1.0)

    retries = wire._session.get_adapter("https://api-eu.mixpanel.com/track").max_retries
    assert retries.total == 0
    assert not retries.status_forcelist
    assert wire._endpoints["events"] == "https://api-eu.mixpanel.com/track"


def test_importing_the_provider_module_does_not_load_the_library() -> None:
    code = (
        "import sys, mysoulmate.providers.mixpanel as m;"
        "print('mixpanel' in sys.modules, 'requests' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


# -- GDPR deletion -----------------------------------------------------------------------


def test_a_deletion_task_is_created_for_the_person_and_its_id_returned(
    server: CaptureServer,
) -> None:
    server.replies.append(
        Reply(status=201, body=b'{"status": "ok", "results": {"task_id": "t-1"}}')
    )

    task = delete_user_data(
        ["user-1", "$device:dev-9"], GDPR_TOKEN, project_token=TOKEN, api_host=server.url
    )

    assert task == "t-1"
    (request,) = server.received()
    assert request.method == "POST"
    assert request.path == "/api/app/data-deletions/v3.0/"
    assert request.query == {"token": [TOKEN]}
    assert request.headers["authorization"] == f"Bearer {GDPR_TOKEN}"
    assert request.headers["content-type"] == "application/json"
    assert request.json() == {
        "distinct_ids": ["user-1", "$device:dev-9"],
        "compliance_type": "GDPR",
    }


def test_deletion_failures_map_like_forwarding_failures(server: CaptureServer) -> None:
    server.replies.extend(
        [
            Reply(status=429, headers={"Retry-After": "30"}),
            Reply(status=401, body=json.dumps({"error": f"bad token {GDPR_TOKEN}"}).encode()),
            Reply(status=200, body=b"{}"),
        ]
    )

    def delete() -> str:
        return delete_user_data(["u"], GDPR_TOKEN, project_token=TOKEN, api_host=server.url)

    with pytest.raises(ProviderUnavailableError) as limited:
        delete()
    with pytest.raises(ProviderRejectedError) as refused:
        delete()
    with pytest.raises(ProviderUnavailableError, match="no task id"):
        delete()

    assert limited.value.retry_after == 30.0
    assert "HTTP 401" in str(refused.value)
    assert GDPR_TOKEN not in failure_text(refused.value)
    assert TOKEN not in failure_text(limited.value)


def test_a_deletion_request_that_hangs_is_unavailable(server: CaptureServer) -> None:
    server.replies.append(Reply(delay=3.0))

    with pytest.raises(ProviderUnavailableError):
        delete_user_data(["u"], GDPR_TOKEN, project_token=TOKEN, api_host=server.url, timeout=0.5)
