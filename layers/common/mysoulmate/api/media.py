"""`GET /api/v1/images/{key}`: an original resized for the device (public, cacheable).

The route validates the query by type, runs the domain's `MediaService.serve` in a worker
thread (decoding and encoding are CPU work) and turns its answer into a response: the image
with an ETag and a year of immutable caching, a 304, or a redirect to a presigned URL. The
composition root hands the service in with `provide_media` (`runtime.media.install_media`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from mysoulmate.api.rate_limit import limit_public
from mysoulmate.api.responses import ERROR_CODES, errors, operation_id
from mysoulmate.api.strict_query import reject_unknown_query
from mysoulmate.core.concurrency import run_blocking
from mysoulmate.media.rules import KEY_PATTERN, LADDER, MAX_DPR, MIN_DPR, Fit, PresetName
from mysoulmate.media.service import ImageQuery, MediaService

router = APIRouter(
    prefix="/api/v1/images",
    tags=["media"],
    dependencies=[Depends(reject_unknown_query), Depends(limit_public)],
    generate_unique_id_function=operation_id,
)

IMMUTABLE = "public, max-age=31536000, immutable"
_service: Callable[[], MediaService] | None = None


def provide_media(factory: Callable[[], MediaService]) -> None:
    """Installed by the composition root; tests pass a service over stores of their own."""
    global _service
    _service = factory


async def get_media() -> MediaService:
    if _service is None:
        raise RuntimeError("no media service: call runtime.media.install_media() first")
    return _service()


def _header(description: str) -> dict[str, Any]:
    return {"description": description, "schema": {"type": "string"}}


_IMAGE_HEADERS = {
    "ETag": _header("The derivative's tag (content hash of the original and the parameters)."),
    "Cache-Control": _header(f"`{IMMUTABLE}`: a derivative never changes."),
    "Vary": _header("`Accept` (the format is negotiated), and `Accept-Language`."),
}
_BINARY = {"schema": {"type": "string", "format": "binary"}}


def _documented_errors() -> dict[int | str, dict[str, Any]]:
    """The shared error entries, with this route's codes as their examples."""
    declared = errors(400, 403, 404, 413, 422, 429, 503)
    declared[406] = copy.deepcopy(declared[404])
    for status, code, description in (
        (400, "invalid_width", "`w` is not on the ladder of widths."),
        (403, "invalid_signature", "Signing required and missing, forged or expired."),
        (404, "image_not_found", "No original under this key."),
        (406, "not_acceptable", "The client accepts none of AVIF, WebP, JPEG or PNG."),
        (413, "image_too_large", "The original is larger than MEDIA_MAX_ORIGINAL_BYTES."),
        (422, "image_too_many_pixels", "A bad key or parameter, or an unusable original."),
    ):
        entry = declared[status]
        entry["description"] = description
        example = entry["content"]["application/json"]["example"]["error"]
        example.update(code=code, message=ERROR_CODES[code])
    return dict(sorted(declared.items(), key=lambda item: str(item[0])))


@router.get(
    "/{key:path}",
    summary="An image resized for the device",
    response_class=Response,
    responses={
        200: {
            "description": "The derivative, in the negotiated format",
            "content": {
                t: _BINARY for t in ("image/avif", "image/webp", "image/jpeg", "image/png")
            },
            "headers": _IMAGE_HEADERS,
        },
        302: {
            "description": "On Lambda, a derivative too large for a response: fetch it from "
            "the presigned URL in Location (valid for MEDIA_PRESIGN_SECONDS).",
            "headers": {"Location": _header("A presigned S3 URL of the derivative.")},
        },
        304: {"description": "Unchanged since the ETag sent in If-None-Match"},
        **_documented_errors(),
    },
)
async def image(
    request: Request,
    key: Annotated[
        str,
        Path(
            max_length=512,
            pattern=KEY_PATTERN,
            description="The original's key: segments of letters, digits, `.`, `_`, `-`, "
            "each starting with a letter or digit, joined by `/`.",
        ),
    ],
    media: Annotated[MediaService, Depends(get_media)],
    w: Annotated[
        int | None,
        Query(
            ge=1,
            le=100_000,
            description=f"Width in CSS pixels, one of {', '.join(map(str, LADDER))} (any "
            "other: 400). Default: the preset's width.",
            json_schema_extra={"enum": list(LADDER)},
        ),
    ] = None,
    preset: Annotated[
        PresetName | None,
        Query(
            description="thumb (128, square, cover), avatar (256, square, cover), card "
            "(512, 4:3, cover) or full (1024, the original's shape, contain). Default: full."
        ),
    ] = None,
    dpr: Annotated[
        float | None,
        Query(
            ge=MIN_DPR,
            le=MAX_DPR,
            description="Device pixel ratio: multiplies the width, snapped up to the ladder.",
        ),
    ] = None,
    fit: Annotated[
        Fit | None,
        Query(description="cover (fill the box, crop) or contain (fit inside); never enlarges."),
    ] = None,
    sig: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=128,
            description="HMAC-SHA256 signature of the URL (docs/media.md); required when "
            "MEDIA_REQUIRE_SIGNED=true.",
        ),
    ] = None,
    exp: Annotated[
        int | None,
        Query(ge=0, le=2**40, description="Expiry of the signature, Unix seconds."),
    ] = None,
) -> Response:
    """The original under `key`, oriented, stripped of its metadata and resized into the box
    the parameters name, in the best format the `Accept` header allows (AVIF, WebP, then
    JPEG, or PNG for transparency). Rendered once, then served from the cache; revalidate
    with `If-None-Match`."""
    query = ImageQuery(w=w, preset=preset, dpr=dpr, fit=fit, sig=sig, exp=exp)
    answer = await run_blocking(
        media.serve,
        key,
        query,
        request.headers.get("accept"),
        request.headers.get("if-none-match"),
    )
    headers = {
        "ETag": answer.etag,
        "Vary": "Accept",
        "Cache-Control": IMMUTABLE,
        # Images are embedded by apps on other origins (the secure default is same-origin).
        "Cross-Origin-Resource-Policy": "cross-origin",
    }
    if answer.kind == "not_modified":
        return Response(status_code=304, headers=headers)
    if answer.kind == "redirect":
        headers.update({"Location": answer.location, "Cache-Control": "no-store"})
        return Response(status_code=302, headers=headers)
    return Response(answer.body, media_type=answer.media_type, headers=headers)
