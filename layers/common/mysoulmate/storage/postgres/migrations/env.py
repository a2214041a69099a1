"""Alembic environment: run migrations on the connection `storage.postgres.migrate` hands in.

There is no alembic.ini and no SQLAlchemy metadata: revisions are written by hand in SQL, so
the schema says exactly which indexes and collations the queries rely on.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

# One migration at a time even when a deploy's custom resource and an operator's
# `mysoulmate migrate` run together: the second waits, then finds nothing to do.
MIGRATION_LOCK_KEY = 0x6D79736F756C  # "mysoul"


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run migrations through mysoulmate.storage.postgres.migrate.migrate")
    connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
    context.configure(connection=connection, transaction_per_migration=False)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise RuntimeError("offline (--sql) migrations are not supported")
run_migrations_online()
