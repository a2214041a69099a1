"""The stock Segment and RudderStack SDKs, unmodified, against a live `mysoulmate serve`.

Each SDK sends every message type (track, identify, page, screen, group, alias) through
`DroppingProxy`, which loses the server's answer to the first request after the server has
durably queued the batch. The SDK sees the connection drop, retries the same batch with the
same messageIds, and every message must still be stored exactly once, as the right type, under
the right person, with the messageId the SDK generated.

The Node SDK comes from tests/e2e/node_sdk (its package-lock.json), installed by `make test`.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import sqlite3
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from mysoulmate.analytics import write_keys
from mysoulmate.runtime.backends import source_store

from tests.support.dropping_proxy import DroppingProxy, ProxiedRequest
from tests.support.helpers import auth_header
from tests.support.server import ServerProcess, mysoulmate_serve

pytestmark = pytest.mark.slow

NODE_SDK = Path(__file__).resolve().parent / "node_sdk"
USER = "sdk-user-1"
VISITOR = "sdk-visitor-1"  # the same person as USER before signing in (identify, alias)
STRANGER = "sdk-visitor-2"  # never signs in
FLUSH_WITHIN = 30.0  # seconds: one dropped response costs the SDKs at most ~2 s of backoff
STORED_WITHIN = 20.0


def scenario(now: datetime) -> list[dict[str, Any]]:
    """Every call the SDKs make, in Segment's field names (the Node SDK takes them as they
    are; `python_kwargs` maps them to the Python SDKs' arguments)."""
    return [
        {
            "call": "page",
            "anonymousId": STRANGER,
            "category": "Docs",
            "name": "Pricing",
            "properties": {"path": "/pricing", "referrer": "newsletter"},
            "context": {"userAgent": "Mozilla/5.0 (X11; Linux x86_64)", "locale": "en-GB"},
        },
        {"call": "identify", "anonymousId": STRANGER, "traits": {"language": "de"}},
        {
            "call": "track",
            "anonymousId": VISITOR,
            "event": "app_opened",
            "properties": {"cold_start": True},
            "context": {"os": {"name": "iOS", "version": "17.4"}, "app": {"version": "3.1.0"}},
        },
        {
            "call": "identify",
            "userId": USER,
            "anonymousId": VISITOR,
            "traits": {"plan": "pro", "age_group": "25-34"},
            "context": {"os": {"name": "iOS", "version": "17.4"}},
        },
        {
            "call": "track",
            "userId": USER,
            "anonymousId": VISITOR,
            "event": "companion_created",
            "properties": {"companion": "luna", "revenue": 9.99, "currency": "EUR"},
            "context": {"os": {"name": "Android"}, "locale": "de-DE"},
        },
        {
            "call": "track",
            "userId": USER,
            "event": "message_sent",
            "properties": {"length": 42},
            "timestamp": (now - timedelta(hours=1)).isoformat(),
        },
        {
            "call": "screen",
            "userId": USER,
            "category": "Main",
            "name": "Chat",
            "properties": {"companion": "luna"},
        },
        {"call": "page", "userId": USER, "properties": {"path": "/"}},
        {"call": "group", "userId": USER, "groupId": "team-9", "traits": {"seats": 5}},
        {"call": "alias", "userId": USER, "previousId": VISITOR},
    ]


# -- what the server should make of each call ---------------------------------------------


# identify with both ids (and alias) links VISITOR to USER: the server moves the visitor's
# history to the user, so VISITOR's anonymous-only messages end up under USER too.
LINKED = {VISITOR: USER}


def person_of(call: dict[str, Any]) -> str:
    """Whom the message is stored under once the worker is done."""
    if call.get("userId"):
        return str(call["userId"])
    return LINKED.get(call["anonymousId"], f"anon:{call['anonymousId']}")


def event_name_of(call: dict[str, Any]) -> str | None:
    if call["call"] == "track":
        return str(call["event"])
    if call["call"] in ("page", "screen"):
        return f"${call['call']}:{call['name']}" if call.get("name") else f"${call['call']}"
    return None


def properties_of(call: dict[str, Any]) -> dict[str, Any]:
    """Stored properties of a track, page or screen (a view's category is one of them)."""
    category = {"category": call["category"]} if call.get("category") else {}
    return {**category, **call.get("properties", {})}


PLATFORMS = {"iOS": "ios", "Android": "android"}


def platform_of(call: dict[str, Any]) -> str | None:
    context = call.get("context", {})
    if "os" in context:
        return PLATFORMS[context["os"]["name"]]
    return "web" if "userAgent" in context else None


# -- the SDKs -------------------------------------------------------------------------------


@dataclass
class SdkRun:
    message_ids: list[str]  # per call, as the SDK generated them
    errors: list[str]  # what the SDK reported as failed deliveries


