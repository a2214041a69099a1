"""What the media domain needs from storage, implemented by `storage.media_local` (a
directory) and `storage.media_s3` (S3 buckets).

Originals are read by key (already checked by `rules.check_key`); derivatives and source
records are cached blobs under names the domain makes. Implementations are synchronous: the
route runs the whole request in a worker thread (`core.concurrency.run_blocking`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class OriginalInfo:
    """An original's size, and a token that changes whenever its content may have (size and
    mtime locally, the ETag on S3): the key of its cached content hash."""

    size: int
    version: str


@dataclass(frozen=True)
class Fetched:
    """A cached blob: its size, and its bytes unless it was larger than the caller's limit."""

    size: int
    data: bytes | None


class Originals(Protocol):
    def stat(self, key: str) -> OriginalInfo | None:
        """The original's size and version, or None when there is none."""
        ...

    def read(self, key: str, max_bytes: int) -> bytes | None:
        """At most ``max_bytes + 1`` bytes of it (the caller refuses more), or None."""
        ...


class Derivatives(Protocol):
    def get(self, name: str, max_bytes: int | None = None) -> Fetched | None:
        """The blob, or None; its bytes are not read when larger than ``max_bytes``."""
        ...

    def put(self, name: str, data: bytes, media_type: str) -> None:
        """Store atomically: a reader sees the whole blob or none."""
        ...

    def presigned_url(self, name: str, expires_in: int) -> str | None:
        """A URL a client may fetch the blob from directly, or None if there is no such URL."""
        ...
