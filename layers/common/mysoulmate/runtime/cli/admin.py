"""`mysoulmate token | migrate | seed | openapi | i18n check`: setting a deployment up and
looking at it."""

from __future__ import annotations

import re
import sys
from typing import TYPE_CHECKING

import typer

from mysoulmate.core.settings import get_settings
from mysoulmate.runtime.cli.output import CliError, positive, progress, usage_error

if TYPE_CHECKING:
    from mysoulmate.analytics.models import QueuedMessage
    from mysoulmate.analytics.ports import EventStore

commands = typer.Typer()
i18n = typer.Typer(help="Translation catalog tools.", no_args_is_help=True)
commands.add_typer(i18n, name="i18n")

_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_TOKEN_TTL_SECONDS = 30 * 86400
SEED_BATCH = 1000


def parse_duration(text: str) -> int:
    """'90s', '15m', '1h', '7d' → seconds."""
    match = _DURATION.match(str(text).strip())
    if not match:
        raise typer.BadParameter(f"invalid duration {text!r}: use e.g. 30m, 1h or 7d")
    seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if not 0 < seconds <= MAX_TOKEN_TTL_SECONDS:
        raise typer.BadParameter("duration must be between 1s and 30d")
    return seconds


@commands.command(
    epilog=(
        "Examples:\n\n"
        "TOKEN=$(mysoulmate token --user alice)\n\n"
        "mysoulmate token --user ops --admin --ttl 8h"
    )
)
def token(
    user: str = typer.Option(..., "--user", help="The token's subject (user id)."),
    admin: bool = typer.Option(False, "--admin", help="Grant the admin role."),
    server: bool = typer.Option(False, "--server", help="Grant the server role."),
    ttl: int = typer.Option(
        "1h", "--ttl", parser=parse_duration, metavar="DURATION", help="Lifetime, 1s to 30d."
    ),
) -> None:
    """Print a bearer token (JWT) signed with the deployment's JWT_SECRET."""
    from mysoulmate.api.auth import issue_token

    settings = get_settings()
    roles = ["user"]
    if admin:
        roles.append(settings.admin_role)
    if server:
        roles.append(settings.server_role)
    print(issue_token(settings, user, roles, ttl))


@commands.command(
    epilog=(
        "Example:\n\n"
        "mysoulmate migrate    # STORAGE_BACKEND=postgres, DATABASE_URL=postgresql://app@db/analytics"
    )
)
def migrate() -> None:
    """Upgrade the PostgreSQL schema to this release (STORAGE_BACKEND=postgres).

    Safe to run repeatedly: a database already at this release is left as it is.
    """
    settings = get_settings()
    if settings.storage_backend != "postgres":
        raise usage_error("migrate needs STORAGE_BACKEND=postgres")
    import psycopg
    from botocore.exceptions import BotoCoreError, ClientError
    from sqlalchemy.exc import SQLAlchemyError

    from mysoulmate.analytics.ports import StorageUnavailableError
    from mysoulmate.storage.postgres.connection import conninfo, describe, safe_error
    from mysoulmate.storage.postgres.migrate import current_revision
    from mysoulmate.storage.postgres.migrate import migrate as upgrade

    try:
        info = conninfo(settings)
        database = describe(info)[0]
        before = current_revision(info)
        applied = upgrade(info)
    except (
        psycopg.Error,
        SQLAlchemyError,
        StorageUnavailableError,
        BotoCoreError,
        ClientError,
    ) as exc:
        # libpq, Secrets Manager and our own messages name host and user, never the password.
        cause = getattr(exc, "orig", None) or exc
        raise CliError(f"cannot migrate PostgreSQL: {safe_error(cause)}") from exc
    print(f"already at {applied}" if before == applied else f"migrated {database} to {applied}")


@commands.command(
    epilog=(
        "Examples:\n\n"
        "mysoulmate seed    # about 10,000 events from 1,000 users over 30 days\n\n"
        "mysoulmate seed --events 20000 --users 2000 --days 90"
    )
)
def seed(
    events: int = typer.Option(
        "10000", "--events", parser=positive, metavar="N", help="About this many events."
    ),
    users: int = typer.Option("1000", "--users", parser=positive, metavar="N", help="Users."),
    days: int = typer.Option(
        "30", "--days", parser=positive, metavar="N", help="Days, ending today (UTC)."
    ),
) -> None:
    """Store demo events through the consumer's write path (idempotent for the same sizes).

    A progress bar on a terminal; the same command again stores nothing new.
    """
    from mysoulmate.analytics.date_range import today_utc
    from mysoulmate.analytics.seed import seed_messages
    from mysoulmate.runtime.backends import event_store

    get_settings()
    store = event_store()
    batch: list[QueuedMessage] = []
    stored = seen = 0
    with progress() as bar:
        task = bar.add_task("seeding", total=events)
        for message in seed_messages(events, users, days, end=today_utc()):
            batch.append(message)
            if len(batch) == SEED_BATCH:
                stored += _store(store, batch)
                seen += len(batch)
                bar.update(task, completed=seen, total=max(events, seen))
                batch.clear()
        if batch:
            stored += _store(store, batch)
            seen += len(batch)
        bar.update(task, completed=seen, total=seen)
    print(f"stored {stored} new events from {users} users over {days} days")


def _store(store: EventStore, batch: list[QueuedMessage]) -> int:
    result = store.insert_events(batch)
    if result.failed:
        reason = next(iter(result.failed.values()))
        raise CliError(f"{len(result.failed)} of {len(batch)} events not stored: {reason}")
    return result.written


@commands.command(
    epilog="Examples:\n\nmysoulmate openapi > docs/openapi.json\n\nmysoulmate openapi --deployment"
)
def openapi(
    deployment: bool = typer.Option(
        False, "--deployment", help="As this deployment serves it: APP_VERSION, servers, contact."
    ),
) -> None:
    """Print the whole API's OpenAPI document (what docs/openapi.json holds)."""
    from mysoulmate.api.openapi import canonical_spec
    from mysoulmate.api.openapi_document import dump, with_deployment

    spec = canonical_spec()
    if deployment:
        spec = with_deployment(spec, get_settings())
    sys.stdout.write(dump(spec))


@i18n.command(
    "check", epilog="Examples:\n\nmysoulmate i18n check\n\nmysoulmate i18n check fr ja --verbose"
)
def i18n_check(
    locales: list[str] | None = typer.Argument(None, help="Default: SUPPORTED_LOCALES."),
    verbose: bool = typer.Option(False, "--verbose", help="List every warning."),
) -> int:
    """Check every catalog against English and CLDR; exit 1 on any error."""
    from mysoulmate.i18n.check import run

    return run(locales or get_settings().supported_locales, verbose=verbose)
