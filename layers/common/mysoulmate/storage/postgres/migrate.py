"""Bring a PostgreSQL database to this release's schema (Alembic, configured in code).

Called by `mysoulmate migrate` and by the deploy's custom resource; the services themselves
never migrate, they only refuse to start on an older schema (postgres_connection).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from mysoulmate.storage.postgres.connection import MIGRATION_CONNECT_TIMEOUT_SECONDS, revision_of

if TYPE_CHECKING:
    from alembic.config import Config

SCRIPT_LOCATION = Path(__file__).with_name("migrations")


def alembic_config() -> Config:
    """The Alembic configuration without an alembic.ini: scripts live in this package."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(SCRIPT_LOCATION))
    return config


def head_revision() -> str:
    """The head Alembic computes from the revision files (tests compare HEAD_REVISION)."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError(f"no migrations found under {SCRIPT_LOCATION}")
    return head


def current_revision(conninfo: str) -> str | None:
    """The revision the database is at, None if it was never migrated."""
    import psycopg

    with psycopg.connect(
        conninfo, autocommit=True, connect_timeout=MIGRATION_CONNECT_TIMEOUT_SECONDS
    ) as conn:
        return revision_of(conn)


def migrate(conninfo: str) -> str:
    """Upgrade the database to head in one transaction and return the revision now applied.

    Idempotent: at head already, it changes nothing. Concurrent runs serialize on an
    advisory lock taken in env.py.
    """
    import psycopg
    from alembic import command
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    def connect() -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(conninfo, connect_timeout=MIGRATION_CONNECT_TIMEOUT_SECONDS)

    # The URL names only the dialect: the conninfo (key=value or URL, maybe with a password)
    # goes to psycopg unchanged, so nothing has to be re-quoted into a SQLAlchemy URL.
    engine = create_engine("postgresql+psycopg://", creator=connect, poolclass=NullPool)
    try:
        config = alembic_config()
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    finally:
        engine.dispose()
    applied = current_revision(conninfo)
    if applied is None:
        raise RuntimeError("migration finished but the database reports no revision")
    return applied
