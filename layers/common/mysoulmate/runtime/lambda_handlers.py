"""Lambda entry points: an API group behind API Gateway, and the SQS consumer (the
forwarders' are in `lambda_forwarder`).

`functions/<group>/app.py` call these with their own router, so each function imports
only its group's code, and every handler gets the same wrapping: Powertools' Logger (JSON,
correlation id, cold start, redacted) and Metrics (EMF), and, when tracing is enabled (on
Lambda unless POWERTOOLS_TRACE_DISABLED=true), an X-Ray subsegment for the invocation with
the AWS calls (botocore) inside it. `Tracer` is not even imported when tracing is off.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mysoulmate.observability import get_logger, get_metrics, init_error_tracking
from mysoulmate.observability.powertools import get_tracer

if TYPE_CHECKING:
    from fastapi import APIRouter

    from mysoulmate.analytics.ingest import Forward
    from mysoulmate.core.settings import Settings

LambdaHandler = Callable[[dict[str, Any], Any], dict[str, Any]]


def http_handler(*routers: APIRouter) -> LambdaHandler:
    """Wrap the routers' FastAPI app with Mangum; correlation id = API Gateway request id."""
    import asyncio

    from mangum import Mangum

    from mysoulmate.api.app_factory import create_app
    from mysoulmate.observability.error_tracking import install_asyncio_exception_handler
    from mysoulmate.runtime.backends import api_adapters

    init_error_tracking("lambda")
    asgi = Mangum(create_app(*routers, adapters=api_adapters()), lifespan="off")
    install_asyncio_exception_handler(asyncio.get_event_loop())  # the loop Mangum runs on
    logger, metrics = get_logger(), get_metrics()

    @metrics.log_metrics(capture_cold_start_metric=True)
    @logger.inject_lambda_context
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        # API Gateway's request id, as `correlation_paths.API_GATEWAY_HTTP` finds it, read
        # directly: Powertools' JMESPath query of that path cost ~10 µs per request.
        request_context = event.get("requestContext")
        logger.set_correlation_id(
            request_context.get("requestId") if isinstance(request_context, dict) else None
        )
        return asgi(event, context)

    return traced(handler)


def sqs_consumer_handler() -> LambdaHandler:
    """Store a batch of queued analytics messages, reporting failed records individually.

    Records are parsed by Powertools' BatchProcessor (a poison record fails alone) and
    written together when the batch ends; records whose write failed are reported as
    batch item failures too, so SQS redelivers exactly those.
    """
    from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

    from mysoulmate.analytics.ingest import IngestBatch, PoisonMessageError
    from mysoulmate.core.settings import get_settings
    from mysoulmate.observability import count
    from mysoulmate.observability.storage_ops import storage_operation
    from mysoulmate.runtime.backends import event_store

    init_error_tracking("lambda")
    logger, metrics = get_logger(), get_metrics()
    processor = BatchProcessor(event_type=EventType.SQS)
    forward = _forward_hook(get_settings())
    backend = get_settings().storage_backend

    @metrics.log_metrics(capture_cold_start_metric=True)
    @logger.inject_lambda_context
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        batch = IngestBatch(event_store(), forward)
        by_id: dict[str, SQSRecord] = {}

        def record_handler(record: SQSRecord) -> None:
            by_id[record.message_id] = record
            try:
                batch.add(record.message_id, record.body, delivery=receive_count(record.raw_event))
            except PoisonMessageError as exc:
                logger.warning(
                    "poison record", extra={"sqsMessageId": record.message_id, "reason": str(exc)}
                )
                raise

        with processor(event.get("Records", []), record_handler, lambda_context=context):
            processor.process()
            with storage_operation("ingest_flush", backend) as operation:
                outcome = batch.flush()
                operation.rows = outcome.stored
            for record_id, reason in outcome.failed_records.items():
                # Logged with its reason (never the payload): SQS keeps none in the DLQ.
                logger.warning(
                    "record not stored", extra={"sqsMessageId": record_id, "reason": reason}
                )
                error = RuntimeError(reason)
                processor.failure_handler(by_id[record_id], (RuntimeError, error, None))
        count("EventsStored", outcome.stored)
        count("EventsDeduplicated", outcome.duplicates)
        count("EventsErasedDropped", outcome.erased)
        count("ConsumerRecordFailures", len(processor.fail_messages))
        return dict(processor.response())

    return traced(handler)


def receive_count(record: dict[str, Any]) -> int:
    """How many times SQS has handed this record out (1 the first time, or if it did not say)."""
    try:
        return int(record.get("attributes", {}).get("ApproximateReceiveCount", 1))
    except (TypeError, ValueError):
        return 1


def _forward_hook(settings: Settings) -> Forward | None:
    """The providers' SQS queues the consumer appends stored messages to (none configured:
    nothing to forward, and the forwarding module is never imported)."""
    if not (settings.mixpanel_forward_queue_url or settings.ga4_forward_queue_url):
        return None
    from mysoulmate.runtime.forwarding import sqs_forward_hook

    return sqs_forward_hook(settings)


def traced(handler: Any) -> LambdaHandler:
    """``handler`` inside an X-Ray subsegment (``## handler``, annotated ColdStart and
    Service) when tracing is on. Responses are not recorded: they may hold personal data."""
    tracer = get_tracer()
    if tracer is None:
        return handler  # type: ignore[no-any-return]
    return tracer.capture_lambda_handler(handler, capture_response=False)
