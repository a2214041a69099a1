"""One image request, start to finish: check the key and signature, find the original's
content hash, negotiate the format, answer from the cache or render once and cache.

A cache hit costs three small reads and no imaging: the original's stat (size and version),
its source record (content hash, type, transparency; kept in memory too) and the cached
derivative. The derivative's name and ETag come from the content hash and the normalized
parameters, so a 304 needs no derivative read at all, and replacing an original under the
same key gives new names and ETags (the old derivatives are never served for it again).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from mysoulmate.media import rules, signing
from mysoulmate.media.errors import ImageNotFoundError, ImageTooLargeError
from mysoulmate.media.rules import Fit, Limits, OutputFormat, PresetName
from mysoulmate.observability.signals import count, observe

if TYPE_CHECKING:
    from collections.abc import Callable

    from mysoulmate.media.imaging import Source
    from mysoulmate.media.ports import Derivatives, OriginalInfo, Originals


@dataclass(frozen=True)
class ImageQuery:
    """The request's parameters, as the client sent them (validated by type only)."""

    w: int | None = None
    preset: PresetName | None = None
    dpr: float | None = None
    fit: Fit | None = None
    sig: str | None = None
    exp: int | None = None

    def signed_params(self) -> dict[str, object]:
        return {"w": self.w, "preset": self.preset, "dpr": self.dpr, "fit": self.fit}


@dataclass(frozen=True)
class MediaOptions:
    """How a deployment serves images (built from the environment by the runtime)."""

    limits: Limits = field(default_factory=Limits)
    signing_secret: Callable[[], str] = lambda: ""
    require_signed: bool = False
    # Derivatives larger than this are redirected to a presigned URL (0: never). On Lambda the
    # response payload is capped at 6 MB, and binary bodies travel base64-encoded (4/3 larger).
    redirect_over_bytes: int = 0
    presign_seconds: int = 300
    # At most this many renders at once per process: each holds a decoded image in memory.
    render_concurrency: int = 2


@dataclass(frozen=True)
class Answer:
    """What the route sends: a body, a 304 (no body) or a redirect (``location``)."""

    kind: Literal["image", "not_modified", "redirect"]
    etag: str
    media_type: str
    body: bytes = b""
    location: str = ""


