"""The deployed Lambda entry points, called as Lambda calls them: real API Gateway HTTP API
and SQS event shapes in, moto's DynamoDB and SQS behind them."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from mysoulmate.runtime.backends import event_store

from tests.support.aws import (
    API_REQUEST_ID,
    BASE_TIME,
    TABLE_NAME,
    ApiCalls,
    FakeLambdaContext,
    Queues,
    event_items,
    http_event,
    queued_message,
    receive_all,
    sqs_event,
)

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]
TRACK = "/api/v1/analytics/track"
IDENTIFY = "/api/v1/analytics/identify"
ALICE = {"sub": "alice", "roles": "[user]"}


@pytest.fixture
def deployed(lambda_env: Callable[..., None], events_table: str, queues: Queues) -> Queues:
    """Table and queue exist, and the process is configured as the deployed functions are."""
    lambda_env(queues.url)
    return queues


@pytest.fixture
def analytics(deployed: Queues, load_function: Callable[[str], Handler]) -> Handler:
    return load_function("analytics")


@pytest.fixture
def consumer(deployed: Queues, load_function: Callable[[str], Handler]) -> Handler:
    return load_function("consumer")


def body_of(response: dict[str, Any]) -> Any:
    assert response.get("isBase64Encoded") in (False, None)
    return json.loads(response["body"])


def header(response: dict[str, Any], name: str) -> str | None:
    headers = {k.lower(): v for k, v in (response.get("headers") or {}).items()}
    return headers.get(name.lower())


def assert_error(response: dict[str, Any], status: int, code: str) -> dict[str, Any]:
    """The one error envelope, carrying API Gateway's request id."""
    assert response["statusCode"] == status, response["body"]
    body = body_of(response)
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"code", "message", "details", "requestId"}
    assert error["code"] == code
    assert isinstance(error["message"], str)
    assert error["message"]
    assert error["requestId"] == API_REQUEST_ID
    assert header(response, "x-request-id") == API_REQUEST_ID
    return dict(error)


def stored_ids(dynamodb: Any) -> list[str]:
    return sorted(item["sk"]["S"].removeprefix("EVENT#") for item in event_items(dynamodb))


# -- analytics: track ----------------------------------------------------------------------


def test_track_is_queued_and_answered_202(
    analytics: Handler, lambda_context: FakeLambdaContext, sqs: Any, deployed: Queues
) -> None:
    event = http_event(
        "POST",
        TRACK,
        body={"event": "Song Played", "properties": {"songId": "s-1"}, "platform": "ios"},
        claims=ALICE,
    )

    response = analytics(event, lambda_context)

    assert response["statusCode"] == 202, response["body"]
    body = body_of(response)
    assert body["status"] == "queued"
    assert body["messageId"]
    assert header(response, "x-request-id") == event["requestContext"]["requestId"]
    messages = receive_all(sqs, deployed.url)
    assert len(messages) == 1
    queued = json.loads(messages[0]["Body"])
    assert queued["type"] == "track"
    assert queued["userId"] == "alice"
    assert queued["event"] == "Song Played"
    assert queued["properties"] == {"songId": "s-1"}
    assert queued["messageId"] == body["messageId"]
    assert queued["requestId"] == API_REQUEST_ID


def test_track_body_sent_base64_encoded_is_accepted(
    analytics: Handler, lambda_context: FakeLambdaContext, sqs: Any, deployed: Queues
) -> None:
    event = http_event(
        "POST",
        TRACK,
        body={"event": "Ünïcode ✓", "messageId": "client-1"},
        claims=ALICE,
        base64_body=True,
    )

    response = analytics(event, lambda_context)

    assert response["statusCode"] == 202, response["body"]
    assert body_of(response)["messageId"] == "client-1"
    [message] = receive_all(sqs, deployed.url)
    assert json.loads(message["Body"])["event"] == "Ünïcode ✓"


def test_track_without_claims_is_401(
    analytics: Handler, lambda_context: FakeLambdaContext, sqs: Any, deployed: Queues
) -> None:
    response = analytics(http_event("POST", TRACK, body={"event": "x"}), lambda_context)

    assert_error(response, 401, "unauthorized")
    assert header(response, "www-authenticate")
    assert receive_all(sqs, deployed.url) == []


