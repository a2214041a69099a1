"""Moto-backed AWS fixtures: the events table, the events queue with its DLQ, and the
Lambda functions loaded from `functions/*/app.py` exactly as Lambda would import them.

Resources copy the real shapes from template.yaml (key schema, GSI, redrive policy), so a
test that passes here exercises the same keys and limits the deployed stack has. The
helpers they use (names, builders, readers) are in tests/support/aws.py.
"""

from __future__ import annotations

import importlib.util
import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws
from mysoulmate.core import concurrency
from mysoulmate.runtime.backends import reset_backends

from tests.support.aws import (
    DLQ_NAME,
    QUEUE_NAME,
    REGION,
    REPO_ROOT,
    TABLE_NAME,
    FakeLambdaContext,
    Queues,
    create_events_table,
)
from tests.support.moto import (
    fast_sorted_items,
    one_rollback_copy_per_transaction,
    serialized_dynamodb,
)


@pytest.fixture
def aws() -> Iterator[None]:
    """Everything boto3 does inside the test talks to moto's in-process AWS."""
    with mock_aws():
        yield


@pytest.fixture
def events_table(aws: None) -> str:
    return create_events_table()


@pytest.fixture
def dynamodb(aws: None) -> Any:
    """A plain DynamoDB client for the test's own checks (not the one under test)."""
    return boto3.client("dynamodb", region_name=REGION)


@pytest.fixture
def sqs(aws: None) -> Any:
    return boto3.client("sqs", region_name=REGION)


@pytest.fixture
def queues(sqs: Any) -> Queues:
    """The events queue and its dead-letter queue, redriven after 5 receives as deployed."""
    dlq_url = sqs.create_queue(QueueName=DLQ_NAME)["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    url = sqs.create_queue(
        QueueName=QUEUE_NAME,
        Attributes={
            "VisibilityTimeout": "180",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"}),
        },
    )["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    return Queues(url=url, arn=arn, dlq_url=dlq_url, dlq_arn=dlq_arn)


@pytest.fixture
def lambda_context() -> FakeLambdaContext:
    return FakeLambdaContext()


@pytest.fixture
def lambda_env(monkeypatch: pytest.MonkeyPatch, aws: None) -> Callable[..., None]:
    """Configure the process as the deployed functions are (DynamoDB, SQS, API Gateway auth).

    Returns a function taking ``queue_url`` (and optionally ``table``), so tests may point
    the functions at a queue or table that does not exist.
    """

    def configure(queue_url: str, table: str = TABLE_NAME) -> None:
        monkeypatch.setenv("STORAGE_BACKEND", "dynamodb")
        monkeypatch.setenv("QUEUE_BACKEND", "sqs")
        monkeypatch.setenv("EVENTS_TABLE", table)
        monkeypatch.setenv("EVENTS_QUEUE_URL", queue_url)
        monkeypatch.setenv("AUTH_MODE", "apigateway")
        monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "mysoulmate-test")
        monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "mysoulmate-test")
        # Decided at import time from AWS_LAMBDA_FUNCTION_NAME; the module may already be
        # imported by an earlier test, so set what a fresh Lambda process would compute.
        monkeypatch.setattr(concurrency, "ON_LAMBDA", True)
        reset_backends()

    return configure


@pytest.fixture
def load_function() -> Callable[[str], Callable[[dict[str, Any], Any], dict[str, Any]]]:
    """Import `functions/<name>/app.py` afresh (as a cold start would) and return `handler`."""

    def load(name: str) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
        path = REPO_ROOT / "functions" / name / "app.py"
        spec = importlib.util.spec_from_file_location(f"{name}_app_{uuid.uuid4().hex}", path)
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        handler: Callable[[dict[str, Any], Any], dict[str, Any]] = module.handler
        return handler

    return load


@pytest.fixture(autouse=True)
def fast_moto_transactions(monkeypatch: pytest.MonkeyPatch) -> None:
    one_rollback_copy_per_transaction(monkeypatch)
    serialized_dynamodb(monkeypatch)
    fast_sorted_items(monkeypatch)
