"""`/v1/*`: Segment's HTTP Tracking API, so the stock Segment and RudderStack SDKs work
against us unmodified (RudderStack's SDKs use the same paths).

A write key authenticates: the Basic-auth user name (empty password) or ``writeKey`` in the
body. The answer is ``200 {"success": true}`` once every accepted message is durably queued;
a batch with invalid messages queues the valid ones and lists the others under ``rejected``.
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field, ValidationError

from mysoulmate.analytics import packing, segment
from mysoulmate.analytics.bulkheads import QUEUE, STORAGE
from mysoulmate.analytics.models import QueuedMessage
from mysoulmate.analytics.pii import PiiPolicy
from mysoulmate.analytics.ports import MessageQueue, QueueError, Source, SourceStore
from mysoulmate.analytics.write_keys import WRITE_KEYS
from mysoulmate.api import segment_docs
from mysoulmate.api.dependencies import get_queue, get_sources
from mysoulmate.api.error_handlers import localized_rejections, validation_details
from mysoulmate.api.rate_limit import limit_source
from mysoulmate.api.responses import errors, ok, operation_id
from mysoulmate.core.errors import ApiError, DependencyUnavailableError
from mysoulmate.core.json_nesting import NestingScanner
from mysoulmate.core.request_context import locale_of, request_id_of
from mysoulmate.core.settings import get_settings
from mysoulmate.observability import count

router = APIRouter(prefix="/v1", tags=["segment"], generate_unique_id_function=operation_id)

Queue = Annotated[MessageQueue, Depends(get_queue)]
Sources = Annotated[SourceStore, Depends(get_sources)]
WRITE_KEY_AUTH: dict[str, Any] = {"security": [{"writeKey": []}]}
SEGMENT_ERRORS = (400, 401, 429, 503)


class InvalidWriteKeyError(ApiError):
    status_code = 401
    code = "invalid_write_key"

    def __init__(self) -> None:
        super().__init__(headers={"WWW-Authenticate": 'Basic realm="mysoulmate"'})


class Rejected(BaseModel):
    index: int = Field(description="The message's position in `batch` (0 on single calls).")
    code: str = Field(description="A stable error code (see the error envelope).")
    message: str = Field(description="What was wrong, in the negotiated language.")
    details: list[dict[str, Any]] | None = Field(
        default=None, description="Per-field problems of a `validation_error`."
    )


class SegmentAnswer(BaseModel):
    success: bool = Field(description="True once every accepted message is durably queued.")
    rejected: list[Rejected] = Field(
        default_factory=list,
        description="Messages of the batch that were not queued; the others were.",
    )


def decoded_body(raw: bytes, encoding: str | None) -> bytes:
    """The body, gunzipped when so encoded, never larger than Segment's request limit (a
    small compressed body must not expand past it)."""
    limit = segment.MAX_REQUEST_BYTES
    if len(raw) > limit:
        raise ApiError(code="payload_too_large", limit=limit)
    encoding = (encoding or "identity").strip().lower()
    if encoding == "identity":
        return raw
    if encoding != "gzip":
        raise ApiError(code="unsupported_encoding", encoding=encoding[:40])
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        body = inflater.decompress(raw, limit + 1)
    except zlib.error:
        raise ApiError(code="invalid_gzip") from None
    if len(body) > limit or inflater.unconsumed_tail:
        raise ApiError(code="payload_too_large", limit=limit)
    if not inflater.eof:
        raise ApiError(code="invalid_gzip")
    return body


def parsed_json(body: bytes, *, scan_nesting: bool) -> dict[str, Any]:
    """The JSON object of the body. A decompressed body is scanned for nesting here, before
    json.loads, whose recursion it could exhaust (plain bodies were, as they arrived)."""
    if scan_nesting:
        NestingScanner().feed(body, last=True)
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(code="invalid_json") from None
    if not isinstance(document, dict):
        raise ApiError(code="invalid_batch")
    return document


def write_key_of(request: Request, document: dict[str, Any]) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() == "basic" and credentials:
        try:
            user, _, _ = base64.b64decode(credentials, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise InvalidWriteKeyError() from None
        if user:
            return user
    key = document.get("writeKey")
    if isinstance(key, str) and key:
        return key
    raise InvalidWriteKeyError()


async def authenticated_source(
    request: Request, document: dict[str, Any], store: SourceStore
) -> Source:
    key = write_key_of(request, document)
    hit, source = WRITE_KEYS.cached(key)
    if not hit:  # only a cache miss pays the thread hand-off of a storage call
        source = await STORAGE.run(WRITE_KEYS.lookup, store, key)
    if source is None:
        raise InvalidWriteKeyError()
    return source


async def read_document(request: Request) -> dict[str, Any]:
    raw = await request.body()
    encoding = request.headers.get("content-encoding")
    body = decoded_body(raw, encoding)
    return parsed_json(body, scan_nesting=body is not raw)


def batch_of(document: dict[str, Any], locale: str) -> list[Any]:
    """The batch's messages, once the batch-level fields are of the right types: a body
    broken as a whole is refused whole (a message broken alone is rejected alone)."""
    messages = document.get("batch")
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise ApiError(code="invalid_batch")
    if len(messages) > segment.MAX_BATCH_MESSAGES:
        raise ApiError(
            code="batch_too_large", limit=segment.MAX_BATCH_MESSAGES, count=len(messages)
        )
    for name in ("context", "integrations"):
        if name in document and not isinstance(document[name], dict):
            raise _invalid_field(name, "dict_type", locale)
    return messages


def _invalid_field(name: str, kind: str, locale: str) -> ApiError:
    """A 400 `validation_error` for one batch-level field."""
    details = validation_details([{"loc": (name,), "type": kind}], locale)
    return ApiError(code="validation_error", details=details, fields=name)


def intake(
    request: Request, source: Source | None, batch: dict[str, Any], **caller: Any
) -> segment.Intake:
    """What every message of this request shares; batch-level fields only for /batch;
    ``caller``: `Intake.acting_user` and `Intake.may_act_for_others` of a signed-in caller."""
    settings = get_settings()
    try:
        sent_at = segment.sent_at_of(batch)
    except ValidationError:
        raise _invalid_field("sentAt", "datetime_parsing", locale_of(request.scope)) from None
    return segment.Intake(
        **caller,
        source=source,
        received_at=datetime.now(UTC),
        request_id=request_id_of(request.scope),
        max_future_seconds=settings.max_future_seconds,
        client_max_age=timedelta(days=settings.client_event_max_age_days),
        pii=PiiPolicy(enabled=settings.pii_filter, contact_mode=settings.pii_contact_mode),
        batch_sent_at=sent_at,
        batch_context=_object(batch.get("context")),
        batch_integrations=_object(batch.get("integrations")),
    )


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


async def enqueue(queue: MessageQueue, messages: list[QueuedMessage]) -> None:
    """Durably queued, several messages per queue body: one queue call per ~240 KiB."""
    try:
        await QUEUE.run(queue.send_batch, packing.queue_bodies(messages))
    except QueueError:
        raise DependencyUnavailableError(
            code="queue_unavailable", headers={"Retry-After": "1"}
        ) from None
    count("EventsAccepted", len(messages))


def answer(request: Request, parsed: segment.ParsedRequest, single: bool) -> SegmentAnswer:
    """Success with the rejected messages listed; a request that queued nothing is a 400."""
    rejected = [
        Rejected(**item) for item in localized_rejections(parsed.rejected, locale_of(request.scope))
    ]
    if rejected and (single or not parsed.messages):
        first = parsed.rejected[0]
        if single:
            raise ApiError(code=first.code, details=rejected[0].details, **first.params)
        # Shaped like every validation detail (field, type, message), one per message.
        details: list[dict[str, Any]] = [
            {"field": f"batch[{item.index}]", "type": item.code, "message": item.message}
            | ({"details": item.details} if item.details else {})
            for item in rejected
        ]
        fields = ", ".join(f"batch[{item.index}]" for item in rejected)
        raise ApiError(code="validation_error", details=details, fields=fields)
    return SegmentAnswer(success=True, rejected=rejected)


async def ingest(
    request: Request,
    response: Response,
    queue: MessageQueue,
    sources: SourceStore,
    implied_type: str | None,
) -> SegmentAnswer:
    document = await read_document(request)
    source = await authenticated_source(request, document, sources)
    locale = locale_of(request.scope)
    raw_messages = batch_of(document, locale) if implied_type is None else [document]
    batch = document if implied_type is None else {}
    parsed = segment.parse_messages(raw_messages, intake(request, source, batch), implied_type)
    anonymous_ids = {m.anonymousId for m in parsed.messages if m.anonymousId}
    await limit_source(request, response, source.kind, source.id, anonymous_ids)
    if parsed.messages:
        await enqueue(queue, parsed.messages)
    return answer(request, parsed, single=implied_type is not None)


def _route(path: str, implied_type: str | None, summary: str, in_schema: bool = True) -> None:
    async def endpoint(
        request: Request, response: Response, queue: Queue, sources: Sources
    ) -> SegmentAnswer:
        return await ingest(request, response, queue, sources, implied_type)

    endpoint.__name__ = f"segment_{path.strip('/')}" if in_schema else f"segment_short_{path[1:]}"
    endpoint.__doc__ = summary
    router.add_api_route(
        path,
        endpoint,
        methods=["POST"],
        response_model=SegmentAnswer,
        summary=summary,
        responses={**ok(segment_docs.ACCEPTED), **errors(*SEGMENT_ERRORS)},
        openapi_extra={**WRITE_KEY_AUTH, **segment_docs.request_body(implied_type)},
        include_in_schema=in_schema,
    )


_route("/batch", None, "Send a batch of Segment messages")
for _type in segment.MESSAGE_TYPES:
    _route(f"/{_type}", _type, f"Send one Segment `{_type}` message")
# analytics.js (Segment's browser SDK) posts to one-letter paths: the same routes, unlisted.
_route("/b", None, "Send a batch of Segment messages", in_schema=False)
for _type in segment.MESSAGE_TYPES:
    _route(f"/{_type[0]}", _type, f"Send one Segment `{_type}` message", in_schema=False)
