"""The fast ingest path (`api.fast_ingest`) answers exactly as FastAPI's route does: the same
requests sent to the server app with it and without it get the same status, headers and
body bytes, and leave the same messages in the queue, for accepted requests and for every
kind of refusal; and it really is the path accepted requests take."""

from __future__ import annotations

import gzip
import json
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from mysoulmate.api import fast_ingest, rate_limit
from mysoulmate.api.fast_ingest import FastIngest, fast_routes
from mysoulmate.api.request_events import INGEST_ROUTES
from mysoulmate.core.bulkhead import Bulkhead
from mysoulmate.core.rate_limits import MemoryBuckets
from mysoulmate.runtime.backends import local_queue, reset_backends
from mysoulmate.runtime.server import ROUTERS, create_server_app

from tests.support.aws import FakeLambdaContext, Queues, http_event, receive_all
from tests.support.helpers import make_token

TRACK = "/api/v1/analytics/track"
IDENTIFY = "/api/v1/analytics/identify"
JSON = "application/json"


@dataclass
class Call:
    path: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    query: str = ""


def body(document: Any) -> bytes:
    return json.dumps(document).encode()


def without_fast_path() -> FastAPI:
    app = create_server_app()
    app.user_middleware = [m for m in app.user_middleware if m.cls is not FastIngest]
    return app


@pytest.fixture
def clients() -> Iterator[tuple[TestClient, TestClient]]:
    fast, slow = create_server_app(), without_fast_path()
    assert any(m.cls is FastIngest for m in fast.user_middleware)
    with (
        TestClient(fast, raise_server_exceptions=False) as fast_client,
        TestClient(slow, raise_server_exceptions=False) as slow_client,
    ):
        yield fast_client, slow_client


def taken() -> list[dict[str, Any]]:
    """The messages queued since the last call (removed), their receive time blanked."""
    queue = local_queue()
    received = queue.receive(100)
    queue.delete([m.receipt for m in received])
    return [_without_receipt_time(json.loads(m.body)) for m in received]


def send(client: TestClient, call: Call) -> tuple[int, list[tuple[str, str]], bytes]:
    url = call.path + (f"?{call.query}" if call.query else "")
    headers = {"X-Request-Id": "req-parity-1", **call.headers}
    response = client.post(url, content=call.body, headers=headers)
    return response.status_code, list(response.headers.multi_items()), response.content


def assert_same_answer(clients: tuple[TestClient, TestClient], call: Call) -> int:
    fast_client, slow_client = clients
    rate_limit.use_bucket_store(MemoryBuckets())
    fast = send(fast_client, call)
    fast_queued = taken()
    Bulkhead.reset_all()
    rate_limit.use_bucket_store(MemoryBuckets())  # the same bucket as the first saw
    slow = send(slow_client, call)
    slow_queued = taken()
    assert fast == slow
    assert fast_queued == slow_queued
    return fast[0]


def token(user: str = "ann", *roles: str, ttl: int = 3600) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_token(user, *roles, ttl=ttl)}"}


EVENT = {
    "event": "Profile Viewed",
    "messageId": "m-1",
    "timestamp": "2026-12-01T10:00:00Z",
    "properties": {"plan": "gold", "email": "ann@example.com", "score": 4.5},
    "platform": "ios",
    "context": {"app": {"version": "3.2.0"}, "locale": "de-DE"},
}


