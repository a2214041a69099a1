"""`/api/v1/i18n/*`: public, cacheable catalogs and translations (no sign-in needed)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from mysoulmate.api import examples
from mysoulmate.api.rate_limit import limit_public
from mysoulmate.api.responses import errors, ok, operation_id
from mysoulmate.api.strict_query import reject_unknown_query
from mysoulmate.core.request_context import locale_of
from mysoulmate.core.settings import get_settings
from mysoulmate.i18n import service
from mysoulmate.i18n.service import LocaleList, Translation

router = APIRouter(
    prefix="/api/v1/i18n",
    tags=["i18n"],
    dependencies=[Depends(reject_unknown_query), Depends(limit_public)],
    generate_unique_id_function=operation_id,
)
PARAM_PREFIX = "param."


@router.get(
    "/locales",
    response_model=LocaleList,
    summary="Supported locales",
    responses={**ok(examples.LOCALES), **errors(429)},
)
async def locales() -> LocaleList:
    """Every supported locale: code, English and native names, completeness, direction."""
    return service.list_locales()


@router.get(
    "/translations/{locale}",
    summary="A translation catalog",
    responses={
        200: {
            "content": {
                "application/json": {"schema": {"type": "object"}, "example": examples.CATALOG}
            },
            "description": "The catalog (nested keys), with an ETag",
        },
        304: {"description": "Unchanged since the ETag sent in If-None-Match"},
        **errors(404, 422, 429),
    },
)
async def translations(
    request: Request,
    locale: Annotated[str, Path(min_length=2, max_length=35)],
    namespace: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
) -> Response:
    """The whole catalog, or one namespace; revalidate with `If-None-Match`."""
    body, etag, language = service.catalog_document(locale, namespace)
    max_age = 0 if get_settings().stage == "local" else 300
    headers = {
        "ETag": etag,
        "Cache-Control": f"public, max-age={max_age}, must-revalidate",
        "Content-Language": language,  # the catalog's, not the request's negotiated locale
    }
    sent = request.headers.get("if-none-match", "")
    if etag in {tag.strip() for tag in sent.split(",")} or sent.strip() == "*":
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="application/json", headers=headers)


@router.get(
    "/translate",
    response_model=Translation,
    summary="Translate one key",
    responses={**ok(examples.TRANSLATION), **errors(404, 422, 429)},
)
async def translate(
    request: Request,
    key: Annotated[str, Query(min_length=1, max_length=200)],
    locale: Annotated[
        str | None, Query(max_length=35, description="Default: the request's locale")
    ] = None,
    count: Annotated[float | None, Query(description="Selects the plural form")] = None,
    params: Annotated[
        str | None,
        Query(max_length=4096, description='JSON object, e.g. {"name":"Ava"}; or param.name=Ava'),
    ] = None,
) -> Translation:
    """One string, interpolated and pluralized."""
    pairs = {
        name[len(PARAM_PREFIX) :]: value
        for name, value in request.query_params.items()
        if name.startswith(PARAM_PREFIX) and len(name) > len(PARAM_PREFIX)
    }
    values = service.parse_params(params, pairs)
    return service.translate_one(key, locale or locale_of(request.scope), count, values)
