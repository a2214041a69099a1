"""`mysoulmate writekey create | list | revoke`: write keys per source, on the configured store.

The key is printed once, by `create`; afterwards only its hint (first characters) is ever
shown, and nothing here logs it.
"""

from __future__ import annotations

import argparse
import logging
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mysoulmate.analytics.ports import Source

_log = logging.getLogger("mysoulmate.writekey")
_HEADERS = ("ID", "NAME", "KIND", "KEY", "CREATED", "REVOKED")


def _when(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ") if moment else "-"


def _fail(message: str, code: int) -> int:
    print(f"mysoulmate: {message}", file=sys.stderr)
    return code


def _create(args: argparse.Namespace) -> int:
    from mysoulmate.analytics.ports import StorageUnavailableError
    from mysoulmate.analytics.write_keys import create_source
    from mysoulmate.runtime.backends import source_store

    try:
        source, key = create_source(source_store(), args.name, args.kind, datetime.now(UTC))
    except ValueError as exc:
        return _fail(str(exc), 2)
    except StorageUnavailableError as exc:
        return _fail(f"cannot store the source: {exc}", 2)
    # The audit trail names the source and the key's hint, never the key.
    _log.info(
        "write key created",
        extra={"sourceId": source.id, "kind": source.kind, "keyHint": source.key_hint},
    )
    print(f"source  {source.id}\nname    {source.name}\nkind    {source.kind}\nkey     {key}")
    print(
        "warning: this is the only time the key is shown (only its hash is stored); copy it now.",
        file=sys.stderr,
    )
    return 0


def _table(sources: list[Source]) -> list[str]:
    """Aligned rows, one per source, under a header."""
    rows = [_HEADERS] + [
        (s.id, s.name, s.kind, f"{s.key_hint}…", _when(s.created_at), _when(s.revoked_at))
        for s in sources
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_HEADERS))]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def _list(_: argparse.Namespace) -> int:
    from mysoulmate.analytics.ports import StorageUnavailableError
    from mysoulmate.runtime.backends import source_store

    try:
        sources = source_store().list_sources()
    except StorageUnavailableError as exc:
        return _fail(f"cannot list sources: {exc}", 2)
    if not sources:
        print("no sources")
        return 0
    print("\n".join(_table(sources)))
    return 0


def _revoke(args: argparse.Namespace) -> int:
    from mysoulmate.analytics.ports import StorageUnavailableError
    from mysoulmate.analytics.write_keys import CACHE_SECONDS
    from mysoulmate.runtime.backends import source_store

    now = datetime.now(UTC)
    try:
        source = source_store().revoke_source(args.source_id, now)
    except StorageUnavailableError as exc:
        return _fail(f"cannot revoke: {exc}", 2)
    if source is None:
        return _fail(f"no source with id {args.source_id!r} (see `mysoulmate writekey list`)", 1)
    if source.revoked_at != now:
        print(
            f"source {source.id} ({source.name}) was already revoked at {_when(source.revoked_at)}"
        )
        return 0
    _log.info("write key revoked", extra={"sourceId": source.id})
    print(
        f"revoked source {source.id} ({source.name}); running services stop accepting its key "
        f"within {CACHE_SECONDS:g} s"
    )
    return 0


def add_writekey_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `writekey` and its subcommands on the top-level parser's subcommands."""
    from mysoulmate.analytics.write_keys import SOURCE_KINDS

    writekey = commands.add_parser("writekey", help="write keys of Segment-compatible sources")
    actions = writekey.add_subparsers(dest="writekey_command", required=True)
    create = actions.add_parser("create", help="create a source and print its key (once)")
    create.add_argument("--name", required=True, help="e.g. ios, web, billing-backend")
    create.add_argument(
        "--kind", required=True, choices=SOURCE_KINDS, help="client: ships in apps; server: secret"
    )
    create.set_defaults(run=_create)
    listing = actions.add_parser("list", help="list sources (key hints only, never keys)")
    listing.set_defaults(run=_list)
    revoke = actions.add_parser("revoke", help="revoke a source's key (it cannot be undone)")
    revoke.add_argument("source_id", help="the ID column of `writekey list`")
    revoke.set_defaults(run=_revoke)
