"""`mysoulmate export | erase`: a person's GDPR rights, from the operator's shell.

The same domain functions as `GET /api/v1/analytics/user/{userId}/export` and `DELETE
/api/v1/analytics/user/{userId}`, with the same audit entries; their actor is ``cli``.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import typer

from mysoulmate.core.settings import get_settings
from mysoulmate.runtime.cli.output import CliError, choice, confirm, progress, say

if TYPE_CHECKING:
    from mysoulmate.analytics.models import EventPage
    from mysoulmate.analytics.ports import EventStore

commands = typer.Typer()
ACTOR = "cli"


class _CountingStore:
    """The store, telling ``seen`` how many events each page of `list_events` held (the
    export's progress) and answering everything else itself."""

    def __init__(self, store: EventStore, seen: Callable[[int], None]) -> None:
        self._store = store
        self._seen = seen

    def list_events(self, *args: Any, **kwargs: Any) -> EventPage:
        page = self._store.list_events(*args, **kwargs)
        self._seen(len(page.events))
        return page

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


@commands.command(
    epilog=(
        "Examples:\n\n"
        "mysoulmate export --user alice --format json > alice.json\n\n"
        "mysoulmate export --user alice --format csv --out alice.csv"
    )
)
def export(
    user: str = typer.Option(..., "--user", help="The user id whose data to export."),
    fmt: str = typer.Option(
        "json", "--format", parser=choice("json", "csv"), metavar="json|csv", help="File format."
    ),
    out: Path | None = typer.Option(
        None, "--out", dir_okay=False, help="Write to this file (default: stdout)."
    ),
) -> None:
    """Export everything stored about a user (GDPR art. 15/20): profile and every event.

    Audited (actor "cli") before the first byte is written. JSON is one document; CSV has
    one row per event after a 'profile' row. A file is written whole or not at all.
    """
    from mysoulmate.analytics import gdpr
    from mysoulmate.runtime.backends import event_store

    get_settings()
    with progress(transient=True) as bar:
        task = bar.add_task(f"exporting {user}", total=None)
        exported = [0]

        def seen(events: int) -> None:
            exported[0] += events
            bar.update(task, completed=exported[0])

        store = cast("EventStore", _CountingStore(event_store(), seen))
        gdpr.record(store, ACTOR, "export", user, format=fmt)
        chunks = gdpr.export_json(store, user) if fmt == "json" else gdpr.export_csv(store, user)
        if out is None:
            for chunk in chunks:
                sys.stdout.write(chunk)
            sys.stdout.flush()
        else:
            _write_whole(out, chunks)
    say(f"exported {exported[0]} events of {user}" + (f" to {out}" if out else ""))


def _write_whole(path: Path, chunks: Iterator[str]) -> None:
    """Into a temporary file beside ``path``, renamed over it once complete (0600: it is
    personal data)."""
    directory = path.parent if str(path.parent) else Path()
    if not directory.is_dir():
        raise CliError(f"cannot write {path}: {directory} is not a directory")
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            for chunk in chunks:
                handle.write(chunk)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


@commands.command(
    epilog="Examples:\n\nmysoulmate erase --user alice\n\nmysoulmate erase --user alice --yes"
)
def erase(
    user: str = typer.Option(..., "--user", help="The user id to erase."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Erase a user's events and profile (GDPR art. 17); it cannot be undone.

    Asks first unless --yes. Anonymous counts stay; the erasure sticks (events of the user
    received before it are never stored afterwards); configured providers (Mixpanel) are
    asked to erase too. Audited (actor "cli").
    """
    from mysoulmate.analytics import gdpr
    from mysoulmate.runtime.backends import erasure_hooks, event_store

    get_settings()
    if not yes and not confirm(f"Erase every event and the profile of user {user!r}?"):
        raise CliError(f"nothing erased: {user!r} was not confirmed")
    report = gdpr.erase(event_store(), ACTOR, user, erasure_hooks())
    profile = "and the profile" if report.profileDeleted else "(no profile)"
    print(f"erased {user}: {report.eventsDeleted} events {profile}; audit entry {report.auditId}")