def test_track_with_claims_lacking_a_subject_is_401(
    analytics: Handler, lambda_context: FakeLambdaContext, sqs: Any, deployed: Queues
) -> None:
    event = http_event("POST", TRACK, body={"event": "x"}, claims={"roles": "[admin]"})

    response = analytics(event, lambda_context)

    assert_error(response, 401, "invalid_token")
    assert receive_all(sqs, deployed.url) == []


def test_track_with_a_subject_that_cannot_be_a_user_id_is_401_and_queues_nothing(
    analytics: Handler, lambda_context: FakeLambdaContext, sqs: Any, deployed: Queues
) -> None:
    # Through the fast ingest path: the subject is checked after the rate-limit token is
    # taken, and the app's own handler answers the error.
    event = http_event("POST", TRACK, body={"event": "x"}, claims={"sub": "x" * 256})

    response = analytics(event, lambda_context)

    assert_error(response, 401, "invalid_token")
    assert receive_all(sqs, deployed.url) == []


def test_track_for_another_user_without_admin_is_403(
    analytics: Handler, lambda_context: FakeLambdaContext, sqs: Any, deployed: Queues
) -> None:
    event = http_event("POST", TRACK, body={"event": "x", "userId": "bob"}, claims=ALICE)

    response = analytics(event, lambda_context)

    assert_error(response, 403, "user_id_mismatch")
    assert receive_all(sqs, deployed.url) == []


@pytest.mark.parametrize("roles", ["[admin]", "[user admin]", "[server]"])
def test_track_for_another_user_with_admin_or_server_role_queues_for_that_user(
    analytics: Handler,
    lambda_context: FakeLambdaContext,
    sqs: Any,
    deployed: Queues,
    roles: str,
) -> None:
    event = http_event(
        "POST",
        TRACK,
        body={"event": "Backfill", "userId": "bob"},
        claims={"sub": "ops", "roles": roles},
    )

    response = analytics(event, lambda_context)

    assert response["statusCode"] == 202, response["body"]
    [message] = receive_all(sqs, deployed.url)
    assert json.loads(message["Body"])["userId"] == "bob"


def test_track_with_invalid_json_is_400(
    analytics: Handler, lambda_context: FakeLambdaContext, sqs: Any, deployed: Queues
) -> None:
    event = http_event("POST", TRACK, raw_body='{"event": "x",', claims=ALICE)

    response = analytics(event, lambda_context)

    assert_error(response, 400, "invalid_json")
    assert receive_all(sqs, deployed.url) == []


def test_track_with_invalid_fields_is_422_naming_them(
    analytics: Handler, lambda_context: FakeLambdaContext, sqs: Any, deployed: Queues
) -> None:
    event = http_event("POST", TRACK, body={"properties": [], "colour": "red"}, claims=ALICE)

    response = analytics(event, lambda_context)

    error = assert_error(response, 422, "validation_error")
    fields = {d["field"] for d in error["details"]}
    assert {"event", "properties", "colour"} <= fields
    assert receive_all(sqs, deployed.url) == []


def test_track_is_503_and_not_accepted_when_the_queue_is_gone(
    lambda_env: Callable[..., None],
    events_table: str,
    queues: Queues,
    load_function: Callable[[str], Handler],
    lambda_context: FakeLambdaContext,
) -> None:
    lambda_env(queues.url.rsplit("/", 1)[0] + "/no-such-queue")
    analytics = load_function("analytics")

    response = analytics(
        http_event("POST", TRACK, body={"event": "x"}, claims=ALICE), lambda_context
    )

    assert_error(response, 503, "queue_unavailable")


def test_identify_is_queued_for_the_caller(
    analytics: Handler, lambda_context: FakeLambdaContext, sqs: Any, deployed: Queues
) -> None:
    event = http_event(
        "POST",
        IDENTIFY,
        body={"traits": {"plan": "pro"}, "traitsOnce": {"firstSeen": "2026-01-31"}},
        claims=ALICE,
    )

    response = analytics(event, lambda_context)

    assert response["statusCode"] == 202, response["body"]
    [message] = receive_all(sqs, deployed.url)
    queued = json.loads(message["Body"])
    assert queued["type"] == "identify"
    assert queued["userId"] == "alice"
    assert queued["traits"] == {"plan": "pro"}
    assert queued["traitsOnce"] == {"firstSeen": "2026-01-31"}