@dataclass(frozen=True)
class SourceRecord:
    """An original's content hash and header facts, cached per (key, version)."""

    digest: str
    format: str
    width: int
    height: int
    has_alpha: bool

    def to_json(self) -> bytes:
        return json.dumps(self.__dict__, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> SourceRecord | None:
        try:
            fields = json.loads(data)
            return cls(**{name: fields[name] for name in cls.__dataclass_fields__})
        except (ValueError, KeyError, TypeError):
            return None  # a damaged record is recomputed, never trusted


class MediaService:
    """Serves ``/api/v1/images/{key}`` over the two stores; safe to share between threads."""

    RECORDS_KEPT = 4096

    def __init__(
        self, originals: Originals, derivatives: Derivatives, options: MediaOptions
    ) -> None:
        self.originals = originals
        self.derivatives = derivatives
        self.options = options
        self._records: OrderedDict[tuple[str, str], SourceRecord] = OrderedDict()
        self._lock = threading.Lock()
        self._renders = threading.BoundedSemaphore(max(1, options.render_concurrency))
        self.renders = 0  # derivatives rendered by this process (tests, benchmarks)

    def serve(
        self,
        key: str,
        query: ImageQuery,
        accept: str | None = None,
        if_none_match: str | None = None,
        now: float | None = None,
    ) -> Answer:
        rules.check_key(key)
        signing.verify(
            self.options.signing_secret() if query.sig is not None else "",
            key,
            query.signed_params(),
            query.sig,
            query.exp,
            now=time.time() if now is None else now,
            required=self.options.require_signed,
        )
        variant = rules.variant_for(query.w, query.preset, query.dpr, query.fit)
        info = self.originals.stat(key)
        if info is None:
            raise ImageNotFoundError(key=key)
        limit = self.options.limits.max_bytes
        if info.size > limit:
            raise ImageTooLargeError(size=info.size, limit=limit)
        record, original = self._source(key, info)
        fmt = rules.negotiate(accept, has_alpha=record.has_alpha, avif=_avif())
        derivative = rules.derivative_key(record.digest, variant, fmt)
        etag, media_type = rules.etag_of(derivative), rules.MEDIA_TYPES[fmt]
        if rules.etag_matches(if_none_match, etag):
            count("ImageRequests", outcome="not_modified", format=fmt)
            return Answer("not_modified", etag, media_type)
        name = rules.derivative_name(derivative, fmt)
        redirect_over = self.options.redirect_over_bytes or None
        cached = self.derivatives.get(name, redirect_over)
        if cached is not None and cached.data is not None:
            count("ImageRequests", outcome="cache_hit", format=fmt)
            return Answer("image", etag, media_type, cached.data)
        if cached is None:
            body = self._render(key, original, variant, fmt)
            self.derivatives.put(name, body, media_type)
            if redirect_over is None or len(body) <= redirect_over:
                count("ImageRequests", outcome="rendered", format=fmt)
                return Answer("image", etag, media_type, body)
        count("ImageRequests", outcome="redirect", format=fmt)
        url = self.derivatives.presigned_url(name, self.options.presign_seconds)
        if url is None:  # a store without URLs of its own: send the bytes after all
            fetched = self.derivatives.get(name)
            if fetched is None or fetched.data is None:
                raise ImageNotFoundError(key=key)
            return Answer("image", etag, media_type, fetched.data)
        return Answer("redirect", etag, media_type, location=url)

    # -- the original's content hash and header --------------------------------------------

    def _source(self, key: str, info: OriginalInfo) -> tuple[SourceRecord, bytes | None]:
        """The record of this version of the original (memory, then the store, then read and
        probed: the bytes read are returned so a first render does not read them again)."""
        memo = (key, info.version)
        with self._lock:
            record = self._records.get(memo)
            if record is not None:
                self._records.move_to_end(memo)
                return record, None
        name = _record_name(key, info.version)
        fetched = self.derivatives.get(name, 64 * 1024)
        stored = SourceRecord.from_json(fetched.data) if fetched and fetched.data else None
        original = None
        if stored is None:
            original = self._read(key)
            source = _probe(original, self.options.limits)
            stored = SourceRecord(
                hashlib.sha256(original).hexdigest(),
                source.format,
                source.width,
                source.height,
                source.has_alpha,
            )
            self.derivatives.put(name, stored.to_json(), "application/json")
        with self._lock:
            self._records[memo] = stored
            while len(self._records) > self.RECORDS_KEPT:
                self._records.popitem(last=False)
        return stored, original

    def _read(self, key: str) -> bytes:
        limit = self.options.limits.max_bytes
        data = self.originals.read(key, limit)
        if data is None:
            raise ImageNotFoundError(key=key)
        if len(data) > limit:  # grew since its stat
            raise ImageTooLargeError(size=len(data), limit=limit)
        return data

    def _render(
        self, key: str, original: bytes | None, variant: rules.Variant, fmt: OutputFormat
    ) -> bytes:
        data = original if original is not None else self._read(key)
        with self._renders:
            started = time.perf_counter()
            body = _render(data, variant, fmt, self.options.limits)
            observe("ImageRenderTime", time.perf_counter() - started, format=fmt)
        with self._lock:
            self.renders += 1
        return body


def _record_name(key: str, version: str) -> str:
    """Source records live beside the derivatives, named by key and version (both hashed)."""
    by_key = hashlib.sha256(key.encode()).hexdigest()
    by_version = hashlib.sha256(version.encode()).hexdigest()[:32]
    return f"sources/{by_key[:2]}/{by_key}-{by_version}.json"


# Pillow is imported on first use: health checks and cold starts never load it.


def _avif() -> bool:
    from mysoulmate.media.imaging import avif_supported

    return avif_supported()


def _probe(data: bytes, limits: Limits) -> Source:
    from mysoulmate.media.imaging import probe

    return probe(data, limits)


def _render(data: bytes, variant: rules.Variant, fmt: OutputFormat, limits: Limits) -> bytes:
    from mysoulmate.media.imaging import render

    return render(data, variant, fmt, limits)
