"""`mysoulmate writekey create | list | revoke`: write keys per source, on the configured store.

The key is printed once, by `create`; afterwards only its hint (first characters) is ever
shown, and nothing here logs it.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, cast

import typer

from mysoulmate.analytics.write_keys import SOURCE_KINDS, SourceKind
from mysoulmate.core.settings import get_settings
from mysoulmate.runtime.cli.output import CliError, choice, say, usage_error

if TYPE_CHECKING:
    from mysoulmate.analytics.ports import Source

commands = typer.Typer()
writekey = typer.Typer(help="Write keys of Segment-compatible sources.", no_args_is_help=True)
commands.add_typer(writekey, name="writekey")

_log = logging.getLogger("mysoulmate.writekey")
_HEADERS = ("ID", "NAME", "KIND", "KEY", "CREATED", "REVOKED")


def _when(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ") if moment else "-"


@writekey.command(
    epilog=(
        "Examples:\n\n"
        "mysoulmate writekey create --name ios --kind client\n\n"
        "mysoulmate writekey create --name billing-backend --kind server"
    )
)
def create(
    name: str = typer.Option(..., "--name", help="e.g. ios, web, billing-backend."),
    kind: str = typer.Option(
        ...,
        "--kind",
        parser=choice(*SOURCE_KINDS),
        metavar="|".join(SOURCE_KINDS),
        help="client: ships in apps; server: kept secret.",
    ),
) -> None:
    """Create a source and print its key (this once: only its hash is stored)."""
    from mysoulmate.analytics.ports import StorageUnavailableError
    from mysoulmate.analytics.write_keys import create_source
    from mysoulmate.runtime.backends import source_store

    get_settings()
    try:
        source, key = create_source(source_store(), name, cast(SourceKind, kind), datetime.now(UTC))
    except ValueError as exc:
        raise usage_error(str(exc)) from None
    except StorageUnavailableError as exc:
        raise CliError(f"cannot store the source: {exc}") from exc
    # The audit trail names the source and the key's hint, never the key.
    _log.info(
        "write key created",
        extra={"sourceId": source.id, "kind": source.kind, "keyHint": source.key_hint},
    )
    print(f"source  {source.id}\nname    {source.name}\nkind    {source.kind}\nkey     {key}")
    say("warning: this is the only time the key is shown (only its hash is stored); copy it now.")


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


@writekey.command("list", epilog="Example:\n\nmysoulmate writekey list")
def list_() -> None:
    """List sources (key hints only, never keys)."""
    from mysoulmate.analytics.ports import StorageUnavailableError
    from mysoulmate.runtime.backends import source_store

    get_settings()
    try:
        sources = source_store().list_sources()
    except StorageUnavailableError as exc:
        raise CliError(f"cannot list sources: {exc}") from exc
    print("\n".join(_table(sources)) if sources else "no sources")


@writekey.command(epilog="Example:\n\nmysoulmate writekey revoke 3f2b8c1e-…")
def revoke(
    source_id: str = typer.Argument(..., metavar="SOURCE_ID", help="The ID of `writekey list`."),
) -> None:
    """Revoke a source's key (it cannot be undone)."""
    from mysoulmate.analytics.ports import StorageUnavailableError
    from mysoulmate.analytics.write_keys import CACHE_SECONDS
    from mysoulmate.runtime.backends import source_store

    get_settings()
    now = datetime.now(UTC)
    try:
        source = source_store().revoke_source(source_id, now)
    except StorageUnavailableError as exc:
        raise CliError(f"cannot revoke: {exc}") from exc
    if source is None:
        raise CliError(f"no source with id {source_id!r} (see `mysoulmate writekey list`)")
    if source.revoked_at != now:
        print(
            f"source {source.id} ({source.name}) was already revoked at {_when(source.revoked_at)}"
        )
        return
    _log.info("write key revoked", extra={"sourceId": source.id})
    print(
        f"revoked source {source.id} ({source.name}); running services stop accepting its key "
        f"within {CACHE_SECONDS:g} s"
    )
