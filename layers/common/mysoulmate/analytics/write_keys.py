"""Write keys: how Segment-compatible SDKs authenticate, one key per source.

A key is 32 random URL-safe characters after a ``wk_`` prefix. Only its SHA-256 is stored:
the key has 190 bits of entropy, so a slow password hash would buy nothing. The key itself
is shown once, when it is created, and is never logged.

`WriteKeyCache` keeps what a lookup found (a source, or that there is none) for at most
`CACHE_SECONDS`, so a warm process checks a known key without a storage call and a revoked
key stops working everywhere within that time.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime
from typing import Literal

from mysoulmate.analytics.ports import Source, SourceStore

SourceKind = Literal["client", "server"]
SOURCE_KINDS: tuple[SourceKind, ...] = ("client", "server")
KEY_PREFIX = "wk_"
CACHE_SECONDS = 30.0  # half the promised 60 s: a revocation is seen well within it
CACHE_ENTRIES = 4096  # unknown keys are cached too, so a flood of bad keys stays bounded
MAX_NAME_LENGTH = 100


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(24)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_source(
    name: str, kind: SourceKind, created_at: datetime, key: str | None = None
) -> tuple[Source, str]:
    """A new source and its key (shown to the caller once, stored only as a hash)."""
    key = key or generate_key()
    source = Source(
        id=str(uuid.uuid4()),
        name=name,
        kind=kind,
        key_hint=key[: len(KEY_PREFIX) + 4],
        created_at=created_at,
    )
    return source, key


def create_source(
    store: SourceStore, name: str, kind: SourceKind, created_at: datetime
) -> tuple[Source, str]:
    """Create and store a source; returns it with its key."""
    if kind not in SOURCE_KINDS:
        raise ValueError(f"kind must be one of {', '.join(SOURCE_KINDS)}, not {kind!r}")
    name = name.strip()
    if not name or len(name) > MAX_NAME_LENGTH:
        raise ValueError(f"name must be 1 to {MAX_NAME_LENGTH} characters")
    source, key = new_source(name, kind, created_at)
    store.create_source(source, hash_key(key))
    return source, key


class WriteKeyCache:
    """Key hash → the source found (or None), each entry kept `CACHE_SECONDS` at most."""

    def __init__(
        self,
        ttl_seconds: float = CACHE_SECONDS,
        max_entries: int = CACHE_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl_seconds
        self._max = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, Source | None]] = OrderedDict()
        self._lock = threading.Lock()

    def cached(self, key: str) -> tuple[bool, Source | None]:
        """(True, what a lookup found) while it is fresh; (False, None) otherwise. Cheap:
        callers on the event loop check here before sending `lookup` to a thread."""
        digest = hash_key(key)
        with self._lock:
            cached = self._entries.get(digest)
            if cached is not None and cached[0] > self._clock():
                self._entries.move_to_end(digest)
                return True, cached[1]
        return False, None

    def lookup(self, store: SourceStore, key: str) -> Source | None:
        """The active source of ``key``; None when the key is unknown or revoked."""
        hit, source = self.cached(key)
        if hit:
            return source
        digest = hash_key(key)
        now = self._clock()
        found = store.find_source(digest)
        active = found if found is not None and found.revoked_at is None else None
        with self._lock:
            self._entries[digest] = (now + self._ttl, active)
            self._entries.move_to_end(digest)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)
        return active

    def forget(self) -> None:
        """Drop every entry (this process revoked a key, or tests switch stores)."""
        with self._lock:
            self._entries.clear()


WRITE_KEYS = WriteKeyCache()
