"""Where the PostgreSQL (Aurora) database is, and whether its schema is the one we need.

Kept free of SQLAlchemy and Alembic: the store checks the schema revision on every cold
start with one plain query, and importing the migration tooling would cost each Lambda
tens of milliseconds it never uses. `storage.postgres.migrate` is the only module that needs them.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from mysoulmate.analytics.ports import StorageUnavailableError
from mysoulmate.storage.aws import aws_client

if TYPE_CHECKING:
    import psycopg

    from mysoulmate.core.settings import Settings

# Every migration this release ships, oldest first; the last one is the head that
# `mysoulmate migrate` applies. A test checks it against Alembic's own computation.
REVISIONS = (
    "0001", "0002", "0003", "0004", "0005", "0006", "0007", "0008", "0009", "0010", "0011",
    "0012", "0013", "0014",
)  # fmt: skip
HEAD_REVISION = REVISIONS[-1]
# Requests fail fast while the database is down (the storage bulkhead then answers 503 with
# Retry-After): libpq's connect timeout, and the longest wait for a pooled connection.
CONNECT_TIMEOUT_SECONDS = 2
POOL_WAIT_SECONDS = 2.0
# Start-up and migrations may wait longer: a proxy or a fresh instance can be slow to accept.
STARTUP_WAIT_SECONDS = 10.0
MIGRATION_CONNECT_TIMEOUT_SECONDS = 5


class DatabaseNotMigratedError(StorageUnavailableError):
    """The database's schema is older (or other) than this release's: refuse to start."""


def conninfo(settings: Settings) -> str:
    """DATABASE_URL as given; else the host, port and name from settings with the username
    and password of the Secrets Manager secret DATABASE_SECRET_ARN, over TLS."""
    if settings.database_url:
        return settings.database_url
    from psycopg.conninfo import make_conninfo

    response = aws_client("secretsmanager").get_secret_value(SecretId=settings.database_secret_arn)
    try:
        secret = json.loads(response["SecretString"])
        username, password = secret["username"], secret["password"]
    except (KeyError, TypeError, ValueError):
        # Never echo the secret's content: only say which shape was expected.
        raise StorageUnavailableError(
            f"secret {settings.database_secret_arn} is not a JSON object with "
            "'username' and 'password' (the shape RDS generates)"
        ) from None
    return make_conninfo(
        host=settings.database_host,
        port=str(settings.database_port),
        dbname=settings.database_name,
        user=str(username),
        password=str(password),
        sslmode="require",
        connect_timeout=str(CONNECT_TIMEOUT_SECONDS),
        application_name="mysoulmate",
    )


def describe(info: str) -> tuple[str, str]:
    """(database name, host) of a conninfo, for messages: never the password."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        params: dict[str, Any] = conninfo_to_dict(info)
    except Exception:  # noqa: BLE001 - a malformed conninfo must not leak into a message
        return ("?", "?")
    return (
        str(params.get("dbname") or params.get("user") or "?"),
        str(params.get("host") or "localhost"),
    )


def safe_error(exc: BaseException) -> str:
    """A driver error as text for logs and messages. libpq messages name host, port and
    user but never the password; this keeps just the first line of them."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def revision_of(conn: psycopg.Connection[Any]) -> str | None:
    """The Alembic revision the database is at; None for a database never migrated."""
    row = conn.execute("SELECT to_regclass('alembic_version') IS NOT NULL").fetchone()
    if not row or not row[0]:
        return None
    found = conn.execute("SELECT version_num FROM alembic_version").fetchall()
    return str(found[0][0]) if found else None


def require_head(conn: psycopg.Connection[Any], info: str) -> None:
    """Raise DatabaseNotMigratedError unless the database is at this release's head."""
    current = revision_of(conn)
    if current == HEAD_REVISION:
        return
    database, host = describe(info)
    if current is None or current in REVISIONS:
        raise DatabaseNotMigratedError(
            f"PostgreSQL database {database} on {host} is not migrated (at revision "
            f"{current or 'none'}, this release needs {HEAD_REVISION}): run `mysoulmate migrate`"
        )
    raise DatabaseNotMigratedError(
        f"PostgreSQL database {database} on {host} is at revision {current}, which this "
        f"release does not know (it needs {HEAD_REVISION}): the database was migrated by a "
        "newer release; deploy that release or restore a matching schema"
    )
