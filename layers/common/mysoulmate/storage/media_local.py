"""The media stores on a local directory (the laptop and single-node containers): originals
under ``MEDIA_ORIGINALS_DIR`` (default ``DATA_DIR/media``), derivatives and source records
under ``DATA_DIR/media-cache``.

Keys are checked by the domain (`media.rules.check_key`) and checked again here: the
resolved path must lie under the root, so neither ``..`` nor a symbolic link pointing
elsewhere can make us read outside it. Writes go to a temporary file renamed into place.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from mysoulmate.media.ports import Fetched, OriginalInfo
from mysoulmate.media.rules import check_key

_NAME = re.compile(r"[a-z0-9]+(/[a-z0-9]+)*(-[0-9a-f]+)?\.[a-z]+")


def _inside(root: Path, relative: str) -> Path | None:
    """``root/relative`` resolved, or None when it would leave ``root``."""
    path = (root / relative).resolve()
    return path if path.is_relative_to(root) else None


class LocalOriginals:
    """Originals as files under ``root`` (a missing root simply holds no originals)."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def _path(self, key: str) -> Path | None:
        return _inside(self.root, check_key(key))

    def stat(self, key: str) -> OriginalInfo | None:
        path = self._path(key)
        if path is None:
            return None
        try:
            status = path.stat()
        except OSError:  # missing, or a directory entry we cannot read
            return None
        if not path.is_file():
            return None
        return OriginalInfo(
            status.st_size, f"{status.st_size}:{status.st_mtime_ns}:{status.st_ino}"
        )

    def read(self, key: str, max_bytes: int) -> bytes | None:
        path = self._path(key)
        if path is None:
            return None
        try:
            with path.open("rb") as file:
                return file.read(max_bytes + 1)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None


class LocalDerivatives:
    """Cached blobs as files under ``root``; no presigned URLs (the bytes are sent inline)."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def path(self, name: str) -> Path:
        # Names are the domain's (hex digests, `sources/…`), never a client's: checked by
        # shape, without resolving symbolic links on every cache hit.
        if not _NAME.fullmatch(name):
            raise ValueError(f"not a cache name: {name!r}")
        return self.root / name

    def get(self, name: str, max_bytes: int | None = None) -> Fetched | None:
        path = self.path(name)
        try:
            with path.open("rb") as file:
                size = os.fstat(file.fileno()).st_size
                if max_bytes is not None and size > max_bytes:
                    return Fetched(size, None)
                return Fetched(size, file.read())
        except FileNotFoundError:
            return None

    def put(self, name: str, data: bytes, media_type: str) -> None:
        path = self.path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(data)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def presigned_url(self, name: str, expires_in: int) -> str | None:
        return None