def cases() -> dict[str, tuple[Call, int]]:
    ann = token("ann")
    return {
        "track": (Call(TRACK, body(EVENT), {**ann, "Content-Type": JSON}), 202),
        "track, JSON with a charset, French": (
            Call(
                TRACK,
                body(EVENT),
                {**ann, "Content-Type": "application/json; charset=utf-8", "Accept-Language": "fr"},
            ),
            202,
        ),
        "track, the least a client sends": (
            Call(
                TRACK,
                body({"event": "tap", "messageId": "m-2", "timestamp": "2026-12-01T10:00:00Z"}),
                {**ann, "Content-Type": JSON},
            ),
            202,
        ),
        "track, ?lang=de": (
            Call(TRACK, body(EVENT), {**ann, "Content-Type": JSON}, query="lang=de"),
            202,
        ),
        "track for another user, as an admin": (
            Call(
                TRACK,
                body({**EVENT, "userId": "bob"}),
                {**token("root", "admin"), "Content-Type": JSON},
            ),
            202,
        ),
        "identify": (
            Call(
                IDENTIFY,
                body(
                    {
                        "messageId": "m-3",
                        "timestamp": "2026-12-01T10:00:00Z",
                        "traits": {"name": "Ann", "email": "ann@example.com"},
                    }
                ),
                {**ann, "Content-Type": JSON},
            ),
            202,
        ),
        "track for another user": (
            Call(TRACK, body({**EVENT, "userId": "bob"}), {**ann, "Content-Type": JSON}),
            403,
        ),
        "invalid JSON": (Call(TRACK, b'{"event": ', {**ann, "Content-Type": JSON}), 400),
        "no event": (Call(TRACK, body({"properties": {}}), {**ann, "Content-Type": JSON}), 422),
        "event of the wrong type, German": (
            Call(TRACK, body({"event": 7}), {**ann, "Content-Type": JSON, "Accept-Language": "de"}),
            422,
        ),
        "a JSON array": (Call(TRACK, b"[]", {**ann, "Content-Type": JSON}), 422),
        "an empty body": (Call(TRACK, b"", {**ann, "Content-Type": JSON}), 422),
        "an unknown field": (
            Call(TRACK, body({"event": "tap", "colour": "red"}), {**ann, "Content-Type": JSON}),
            422,
        ),
        "a timestamp far in the future": (
            Call(
                TRACK,
                body({"event": "tap", "timestamp": "2099-01-01T00:00:00Z"}),
                {**ann, "Content-Type": JSON},
            ),
            422,
        ),
        "no token": (Call(TRACK, body(EVENT), {"Content-Type": JSON}), 401),
        "no token and an invalid body": (
            Call(TRACK, body({"event": 7}), {"Content-Type": JSON}),
            401,
        ),
        "an expired token": (
            Call(TRACK, body(EVENT), {**token("ann", ttl=-3600), "Content-Type": JSON}),
            401,
        ),
        "a forged token": (
            Call(TRACK, body(EVENT), {"Authorization": "Bearer a.b.c", "Content-Type": JSON}),
            401,
        ),
        "text/plain": (Call(TRACK, body(EVENT), {**ann, "Content-Type": "text/plain"}), 422),
        "no content type": (Call(TRACK, body(EVENT), ann), 422),
        "gzip": (
            Call(
                TRACK,
                gzip.compress(body(EVENT)),
                {**ann, "Content-Type": JSON, "Content-Encoding": "gzip"},
            ),
            400,
        ),
        "nested too deep": (
            Call(
                TRACK,
                b'{"event": "tap", "properties": ' + b'{"a": ' * 200 + b"1" + b"}" * 201,
                {**ann, "Content-Type": JSON},
            ),
            400,
        ),
        "over a megabyte": (
            Call(
                TRACK,
                body({"event": "tap", "properties": {"x": "y" * 1_100_000}}),
                {**ann, "Content-Type": JSON},
            ),
            413,
        ),
    }


@pytest.mark.parametrize("name", list(cases()))
def test_the_same_request_gets_the_same_answer_on_both_paths(
    name: str, clients: tuple[TestClient, TestClient]
) -> None:
    call, status = cases()[name]
    assert assert_same_answer(clients, call) == status


