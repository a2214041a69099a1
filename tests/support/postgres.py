"""PostgreSQL helpers for any test package: the test server's conninfo, a throwaway database,
emptying the data tables, and moving a database to a given migration.

The fixtures built on them (`postgres_database`, a migrated database per session, and
`postgres_store`, a clean store per test) are in tests/conftest.py.
The server is the CI machine's PostgreSQL at 127.0.0.1:5432 (user postgres, trust auth);
tests skip without it, and fail under CI=true.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from tests.support.helpers import require_service

SERVER = "host=127.0.0.1 port=5432 user=postgres connect_timeout=3"
ADMIN_CONNINFO = f"{SERVER} dbname=test"
DATA_TABLES = (
    "events",
    "forward_ledger",
    "profiles",
    "user_ordinals",
    "daily_counts",
    "daily_revenue",
    "daily_users",
    "daily_user_sets",
    "activity_sets",
    "user_day_counts",
    "user_sessions",
    "first_seen",
    "first_seen_sets",
    "audit_log",
    "erasures",
    "sources",
    "identity_links",
    "session_marks",
    "perf_counters",
    "perf_ledger",
)


def database_conninfo(name: str) -> str:
    return f"{SERVER} dbname={name}"


def require_postgres() -> None:
    """Skip (locally) or fail (CI=true) unless the test server answers."""
    import psycopg

    try:
        with psycopg.connect(ADMIN_CONNINFO, autocommit=True) as conn:
            conn.execute("SELECT 1")
    except psycopg.OperationalError as exc:
        require_service(f"PostgreSQL at 127.0.0.1:5432 is not reachable: {exc}")


@contextmanager
def scratch_database() -> Iterator[str]:
    """A new, empty (unmigrated) database named mysoulmate_test_<hex>; dropped afterwards
    even if connections to it are still open. Yields its conninfo."""
    import psycopg

    require_postgres()
    name = f"mysoulmate_test_{secrets.token_hex(6)}"
    with psycopg.connect(ADMIN_CONNINFO, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield database_conninfo(name)
    finally:
        with psycopg.connect(ADMIN_CONNINFO, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def truncate_all(conninfo: str) -> None:
    """Empty every data table (not alembic_version) and restart the ordinal sequence."""
    import psycopg

    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {', '.join(DATA_TABLES)} RESTART IDENTITY")


def alembic(info: str, action: str, revision: str) -> None:
    """`alembic <action> <revision>` (upgrade, downgrade) on the database ``info``."""
    import psycopg
    from alembic import command
    from mysoulmate.storage.postgres.migrate import alembic_config
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    engine = create_engine(
        "postgresql+psycopg://", creator=lambda: psycopg.connect(info), poolclass=NullPool
    )
    try:
        config = alembic_config()
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            getattr(command, action)(config, revision)
    finally:
        engine.dispose()


def insert_from_both_ends(store: Any, messages: Sequence[Any], batch: int) -> None:
    """Two consumers (threads) store the same messages through ``store``, one in order and one
    reversed, ``batch`` at a time: every batch stored, nothing raised, or the test fails."""
    errors: list[BaseException] = []

    def consume_in(order: Sequence[Any]) -> None:
        try:
            for start in range(0, len(order), batch):
                assert not store.insert_events(order[start : start + batch]).failed
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    threads = [
        threading.Thread(target=consume_in, args=(messages,)),
        threading.Thread(target=consume_in, args=(messages[::-1],)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