# -- from the API through the queue to storage and back ------------------------------------


def test_tracked_event_reaches_storage_through_the_consumer(
    analytics: Handler,
    consumer: Handler,
    lambda_context: FakeLambdaContext,
    sqs: Any,
    deployed: Queues,
) -> None:
    accepted = analytics(
        http_event("POST", TRACK, body={"event": "Song Played"}, claims=ALICE), lambda_context
    )
    [message] = receive_all(sqs, deployed.url)

    outcome = consumer(sqs_event([message["Body"]], [message["MessageId"]]), lambda_context)
    page = analytics(
        http_event("GET", "/api/v1/analytics/user/alice", claims=ALICE), lambda_context
    )

    assert outcome == {"batchItemFailures": []}
    assert page["statusCode"] == 200, page["body"]
    [stored] = body_of(page)["events"]
    assert stored["messageId"] == body_of(accepted)["messageId"]
    assert stored["event"] == "Song Played"


# -- analytics: reading a user's events ----------------------------------------------------


def test_user_events_are_returned_newest_first(
    analytics: Handler, consumer: Handler, lambda_context: FakeLambdaContext
) -> None:
    messages = [
        queued_message("alice", message_id=f"m-{i}", at=BASE_TIME + timedelta(minutes=m))
        for i, m in enumerate([5, 1, 9, 3])
    ]
    messages.append(queued_message("bob", message_id="b-1"))
    consumer(sqs_event([m.model_dump_json() for m in messages]), lambda_context)

    response = analytics(
        http_event("GET", "/api/v1/analytics/user/alice", claims=ALICE), lambda_context
    )

    assert response["statusCode"] == 200, response["body"]
    body = body_of(response)
    assert body["userId"] == "alice"
    assert [e["messageId"] for e in body["events"]] == ["m-2", "m-0", "m-3", "m-1"]
    assert body["nextCursor"] is None
    assert body["profile"]["traits"] == {}  # no identify yet
    assert body["profile"]["firstSeen"] == "2026-01-31T12:01:00Z"
    assert body["eventCounts"] == {"Song Played": 4}


def test_user_events_page_with_the_returned_cursor(
    analytics: Handler, consumer: Handler, lambda_context: FakeLambdaContext
) -> None:
    messages = [
        queued_message("alice", message_id=f"m-{i}", at=BASE_TIME + timedelta(minutes=i))
        for i in range(5)
    ]
    consumer(sqs_event([m.model_dump_json() for m in messages]), lambda_context)

    seen: list[str] = []
    query = "limit=2"
    pages = 0
    while True:
        response = analytics(
            http_event("GET", "/api/v1/analytics/user/alice", claims=ALICE, query=query),
            lambda_context,
        )
        assert response["statusCode"] == 200, response["body"]
        body = body_of(response)
        seen.extend(e["messageId"] for e in body["events"])
        pages += 1
        if body["nextCursor"] is None or pages > 5:
            break
        query = f"limit=2&cursor={body['nextCursor']}"

    assert pages == 3
    assert seen == ["m-4", "m-3", "m-2", "m-1", "m-0"]


def test_user_events_with_a_garbage_cursor_is_422(
    analytics: Handler, lambda_context: FakeLambdaContext
) -> None:
    response = analytics(
        http_event("GET", "/api/v1/analytics/user/alice", claims=ALICE, query="cursor=abc"),
        lambda_context,
    )

    assert_error(response, 422, "invalid_cursor")


def test_reading_another_users_events_is_403(
    analytics: Handler, consumer: Handler, lambda_context: FakeLambdaContext
) -> None:
    consumer(sqs_event([queued_message("bob").model_dump_json()]), lambda_context)

    response = analytics(
        http_event("GET", "/api/v1/analytics/user/bob", claims=ALICE), lambda_context
    )

    error = assert_error(response, 403, "forbidden_other_user")
    assert "bob" not in json.dumps(error["details"])


