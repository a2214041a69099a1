"""`/api/v1/admin/sources`: write keys per source, for admins (the CLI's `writekey`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Path, status
from pydantic import BaseModel, ConfigDict, Field

from mysoulmate.analytics import write_keys
from mysoulmate.analytics.bulkheads import STORAGE
from mysoulmate.analytics.ports import Source, SourceStore
from mysoulmate.api import segment_docs
from mysoulmate.api.auth import current_principal
from mysoulmate.api.dependencies import get_sources
from mysoulmate.api.rate_limit import limit_read
from mysoulmate.api.responses import ADMIN, READ_ERRORS, errors, ok, operation_id
from mysoulmate.api.strict_query import reject_unknown_query
from mysoulmate.core.errors import NotFoundError
from mysoulmate.core.principal import Principal

router = APIRouter(
    prefix="/api/v1/admin/sources",
    tags=["sources"],
    generate_unique_id_function=operation_id,
    dependencies=[Depends(reject_unknown_query), Depends(limit_read)],
)

Caller = Annotated[Principal, Depends(current_principal)]
Sources = Annotated[SourceStore, Depends(get_sources)]
SourceIdPath = Annotated[str, Path(alias="sourceId", min_length=1, max_length=64)]


class NewSource(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=write_keys.MAX_NAME_LENGTH, examples=["ios"])
    kind: write_keys.SourceKind = Field(
        description="`client`: web and mobile apps; the key is public and can only write, "
        "limited per IP and per anonymous id. `server`: a secret key that may also backfill "
        "events older than the client window."
    )


class SourceView(BaseModel):
    id: str
    name: str
    kind: str
    keyHint: str = Field(description="The key's first characters, to tell keys apart.")
    createdAt: datetime
    revokedAt: datetime | None = None

    @classmethod
    def of(cls, source: Source) -> SourceView:
        return cls(
            id=source.id,
            name=source.name,
            kind=source.kind,
            keyHint=source.key_hint,
            createdAt=source.created_at,
            revokedAt=source.revoked_at,
        )


class CreatedSource(SourceView):
    writeKey: str = Field(description="Shown once: only its hash is stored.")


class SourceList(BaseModel):
    sources: list[SourceView]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Create a source and its write key",
    responses={**ok(segment_docs.CREATED_SOURCE, 201), **errors(*READ_ERRORS)},
    openapi_extra=ADMIN,
)
async def create_source(
    body: Annotated[NewSource, Body(openapi_examples=segment_docs.NEW_SOURCE_EXAMPLES)],
    caller: Caller,
    sources: Sources,
) -> CreatedSource:
    """Admin only. The answer holds the write key; it is never shown again."""
    caller.require_admin()
    source, key = await STORAGE.run(
        write_keys.create_source, sources, body.name, body.kind, datetime.now(UTC)
    )
    return CreatedSource(**SourceView.of(source).model_dump(), writeKey=key)


@router.get(
    "",
    summary="List sources",
    responses={**ok(segment_docs.SOURCE_LIST), **errors(*READ_ERRORS)},
    openapi_extra=ADMIN,
)
async def list_sources(caller: Caller, sources: Sources) -> SourceList:
    """Admin only. Every source, revoked ones included, oldest first; never a key."""
    caller.require_admin()
    found = await STORAGE.run(sources.list_sources)
    return SourceList(sources=[SourceView.of(source) for source in found])


@router.delete(
    "/{sourceId}",
    summary="Revoke a source's write key",
    responses={**ok(segment_docs.SOURCE), **errors(*READ_ERRORS, 404)},
    openapi_extra=ADMIN,
)
async def revoke_source(source_id: SourceIdPath, caller: Caller, sources: Sources) -> SourceView:
    """Admin only. Every process stops accepting the key within 60 s (its cache's time);
    this one at once. Revoking again keeps the first revocation time."""
    caller.require_admin()
    revoked = await STORAGE.run(sources.revoke_source, source_id, datetime.now(UTC))
    if revoked is None:
        raise NotFoundError(code="source_not_found", id=source_id)
    write_keys.WRITE_KEYS.forget()
    return SourceView.of(revoked)
