"""AWS test helpers: the names and shapes of the moto resources (as template.yaml declares
them), a Lambda context, an API call recorder, readers of queues and tables, and builders of
queued messages and of the SQS and API Gateway events the functions receive.

The fixtures that create the resources and configure the functions are in
tests/integration/conftest.py.
"""

from __future__ import annotations

import base64
import copy
import json
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
from mysoulmate.analytics.models import QueuedMessage
from mysoulmate.storage.dynamodb.store import table_schema

from tests.support.helpers import load_event

REPO_ROOT = Path(__file__).resolve().parents[2]
REGION = "us-east-1"
TABLE_NAME = "mysoulmate-test-events"
QUEUE_NAME = "mysoulmate-test-events"
DLQ_NAME = "mysoulmate-test-events-dlq"
API_REQUEST_ID = "Jh5zfgx1IAMEVlw="
BASE_TIME = datetime(2026, 1, 31, 12, 0, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Queues:
    url: str
    arn: str
    dlq_url: str
    dlq_arn: str


@dataclass
class FakeLambdaContext:
    """The attributes Powertools' Logger and Metrics read from a Lambda context."""

    function_name: str = "mysoulmate-test"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = f"arn:aws:lambda:{REGION}:123456789012:function:mysoulmate-test"
    aws_request_id: str = "52fdfc07-2182-154f-163f-5f0f9a621d72"
    function_version: str = "$LATEST"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


class ApiCalls:
    """Records the API parameters of every call a botocore client makes (via its event hooks)."""

    def __init__(self, client: Any, service: str) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        client.meta.events.register(f"provide-client-params.{service}", self._record)

    def _record(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        self.calls.append((model.name, copy.deepcopy(params)))

    def of(self, operation: str) -> list[dict[str, Any]]:
        return [params for name, params in self.calls if name == operation]


# -- AWS resources ------------------------------------------------------------------------


def create_events_table(name: str = TABLE_NAME) -> str:
    """The events table as the DynamoDB adapter declares it (template.yaml must match)."""
    client = boto3.client("dynamodb", region_name=REGION)
    client.create_table(TableName=name, **table_schema())
    return name


def receive_all(sqs: Any, queue_url: str) -> list[dict[str, Any]]:
    """Every message currently visible in the queue (each becomes invisible once received)."""
    received: list[dict[str, Any]] = []
    while True:
        batch = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
        ).get("Messages", [])
        if not batch:
            return received
        received.extend(batch)


def event_items(dynamodb: Any, table: str = TABLE_NAME) -> list[dict[str, Any]]:
    """All event items (sk beginning EVENT#) in the table."""
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {
        "TableName": table,
        "FilterExpression": "begins_with(sk, :event)",
        "ExpressionAttributeValues": {":event": {"S": "EVENT#"}},
    }
    while True:
        page = dynamodb.scan(**kwargs)
        items.extend(page["Items"])
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


# -- messages and Lambda events -------------------------------------------------------------


def queued_message(
    user_id: str = "alice",
    *,
    message_id: str | None = None,
    type: str = "track",
    event: str | None = "Song Played",
    at: datetime | None = None,
    **fields: Any,
) -> QueuedMessage:
    """A valid message as the API would have queued it."""
    at = at or BASE_TIME
    return QueuedMessage(
        type=type,  # type: ignore[arg-type]
        messageId=message_id or str(uuid.uuid4()),
        userId=user_id,
        event=event if type == "track" else None,
        timestamp=at,
        receivedAt=at + timedelta(seconds=1),
        **fields,
    )


def sqs_event(bodies: list[str], record_ids: list[str] | None = None) -> dict[str, Any]:
    """An SQS event (from `sam local generate-event sqs receive-message`) carrying ``bodies``."""
    template = load_event("sqs-receive-message.json")["Records"][0]
    ids = record_ids or [str(uuid.uuid4()) for _ in bodies]
    records = []
    for record_id, body in zip(ids, bodies, strict=True):
        record = copy.deepcopy(template)
        record["messageId"] = record_id
        record["receiptHandle"] = f"handle-{record_id}"
        record["body"] = body
        record["md5OfBody"] = ""
        record["eventSourceARN"] = f"arn:aws:sqs:{REGION}:123456789012:{QUEUE_NAME}"
        records.append(record)
    return {"Records": records}


def http_event(
    method: str,
    path: str,
    *,
    body: Any = None,
    raw_body: str | None = None,
    claims: dict[str, Any] | None = None,
    query: str = "",
    request_id: str = API_REQUEST_ID,
    base64_body: bool = False,
) -> dict[str, Any]:
    """An API Gateway HTTP API (payload v2) event, from `sam local generate-event apigateway
    http-api-proxy`, for ``method path``; ``claims=None`` means no authorizer context."""
    event = load_event("apigw-http-api-proxy.json")
    event["routeKey"] = f"{method} {path}"
    event["rawPath"] = path
    event["rawQueryString"] = query
    event.pop("cookies", None)
    event.pop("pathParameters", None)
    event.pop("stageVariables", None)
    if query:
        params: dict[str, str] = {}
        for pair in query.split("&"):
            name, _, value = pair.partition("=")
            params[name] = f"{params[name]},{value}" if name in params else value
        event["queryStringParameters"] = params
    else:
        event.pop("queryStringParameters", None)
    event["headers"] = {"accept": "application/json", "user-agent": "integration-test"}
    context = event["requestContext"]
    context["http"]["method"] = method
    context["http"]["path"] = path
    context["routeKey"] = event["routeKey"]
    context["requestId"] = request_id
    if claims is None:
        context.pop("authorizer", None)
    else:
        context["authorizer"] = {"jwt": {"claims": claims, "scopes": None}}
    text = raw_body if raw_body is not None else (None if body is None else json.dumps(body))
    if text is None:
        event.pop("body", None)
        event["isBase64Encoded"] = False
    else:
        event["headers"]["content-type"] = "application/json"
        event["body"] = base64.b64encode(text.encode()).decode() if base64_body else text
        event["isBase64Encoded"] = base64_body
    return event


# -- clients -------------------------------------------------------------------------------


class SerializedClient:
    """Delegates to a boto3 client, one call at a time.

    DynamoDB applies a conditional write atomically; moto's in-memory backend checks the
    condition and writes in two Python steps that threads can interleave. Serializing the
    calls restores DynamoDB's guarantee without hiding the store's own races (it still
    reads, merges and writes in separate calls).
    """

    def __init__(self, client: Any) -> None:
        self._client = client
        self._lock = threading.Lock()
        self.meta = client.meta

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._client, name)
        if not callable(target):
            return target

        def call(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return target(*args, **kwargs)

        return call