def test_admin_may_read_another_users_events(
    analytics: Handler, consumer: Handler, lambda_context: FakeLambdaContext
) -> None:
    consumer(sqs_event([queued_message("bob", message_id="b-1").model_dump_json()]), lambda_context)

    response = analytics(
        http_event("GET", "/api/v1/analytics/user/bob", claims={"sub": "ops", "roles": "[admin]"}),
        lambda_context,
    )

    assert response["statusCode"] == 200, response["body"]
    assert [e["messageId"] for e in body_of(response)["events"]] == ["b-1"]


# -- health --------------------------------------------------------------------------------


def test_liveness_is_200(
    deployed: Queues, load_function: Callable[[str], Handler], lambda_context: FakeLambdaContext
) -> None:
    health = load_function("health")

    response = health(http_event("GET", "/health"), lambda_context)

    assert response["statusCode"] == 200
    assert body_of(response)["status"] == "ok"
    assert header(response, "x-request-id") == API_REQUEST_ID


def test_readiness_is_200_when_table_and_queue_exist(
    deployed: Queues, load_function: Callable[[str], Handler], lambda_context: FakeLambdaContext
) -> None:
    health = load_function("health")

    response = health(http_event("GET", "/health/ready"), lambda_context)

    assert response["statusCode"] == 200, response["body"]
    assert body_of(response) == {"status": "ready", "checks": {"storage": "ok", "queue": "ok"}}


def test_readiness_is_503_naming_storage_when_the_table_is_missing(
    lambda_env: Callable[..., None],
    queues: Queues,
    load_function: Callable[[str], Handler],
    lambda_context: FakeLambdaContext,
) -> None:
    lambda_env(queues.url)  # no table created
    health = load_function("health")

    response = health(http_event("GET", "/health/ready"), lambda_context)

    error = assert_error(response, 503, "service_unavailable")
    assert error["details"] == {"failing": ["storage"]}
    assert "storage" in error["message"]
    assert "queue" not in error["message"]


def test_readiness_is_503_naming_the_queue_when_it_is_missing(
    lambda_env: Callable[..., None],
    events_table: str,
    queues: Queues,
    load_function: Callable[[str], Handler],
    lambda_context: FakeLambdaContext,
) -> None:
    lambda_env(queues.url.rsplit("/", 1)[0] + "/no-such-queue")
    health = load_function("health")

    response = health(http_event("GET", "/health/ready"), lambda_context)

    error = assert_error(response, 503, "service_unavailable")
    assert error["details"] == {"failing": ["queue"]}
    assert "queue" in error["message"]


# -- consumer ------------------------------------------------------------------------------


POISON_BODIES = {
    "not-json": "Hello from SQS!",
    "truncated-json": '{"v":1,"type":"track"',
    "missing-user": queued_message().model_dump_json(exclude={"userId"}),
    "unknown-version": queued_message().model_dump_json().replace('"v":1', '"v":2', 1),
    "unknown-type": queued_message().model_dump_json().replace('"track"', '"purchase"', 1),
}


@pytest.mark.parametrize("poison", list(POISON_BODIES.values()), ids=list(POISON_BODIES))
def test_a_poison_record_fails_alone_and_redelivery_stores_nothing_twice(
    consumer: Handler, lambda_context: FakeLambdaContext, dynamodb: Any, poison: str
) -> None:
    good = [queued_message("alice", message_id=f"m-{i}") for i in range(9)]
    bodies = [m.model_dump_json() for m in good]
    bodies.insert(4, poison)
    event = sqs_event(bodies)
    poison_id = event["Records"][4]["messageId"]

    first = consumer(event, lambda_context)

    assert first == {"batchItemFailures": [{"itemIdentifier": poison_id}]}
    assert stored_ids(dynamodb) == sorted(m.messageId for m in good)

    again = consumer(event, lambda_context)

    assert again == {"batchItemFailures": [{"itemIdentifier": poison_id}]}
    assert len(event_items(dynamodb)) == 9
    assert stored_ids(dynamodb) == sorted(m.messageId for m in good)


