"""The forwarder function of the AWS shape: one per provider, draining that provider's SQS
forward queue (filled by the consumer with what it stored).

A batch goes to the provider through the same `Forwarder` the laptop's forward thread uses
(erasure, opt-out and ``integrations`` checked when sending; retries, Retry-After and a
circuit breaker per provider; the ledger in the events table or database). What becomes of
the records:

* sent, or skipped on purpose: deleted (a success);
* the provider is unavailable (5xx, 429, timeout, breaker open): reported as batch item
  failures with their visibility pushed back by `deferral_seconds` of their receive count,
  so an hour's outage costs a few receives, not the queue's whole `maxReceiveCount`, and
  the backlog drains by itself when the provider is back;
* refused for good (a 4xx) or unreadable: sent to the dead-letter queue at once with the
  reason, instead of burning every remaining receive on a request that cannot succeed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mysoulmate.core.settings import SettingsError, get_settings
from mysoulmate.observability import count, get_logger, get_metrics, init_error_tracking
from mysoulmate.runtime.lambda_handlers import LambdaHandler, receive_count, traced

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import ChangeMessageVisibilityBatchRequestEntryTypeDef

BACKOFF_BASE_SECONDS = 60
BACKOFF_MAX_SECONDS = 3600
_VISIBILITY_BATCH = 10  # ChangeMessageVisibilityBatch takes at most 10 entries


def deferral_seconds(receive_count: int) -> int:
    """How long a deferred record stays invisible: 1, 2, 4 … minutes, at most an hour.

    With the forward queues' maxReceiveCount (24), a provider may be down for about 18
    hours before its records reach the dead-letter queue."""
    exponent = min(max(receive_count - 1, 0), 16)
    return int(min(BACKOFF_BASE_SECONDS * (1 << exponent), BACKOFF_MAX_SECONDS))


def sqs_forwarder_handler() -> LambdaHandler:
    """The handler of the forwarder for FORWARD_PROVIDER (built once, at init)."""
    from mysoulmate.providers.forwarder import Forwarder
    from mysoulmate.runtime.backends import event_store, forward_ledger
    from mysoulmate.runtime.forwarding import (
        build_providers,
        forward_queue_urls,
        parse_forward_batch,
    )
    from mysoulmate.storage.aws import aws_client

    settings = get_settings()
    name = settings.forward_provider
    if not name:
        raise SettingsError("FORWARD_PROVIDER must name the provider this function forwards to")
    chosen = build_providers(settings, only=name)
    queue_url = forward_queue_urls(settings).get(name, "")
    if not chosen or not queue_url:
        raise SettingsError(f"FORWARD_PROVIDER={name}, but {name} or its queue is not configured")
    (provider, batch_size), *_ = chosen
    init_error_tracking("lambda")
    forwarder = Forwarder(
        provider,
        event_store(),
        forward_ledger(),
        batch_size=batch_size,
        allowed_properties=frozenset(settings.forward_allowed_properties),
    )
    sqs: SQSClient = aws_client("sqs")
    logger, metrics = get_logger(), get_metrics()

    @metrics.log_metrics(capture_cold_start_metric=True)
    @logger.inject_lambda_context
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        records: list[dict[str, Any]] = list(event.get("Records") or [])
        parsed = parse_forward_batch(records, lambda record: str(record.get("body", "")))
        readable = parsed.readable
        unreadable = {record.get("messageId", "?"): why for record, why in parsed.unreadable}
        failed = _dead_letter(sqs, settings.forward_dlq_url, records, unreadable, name)
        if not parsed.messages:
            return _response(failed)
        outcome = forwarder.forward(parsed.messages)
        if outcome.deferred:
            logger.warning(
                "provider unavailable; batch deferred",
                extra={"provider": name, "reason": outcome.deferred, "records": len(readable)},
            )
            _defer(sqs, queue_url, readable)
            failed += [r["messageId"] for r in readable]
        elif outcome.rejected:
            logger.warning(
                "provider refused the batch; dead-lettered",
                extra={"provider": name, "reason": outcome.rejected, "records": len(readable)},
            )
            reasons = {r["messageId"]: f"rejected: {outcome.rejected}" for r in readable}
            failed += _dead_letter(sqs, settings.forward_dlq_url, readable, reasons, name)
        return _response(failed)

    return traced(handler)


def _response(failed: list[str]) -> dict[str, Any]:
    return {"batchItemFailures": [{"itemIdentifier": record_id} for record_id in failed]}


def _defer(sqs: SQSClient, queue_url: str, records: list[dict[str, Any]]) -> None:
    """Push the records' visibility back by their deferral; a failure here only means they
    come back after the queue's own visibility timeout."""
    entries: list[ChangeMessageVisibilityBatchRequestEntryTypeDef] = [
        {
            "Id": str(i),
            "ReceiptHandle": r["receiptHandle"],
            "VisibilityTimeout": deferral_seconds(receive_count(r)),
        }
        for i, r in enumerate(records)
        if r.get("receiptHandle")
    ]
    for start in range(0, len(entries), _VISIBILITY_BATCH):
        try:
            sqs.change_message_visibility_batch(
                QueueUrl=queue_url,
                Entries=entries[start : start + _VISIBILITY_BATCH],
            )
        except Exception as exc:  # noqa: BLE001 - the default visibility timeout applies
            get_logger().warning("could not defer records", extra={"error": type(exc).__name__})


def _dead_letter(
    sqs: SQSClient,
    dlq_url: str,
    records: list[dict[str, Any]],
    reasons: dict[str, str],
    provider: str,
) -> list[str]:
    """Send the records named in ``reasons`` to the dead-letter queue, each with its reason
    as a message attribute; return the ids that could not be sent there (they are reported
    as failures instead, so the queue's own redrive policy dead-letters them later)."""
    from mysoulmate.queue.limits import batches_within_limits

    chosen = [r for r in records if r.get("messageId") in reasons]
    if not chosen:
        return []
    if not dlq_url:
        return [r["messageId"] for r in chosen]
    bodies = [str(record.get("body", "")) for record in chosen]
    failed: list[str] = []
    position = 0
    for call in batches_within_limits(bodies):
        group = chosen[position : position + len(call)]
        position += len(call)
        entries = [
            {
                "Id": str(i),
                "MessageBody": body,
                "MessageAttributes": {
                    "reason": {
                        "DataType": "String",
                        "StringValue": reasons[record["messageId"]][:256],
                    },
                    "provider": {"DataType": "String", "StringValue": provider},
                },
            }
            for i, (record, body) in enumerate(zip(group, call, strict=True))
        ]
        try:
            response = sqs.send_message_batch(QueueUrl=dlq_url, Entries=entries)  # type: ignore[arg-type]
        except Exception as exc:  # noqa: BLE001 - reported as failures: SQS redelivers them
            get_logger().warning("dead-lettering failed", extra={"error": type(exc).__name__})
            failed += [record["messageId"] for record in group]
            continue
        lost = {int(f["Id"]) for f in response.get("Failed", [])}
        failed += [record["messageId"] for i, record in enumerate(group) if i in lost]
        count("ForwardDeadLettered", len(group) - len(lost), provider=provider)
    return failed