_PYTHON_ARGUMENTS = {
    "userId": "user_id",
    "anonymousId": "anonymous_id",
    "previousId": "previous_id",
    "groupId": "group_id",
    "event": "event",
    "name": "name",
    "category": "category",
    "properties": "properties",
    "traits": "traits",
    "context": "context",
    "timestamp": "timestamp",
}


def python_kwargs(call: dict[str, Any]) -> dict[str, Any]:
    """The Python SDKs' keyword arguments for ``call`` (a copy: the SDKs write into context)."""
    kwargs = {_PYTHON_ARGUMENTS[k]: copy.deepcopy(v) for k, v in call.items() if k != "call"}
    if "timestamp" in kwargs:
        kwargs["timestamp"] = datetime.fromisoformat(kwargs["timestamp"])
    return kwargs


def python_client(sdk: str, write_key: str, host: str, gzip: bool, errors: list[str]) -> Any:
    def on_error(error: Exception, batch: list[dict[str, Any]]) -> None:
        errors.append(f"{error!r} for {[m.get('messageId') for m in batch]}")

    # Stock options only: the retry budget and request timeout kept small to bound the test.
    options = {"host": host, "gzip": gzip, "max_retries": 3, "timeout": 5, "on_error": on_error}
    if sdk == "segment":
        from segment.analytics import Client as SegmentClient

        return SegmentClient(write_key, **options)
    from rudderstack.analytics import Client as RudderClient

    return RudderClient(write_key, **options)


def flushed(client: Any) -> bool:
    """Whether flush(), which waits out the SDK's queue and retries, returned in time."""
    flusher = threading.Thread(target=client.flush, daemon=True)
    flusher.start()
    flusher.join(FLUSH_WITHIN)
    return not flusher.is_alive()


def send_with_python_sdk(
    sdk: str, write_key: str, host: str, gzip: bool, calls: list[dict[str, Any]]
) -> SdkRun:
    errors: list[str] = []
    client = python_client(sdk, write_key, host, gzip, errors)
    try:
        ids = []
        for call in calls:
            accepted, message = getattr(client, call["call"])(**python_kwargs(call))
            assert accepted, f"{sdk} refused to queue {call}"
            ids.append(message["messageId"])
        assert flushed(client), f"{sdk}: flush() did not return within {FLUSH_WITHIN} s"
    finally:
        client.join()  # stops the SDK's consumer thread
    return SdkRun(ids, errors)


def send_with_node_sdk(write_key: str, host: str, calls: list[dict[str, Any]]) -> SdkRun:
    script = json.dumps({"writeKey": write_key, "host": host, "calls": calls})
    result = subprocess.run(
        ["node", str(NODE_SDK / "send.mjs")],
        input=script,
        cwd=NODE_SDK,
        capture_output=True,
        text=True,
        timeout=FLUSH_WITHIN + 30,
        check=False,
    )
    assert result.returncode == 0, f"node exited {result.returncode}: {result.stderr}"
    output = json.loads(result.stdout)
    missing = [calls[i] for i, sent in enumerate(output["sent"]) if sent is None]
    assert not missing, f"the Node SDK never called back for {missing}"
    errors = [f"{s['call']} {s['messageId']}: {s['error']}" for s in output["sent"] if s["error"]]
    return SdkRun([s["messageId"] for s in output["sent"]], errors + output["errors"])


@pytest.fixture
def node_sdk() -> None:
    """Skip without node; with node, the SDK must be installed (`make test` does) under CI."""
    if shutil.which("node") is None:
        pytest.skip("node is not installed: the Node SDK test needs Node.js 20+")
    if not (NODE_SDK / "node_modules" / "@segment" / "analytics-node").is_dir():
        reason = f"@segment/analytics-node is not installed: run `npm ci --prefix {NODE_SDK}`"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (make test installs it)")
        pytest.skip(reason)


# -- the server, the proxy, and reading back -----------------------------------------------


@pytest.fixture
def server(isolated_env: Path) -> Iterator[ServerProcess]:
    process = mysoulmate_serve(isolated_env, WORKER_ENABLED="true").start()
    yield process
    process.stop()


@pytest.fixture
def write_key(server: ServerProcess) -> str:
    """A server source's key, created in the server's own store (the same SQLite file)."""
    _, key = write_keys.create_source(source_store(), "stock sdks", "server", datetime.now(UTC))
    return key


@pytest.fixture
def proxy(server: ServerProcess) -> Iterator[DroppingProxy]:
    with DroppingProxy(server.url) as running:
        yield running