def test_a_redelivered_visitor_record_links_again_and_moves_what_its_first_delivery_left(
    consumer: Handler, lambda_context: FakeLambdaContext, dynamodb: Any
) -> None:
    """A move cut short: the first delivery stored the visitor's message as the visitor, the
    link to ann was then made but its move failed. SQS hands the record out again
    (ApproximateReceiveCount 2): stored as ann, and linking again moves the visitor's copy of
    the same message, so ann has it once and the visitor nothing."""
    from mysoulmate.storage.dynamodb.moves import link_actions

    visit = queued_message("anon:v-1", message_id="m-v", anonymousId="v-1")
    event = sqs_event([visit.model_dump_json()])
    assert consumer(event, lambda_context) == {"batchItemFailures": []}
    dynamodb.transact_write_items(
        TransactItems=link_actions(TABLE_NAME, "v-1", "ann", "2026-01-01T00:00:00.000000Z")
    )

    event["Records"][0]["attributes"]["ApproximateReceiveCount"] = "2"
    assert consumer(event, lambda_context) == {"batchItemFailures": []}

    owners = sorted(item["pk"]["S"] for item in event_items(dynamodb))
    assert owners == ["USER#ann"]
    assert stored_ids(dynamodb) == ["m-v"]


def test_two_records_with_the_same_message_are_stored_once(
    consumer: Handler, lambda_context: FakeLambdaContext, dynamodb: Any
) -> None:
    duplicate = queued_message("alice", message_id="same").model_dump_json()
    others = [queued_message("alice", message_id=f"m-{i}").model_dump_json() for i in range(3)]

    response = consumer(sqs_event([duplicate, *others, duplicate]), lambda_context)

    assert response == {"batchItemFailures": []}
    assert stored_ids(dynamodb) == ["m-0", "m-1", "m-2", "same"]


def test_an_identify_record_merges_traits_into_the_profile(
    consumer: Handler,
    analytics: Handler,
    lambda_context: FakeLambdaContext,
    dynamodb: Any,
) -> None:
    first = queued_message(
        "alice",
        type="identify",
        at=BASE_TIME,
        traits={"plan": "free", "name": "Al"},
        anonymousId="anon-1",
    )
    later = queued_message(
        "alice",
        type="identify",
        at=BASE_TIME + timedelta(minutes=1),
        traits={"plan": "pro"},
        traitsOnce={"firstSeen": "2026-01-31", "name": "Not Al"},
    )

    assert consumer(sqs_event([first.model_dump_json()]), lambda_context) == {
        "batchItemFailures": []
    }
    assert consumer(sqs_event([later.model_dump_json()]), lambda_context) == {
        "batchItemFailures": []
    }

    item = dynamodb.get_item(
        TableName=TABLE_NAME, Key={"pk": {"S": "USER#alice"}, "sk": {"S": "PROFILE"}}
    )["Item"]
    profile = json.loads(item["doc"]["S"])
    assert profile["traits"] == {"plan": "pro", "name": "Al", "firstSeen": "2026-01-31"}
    assert profile["anonymousIds"] == ["anon-1"]
    read = analytics(
        http_event("GET", "/api/v1/analytics/user/alice", claims=ALICE), lambda_context
    )
    assert body_of(read)["profile"]["traits"] == profile["traits"]


def test_an_identify_redelivered_after_a_newer_one_changes_nothing(
    consumer: Handler, lambda_context: FakeLambdaContext, dynamodb: Any
) -> None:
    older = queued_message("alice", type="identify", at=BASE_TIME, traits={"plan": "free"})
    newer = queued_message(
        "alice", type="identify", at=BASE_TIME + timedelta(minutes=1), traits={"plan": "pro"}
    )

    consumer(sqs_event([older.model_dump_json()]), lambda_context)
    consumer(sqs_event([newer.model_dump_json()]), lambda_context)
    consumer(sqs_event([older.model_dump_json()]), lambda_context)

    item = dynamodb.get_item(
        TableName=TABLE_NAME, Key={"pk": {"S": "USER#alice"}, "sk": {"S": "PROFILE"}}
    )["Item"]
    assert json.loads(item["doc"]["S"])["traits"] == {"plan": "pro"}
    assert len(event_items(dynamodb)) == 2


