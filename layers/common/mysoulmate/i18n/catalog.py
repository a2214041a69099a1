"""Translation catalogs: one JSON file per locale, loaded lazily and cached per process.

A catalog is nested by namespace; leaves are strings, and a plural is an object keyed by
CLDR plural categories. Lookups use the flattened form (``"chat.messagesUnread"``). In
development (`make run`) a changed file is picked up on the next lookup, without a restart.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LOCALES_DIR = Path(__file__).resolve().parent / "locales"
REFERENCE = "en"  # the source catalog: every other one has its keys
PLURAL_CATEGORIES = frozenset({"zero", "one", "two", "few", "many", "other"})
Entry = str | dict[str, str]  # a string, or a plural: CLDR category -> string


class CatalogError(RuntimeError):
    """A catalog file is missing or is not the shape translations must have."""


@dataclass(frozen=True)
class Catalog:
    locale: str
    tree: dict[str, Any]
    flat: dict[str, Entry]
    raw: bytes
    mtime_ns: int

    @property
    def etag(self) -> str:
        return hashlib.sha256(self.raw).hexdigest()[:32]

    @property
    def namespaces(self) -> list[str]:
        return list(self.tree)


def is_plural(node: object) -> bool:
    return (
        isinstance(node, dict)
        and bool(node)
        and set(node) <= PLURAL_CATEGORIES
        and all(isinstance(v, str) for v in node.values())
    )


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Entry]:
    flat: dict[str, Entry] = {}
    for key, node in tree.items():
        path = f"{prefix}{key}"
        if isinstance(node, str) or is_plural(node):
            flat[path] = node
        elif isinstance(node, dict):
            flat.update(flatten(node, path + "."))
        else:
            raise CatalogError(f"{path}: expected a string, a plural object or a namespace")
    return flat


class CatalogStore:
    """Loads each locale on first use; with ``reload`` re-reads a file whose mtime moved."""

    def __init__(self, directory: Path = LOCALES_DIR, *, reload: bool = False) -> None:
        self._dir = directory
        self._reload = reload
        self._cache: dict[str, Catalog] = {}
        self._missing: set[str] = set()  # fallbacks (pt-BR → pt) ask for these every time
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def path(self, locale: str) -> Path:
        return self._dir / f"{locale}.json"

    def available(self) -> list[str]:
        return sorted(p.stem for p in self._dir.glob("*.json"))

    def get(self, locale: str) -> Catalog:
        cached = self._cache.get(locale)
        if cached is not None and not (self._reload and self._mtime(locale) != cached.mtime_ns):
            self.hits += 1
            return cached
        if locale in self._missing and not self._reload:
            raise CatalogError(f"no catalog for locale {locale!r}")
        with self._lock:
            self.misses += 1
            try:
                catalog = self._load(locale)
            except CatalogError:
                if not self.path(locale).exists():
                    self._missing.add(locale)
                raise
            self._cache[locale] = catalog
            return catalog

    def _mtime(self, locale: str) -> int:
        try:
            return os.stat(self.path(locale)).st_mtime_ns
        except OSError:
            return -1

    def _load(self, locale: str) -> Catalog:
        path = self.path(locale)
        try:
            raw = path.read_bytes()
            mtime = os.stat(path).st_mtime_ns
        except OSError as exc:
            raise CatalogError(f"no catalog for locale {locale!r} at {path}") from exc
        try:
            tree = json.loads(raw)
        except ValueError as exc:
            raise CatalogError(f"{path.name} is not valid JSON: {exc}") from exc
        if not isinstance(tree, dict):
            raise CatalogError(f"{path.name}: the top level must be an object of namespaces")
        return Catalog(locale=locale, tree=tree, flat=flatten(tree), raw=raw, mtime_ns=mtime)