def test_a_refusal_of_the_rate_limit_is_the_same_on_both_paths(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RATE_LIMIT_INGEST_PER_SECOND", "0.01")
    monkeypatch.setenv("RATE_LIMIT_INGEST_BURST", "1")
    reset_backends()
    answers = []
    for app in (create_server_app(), without_fast_path()):
        rate_limit.use_bucket_store(MemoryBuckets())
        with TestClient(app) as client:
            call = Call(TRACK, body(EVENT), {**token("ann"), "Content-Type": JSON})
            answers.append([send(client, call), send(client, call)])
            assert len(taken()) == 1
    fast, slow = answers
    assert [status for status, _, _ in fast] == [202, 429]
    assert fast == slow


def test_a_queue_failure_is_the_same_on_both_paths(
    isolated_env: Path, clients: tuple[TestClient, TestClient]
) -> None:
    local_queue()  # open before the lock, as in a running server
    locker = sqlite3.connect(isolated_env / "queue.db", isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")  # another process holding the queue's file
    try:
        call = Call(TRACK, body(EVENT), {**token("ann"), "Content-Type": JSON})
        fast_client, slow_client = clients
        fast = send(fast_client, call)
        Bulkhead.reset_all()
        rate_limit.use_bucket_store(MemoryBuckets())
        slow = send(slow_client, call)
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    assert fast[0] == 503
    assert fast == slow
    assert taken() == []


@pytest.fixture
def solved(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths FastAPI solved a route's dependencies for (its routes' only way in)."""
    import fastapi.routing

    paths: list[str] = []
    original = fastapi.routing.solve_dependencies

    async def counting(*, request: Any, **options: Any) -> Any:
        paths.append(request.scope["path"])
        return await original(request=request, **options)

    monkeypatch.setattr(fastapi.routing, "solve_dependencies", counting)
    return paths


def test_accepted_events_skip_fastapi_and_refusals_go_through_it(
    clients: tuple[TestClient, TestClient], solved: list[str]
) -> None:
    fast_client, slow_client = clients
    accepted = Call(TRACK, body(EVENT), {**token("ann"), "Content-Type": JSON})
    refused = Call(TRACK, body({"event": 7}), {**token("ann"), "Content-Type": JSON})
    assert send(fast_client, accepted)[0] == 202
    assert solved == []
    assert send(fast_client, refused)[0] == 422
    assert send(slow_client, accepted)[0] == 202
    assert solved == [TRACK, TRACK]


def test_a_route_whose_dependencies_changed_keeps_fastapis_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert set(fast_routes(ROUTERS)) == {TRACK, IDENTIFY} == set(INGEST_ROUTES)
    # A dependency the fast path does not replay: the routes are no longer taken over.
    monkeypatch.setattr(fast_ingest, "REPLAYED", fast_ingest.REPLAYED - {rate_limit.limit_ingest})
    assert fast_routes(ROUTERS) == {}
    app = create_server_app()
    assert not any(m.cls is FastIngest for m in app.user_middleware)


# -- the Lambda shape: API Gateway's verified claims, SQS behind -------------------------------


def test_the_lambda_handler_answers_the_same_on_both_paths(
    monkeypatch: pytest.MonkeyPatch,
    lambda_env: Callable[..., None],
    events_table: str,
    queues: Queues,
    sqs: Any,
    load_function: Callable[[str], Callable[[dict[str, Any], Any], dict[str, Any]]],
    solved: list[str],
) -> None:
    lambda_env(queues.url)
    fast = load_function("analytics")
    monkeypatch.setattr(fast_ingest, "fast_routes", lambda routers: {})
    slow = load_function("analytics")
    alice = {"sub": "alice", "roles": "[user]"}
    events = {
        "track": http_event("POST", TRACK, body=EVENT, claims=alice),
        "identify": http_event(
            "POST",
            IDENTIFY,
            body={"messageId": "m-9", "timestamp": "2026-12-01T10:00:00Z", "traits": {"x": 1}},
            claims=alice,
        ),
        "base64 body": http_event("POST", TRACK, body=EVENT, claims=alice, base64_body=True),
        "no claims": http_event("POST", TRACK, body=EVENT),
        "another user": http_event("POST", TRACK, body={**EVENT, "userId": "bob"}, claims=alice),
        "invalid": http_event("POST", TRACK, body={"event": 7}, claims=alice),
    }
    statuses, through_fastapi = {}, {}
    for name, event in events.items():
        answers, queued = [], []
        for handler in (fast, slow):
            rate_limit.use_bucket_store(MemoryBuckets())  # each starts from a full bucket
            solved.clear()
            answers.append(handler(event, FakeLambdaContext()))
            through_fastapi.setdefault(name, bool(solved))
            queued.append(
                [_without_receipt_time(json.loads(m["Body"])) for m in receive_all(sqs, queues.url)]
            )
        assert answers[0] == answers[1], name
        assert queued[0] == queued[1], name
        statuses[name] = answers[0]["statusCode"]
    assert statuses == {
        "track": 202,
        "identify": 202,
        "base64 body": 202,
        "no claims": 401,
        "another user": 403,
        "invalid": 422,
    }
    # The fast handler: what passes auth and the model never reaches FastAPI's route (a 403
    # for another user comes later, from the service, answered by the app's handler);
    # refusals before that go through it.
    assert [name for name, used in through_fastapi.items() if not used] == [
        "track",
        "identify",
        "base64 body",
        "another user",
    ]


def _without_receipt_time(message: dict[str, Any]) -> dict[str, Any]:
    """A queued message without the time it was received (each path has its own)."""
    message.pop("receivedAt", None)
    return message