def read_user(base_url: str, person: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The first page of ``person``'s analytics (profile, counts) and all their events."""
    pages: list[dict[str, Any]] = []
    cursor = None
    with httpx.Client(base_url=base_url, headers=auth_header("ops", "admin"), timeout=10) as http:
        while True:
            params: dict[str, Any] = {"limit": 200} | ({"cursor": cursor} if cursor else {})
            response = http.get(f"/api/v1/analytics/user/{person}", params=params)
            assert response.status_code == 200, f"reading {person}: {response.text}"
            pages.append(response.json())
            cursor = pages[-1]["nextCursor"]
            if not cursor:
                return pages[0], [event for page in pages for event in page["events"]]


def queue_depth(data_dir: Path) -> tuple[int, int]:
    """(messages waiting or in flight, dead letters) in the server's local queue."""
    connection = sqlite3.connect(data_dir / "queue.db", timeout=5)
    try:
        waiting = connection.execute("SELECT count(*) FROM messages").fetchone()[0]
        dead = connection.execute("SELECT count(*) FROM dead_letters").fetchone()[0]
    finally:
        connection.close()
    return int(waiting), int(dead)


def wait_until_stored(
    server: ServerProcess, data_dir: Path, expected: dict[str, set[str]]
) -> dict[str, list[dict[str, Any]]]:
    """Every person's events once the expected messageIds are stored and the queue is empty
    (so a duplicate still queued would have been stored by then too)."""
    deadline = time.monotonic() + STORED_WITHIN
    while True:
        events = {person: read_user(server.url, person)[1] for person in expected}
        stored = {person: {e["messageId"] for e in found} for person, found in events.items()}
        drained = queue_depth(data_dir)[0] == 0
        if (drained and all(expected[p] <= stored[p] for p in expected)) or (
            time.monotonic() > deadline
        ):
            return events
        time.sleep(0.1)


# -- the checks -----------------------------------------------------------------------------


def batch_ids(request: ProxiedRequest) -> list[str]:
    return [message["messageId"] for message in request.json()["batch"]]


def check_the_retry(proxy: DroppingProxy, run: SdkRun, *, gzip: bool, retry_header: bool) -> None:
    """The first response was lost after the server queued the batch, and the SDK sent the
    same messages again; every request reached the server and was answered success."""
    requests = proxy.received()
    summary = [(r.number, r.status, r.dropped, batch_ids(r)) for r in requests]
    assert len(requests) >= 2, f"expected the dropped request and a retry, got {summary}"
    first = requests[0]
    assert first.dropped, f"the first request's response was not dropped: {summary}"
    for request in requests:
        assert (request.method, request.path) == ("POST", "/v1/batch"), summary
        assert request.status == 200, f"#{request.number}: {request.response_body!r}"
        assert json.loads(request.response_body) == {"success": True, "rejected": []}, (
            f"#{request.number} answered {request.response_body!r}"
        )
        encoding = request.headers.get("content-encoding")
        assert encoding == ("gzip" if gzip else None), f"#{request.number}: {encoding=}"
    first_ids = batch_ids(first)
    retries = [r for r in requests[1:] if set(first_ids) <= set(batch_ids(r))]
    assert retries, f"the SDK never re-sent the dropped batch {first_ids}: {summary}"
    assert not any(r.dropped for r in requests[1:]), summary
    if retry_header:
        assert retries[0].headers.get("x-retry-count") == "1", retries[0].headers
    sent = Counter(i for r in requests for i in batch_ids(r))
    assert set(sent) == set(run.message_ids), (
        f"sent {sorted(sent)}, the SDK generated {sorted(run.message_ids)}"
    )
    assert all(sent[i] >= 2 for i in first_ids), f"retry did not resend all of {first_ids}"


def check_stored_once(
    server: ServerProcess,
    data_dir: Path,
    calls: list[dict[str, Any]],
    run: SdkRun,
    library: str,
) -> dict[str, list[dict[str, Any]]]:
    """Each call stored exactly once, under its person, with its type, name, properties,
    context and the SDK's messageId; nothing else stored, nothing dead-lettered."""
    assert len(set(run.message_ids)) == len(calls), f"SDK messageIds not unique: {run}"
    expected: dict[str, set[str]] = {}
    for call, message_id in zip(calls, run.message_ids, strict=True):
        expected.setdefault(person_of(call), set()).add(message_id)
    events = wait_until_stored(server, data_dir, expected)
    waiting, dead = queue_depth(data_dir)
    assert (waiting, dead) == (0, 0), f"queue not drained: {waiting} waiting, {dead} dead"
    stored = Counter(e["messageId"] for found in events.values() for e in found)
    duplicates = {message_id: n for message_id, n in stored.items() if n > 1}
    assert not duplicates, f"stored more than once: {duplicates}"
    for person, ids in expected.items():
        found = {e["messageId"] for e in events[person]}
        assert found == ids, f"{person}: missing {ids - found}, unexpected {found - ids}"
    by_id = {e["messageId"]: e for found in events.values() for e in found}
    for call, message_id in zip(calls, run.message_ids, strict=True):
        event = by_id[message_id]
        where = f"{call['call']} {message_id} ({call})"
        assert event["type"] == call["call"], f"{where}: stored as {event['type']}"
        assert event["event"] == event_name_of(call), f"{where}: event {event['event']!r}"
        assert event["anonymousId"] == call.get("anonymousId"), f"{where}: {event}"
        assert event["platform"] == platform_of(call), f"{where}: platform {event['platform']}"
        assert event["context"]["library"]["name"] == library, f"{where}: {event['context']}"
        for key, value in call.get("context", {}).items():
            assert event["context"].get(key) == value, f"{where}: context {event['context']}"
        if call["call"] in ("track", "page", "screen"):
            assert event["properties"] == properties_of(call), f"{where}: {event['properties']}"
        if "timestamp" in call:
            happened = datetime.fromisoformat(event["timestamp"])
            claimed = datetime.fromisoformat(call["timestamp"])
            assert abs(happened - claimed) < timedelta(minutes=1), f"{where}: {happened}"
    return events


def check_profiles_and_counts(server: ServerProcess, *, identify_traits: bool) -> None:
    """Profiles, per-user counts and revenue count each message once, the retry never."""
    user, _ = read_user(server.url, USER)
    assert user["eventCounts"] == {
        "app_opened": 1,
        "companion_created": 1,
        "message_sent": 1,
        "$screen:Chat": 1,
        "$page": 1,
    }, user["eventCounts"]
    assert VISITOR in user["profile"]["anonymousIds"], user["profile"]
    stranger, _ = read_user(server.url, f"anon:{STRANGER}")
    assert stranger["eventCounts"] == {"$page:Pricing": 1}, stranger["eventCounts"]
    assert user["profile"]["groups"] == {"team-9": {"seats": 5}}, user["profile"]
    if identify_traits:
        assert user["profile"]["traits"] == {"plan": "pro", "age_group": "25-34"}, user["profile"]
        assert stranger["profile"]["traits"] == {"language": "de"}, stranger["profile"]
    dashboard = httpx.get(
        f"{server.url}/api/v1/analytics/dashboard",
        headers=auth_header("ops", "admin"),
        timeout=10,
    )
    assert dashboard.status_code == 200, dashboard.text
    revenue = dashboard.json()["revenue"]["totals"]
    assert revenue == [{"currency": "EUR", "amount": 9.99}], f"revenue counted as {revenue}"


# -- the tests ------------------------------------------------------------------------------


def run_python_sdk(
    sdk: str,
    gzip: bool,
    server: ServerProcess,
    proxy: DroppingProxy,
    write_key: str,
    data_dir: Path,
) -> None:
    calls = scenario(datetime.now(UTC))
    proxy.drop_next(1)
    run = send_with_python_sdk(sdk, write_key, proxy.url, gzip, calls)
    assert not run.errors, f"{sdk} reported failed deliveries: {run.errors}"
    check_the_retry(proxy, run, gzip=gzip, retry_header=sdk == "segment")
    check_stored_once(server, data_dir, calls, run, library="analytics-python")
    # RudderStack's SDK sends identify traits as context.traits: they reach the profile too.
    check_profiles_and_counts(server, identify_traits=True)


@pytest.mark.parametrize("gzip", [True, False], ids=["gzip", "plain"])
def test_segment_python_sdk_retries_a_lost_response_and_each_message_is_stored_once(
    gzip: bool, server: ServerProcess, proxy: DroppingProxy, write_key: str, isolated_env: Path
) -> None:
    run_python_sdk("segment", gzip, server, proxy, write_key, isolated_env)


@pytest.mark.parametrize("gzip", [True, False], ids=["gzip", "plain"])
def test_rudderstack_python_sdk_retries_a_lost_response_and_each_message_is_stored_once(
    gzip: bool, server: ServerProcess, proxy: DroppingProxy, write_key: str, isolated_env: Path
) -> None:
    run_python_sdk("rudderstack", gzip, server, proxy, write_key, isolated_env)


def test_segment_node_sdk_retries_a_lost_response_and_each_message_is_stored_once(
    node_sdk: None,  # first: skips before the server starts
    server: ServerProcess,
    proxy: DroppingProxy,
    write_key: str,
    isolated_env: Path,
) -> None:
    calls = scenario(datetime.now(UTC))
    proxy.drop_next(1)
    run = send_with_node_sdk(write_key, proxy.url, calls)
    assert not run.errors, f"the Node SDK reported failed deliveries: {run.errors}"
    # @segment/analytics-node has no gzip option: it always sends plain JSON.
    check_the_retry(proxy, run, gzip=False, retry_header=True)
    check_stored_once(server, isolated_env, calls, run, library="@segment/analytics-node")
    check_profiles_and_counts(server, identify_traits=True)