def test_a_batch_of_100_costs_at_most_3_transactions_of_at_most_100_actions(
    consumer: Handler, lambda_context: FakeLambdaContext, dynamodb: Any
) -> None:
    """Events and their rollups go in TransactWriteItems calls (AWS caps them at 100
    actions; moto does not, so the adapter must)."""
    client = event_store()._client  # type: ignore[attr-defined]
    transactions: list[int] = []

    def count(params: dict[str, Any], model: Any, **_: Any) -> None:
        if model.name == "TransactWriteItems":
            transactions.append(len(json.loads(params["body"])["TransactItems"]))

    client.meta.events.register("before-call.dynamodb", count)
    messages = [queued_message("alice", message_id=f"m-{i:03d}") for i in range(100)]

    response = consumer(sqs_event([m.model_dump_json() for m in messages]), lambda_context)

    assert response == {"batchItemFailures": []}
    assert 1 <= len(transactions) <= 3
    assert max(transactions) <= 100
    assert len(event_items(dynamodb)) == 100


def test_records_whose_write_fails_are_reported_for_redelivery(
    consumer: Handler, lambda_context: FakeLambdaContext, dynamodb: Any
) -> None:
    """A transaction DynamoDB keeps cancelling fails its own records only: exactly the
    records not stored are reported, so SQS redelivers exactly them."""
    client = event_store()._client  # type: ignore[attr-defined]
    stuck = "EVENT#m-149"

    def cancel(params: dict[str, Any], **_: Any) -> Any:
        actions = json.loads(params["body"])["TransactItems"]
        keys = [a.get("Put", {}).get("Item", {}).get("sk", {}).get("S") for a in actions]
        if stuck not in keys:
            return None
        reasons = [{"Code": "TransactionConflict"}] + [{"Code": "None"}] * (len(actions) - 1)
        error = {"Code": "TransactionCanceledException", "Message": "Transaction cancelled"}
        return SimpleNamespace(status_code=400, headers={}), {
            "Error": error,
            "CancellationReasons": reasons,
            "ResponseMetadata": {"HTTPStatusCode": 400},
        }

    client.meta.events.register("before-call.dynamodb.TransactWriteItems", cancel)
    event_store()._sleep = lambda seconds: None  # type: ignore[attr-defined]
    messages = [queued_message(f"u-{i % 7}", message_id=f"m-{i}") for i in range(150)]
    event = sqs_event([m.model_dump_json() for m in messages])

    response = consumer(event, lambda_context)

    failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
    by_record = {r["messageId"]: json.loads(r["body"])["messageId"] for r in event["Records"]}
    stored = set(stored_ids(dynamodb))
    assert event["Records"][149]["messageId"] in failed
    assert 0 < len(failed) < 150
    assert {by_record[r] for r in failed} == set(by_record.values()) - stored


def test_identifies_cost_one_profile_read_and_one_write_per_batch(
    consumer: Handler, lambda_context: FakeLambdaContext, dynamodb: Any
) -> None:
    calls = ApiCalls(event_store()._client, "dynamodb")  # type: ignore[attr-defined]
    messages = [
        queued_message(
            user,
            type="identify",
            message_id=f"{user}-{i}",
            traits={f"t{i}": i},
            at=BASE_TIME + timedelta(minutes=i),
        )
        for user in ("alice", "bob")
        for i in range(10)
    ]

    response = consumer(sqs_event([m.model_dump_json() for m in messages]), lambda_context)

    assert response == {"batchItemFailures": []}
    # Both users' profiles in one read, whatever the number of their identifies.
    (read,) = [c for c in calls.of("BatchGetItem") if "PROFILE" in str(c["RequestItems"])]
    assert len(next(iter(read["RequestItems"].values()))["Keys"]) == 2
    assert calls.of("GetItem") == []
    # One write for both: each user's profile Put with its erasure check, one transaction.
    profile_writes = [
        params
        for params in calls.of("TransactWriteItems")
        if any("Put" in action and "PROFILE" in str(action) for action in params["TransactItems"])
    ]
    assert len(profile_writes) == 1
    assert len(profile_writes[0]["TransactItems"]) == 4
    profile = event_store().get_profile("alice")
    assert profile is not None
    assert profile.traits == {f"t{i}": i for i in range(10)}
