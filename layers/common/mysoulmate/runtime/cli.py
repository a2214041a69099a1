"""`mysoulmate serve | worker | token | migrate | seed | openapi | dlq | i18n | writekey`: the
laptop and container entry points and the operator's tools."""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

from mysoulmate.core.settings import SettingsError, get_settings
from mysoulmate.runtime.writekey_cli import add_writekey_parser

_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_TOKEN_TTL_SECONDS = 30 * 86400


def parse_duration(text: str) -> int:
    """'90s', '15m', '1h', '7d' → seconds."""
    match = _DURATION.match(text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}: use e.g. 30m, 1h or 7d")
    seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if not 0 < seconds <= MAX_TOKEN_TTL_SECONDS:
        raise argparse.ArgumentTypeError("duration must be between 1s and 30d")
    return seconds


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid port {text!r}") from None
    if not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"port {port} is outside 1-65535")
    return port


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from mysoulmate.runtime.http_protocol import GuardedHttpToolsProtocol

    settings = get_settings()
    lock = _lock_local_queue(settings.data_dir) if settings.queue_backend == "local" else None
    if lock == -1:
        return 2
    uvicorn.run(
        "mysoulmate.runtime.server:create_server_app",
        factory=True,
        http=GuardedHttpToolsProtocol,  # header size and read deadlines for slow clients
        host=args.host,
        port=args.port,
        log_level="info",
        access_log=False,
        proxy_headers=True,
    )
    if lock is not None:
        os.close(lock)
    return 0


def _lock_local_queue(data_dir: Path) -> int:
    """The local queue is one process's: hold an exclusive lock beside queue.db while
    serving (released by the kernel however the process ends). Returns the lock's file
    descriptor, or -1 after saying why when another process holds it."""
    import fcntl

    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "queue.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        holder = path.read_text().strip() or "?"
        print(
            f"mysoulmate: another process (pid {holder}) already serves the local queue in "
            f"{data_dir}; QUEUE_BACKEND=local is for one process. Stop it, give this one its "
            "own DATA_DIR, or share a broker between processes (QUEUE_BACKEND=rabbitmq or sqs).",
            file=sys.stderr,
        )
        return -1
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def _worker(_: argparse.Namespace) -> int:
    """Consume the RabbitMQ events queue into storage until SIGTERM or SIGINT."""
    settings = get_settings()
    if settings.queue_backend != "rabbitmq":
        print(
            "mysoulmate: worker needs QUEUE_BACKEND=rabbitmq (`mysoulmate serve` drains the "
            "local queue itself; on AWS the consumer Lambda drains SQS)",
            file=sys.stderr,
        )
        return 2
    from mysoulmate.analytics.ports import StorageUnavailableError
    from mysoulmate.runtime.backends import event_store
    from mysoulmate.runtime.broker_worker import run_worker

    try:
        store = event_store()
    except StorageUnavailableError as exc:
        print(f"mysoulmate: cannot start the worker: {exc}", file=sys.stderr)
        return 2
    return run_worker(settings, store)


def _token(args: argparse.Namespace) -> int:
    from mysoulmate.api.auth import issue_token

    roles = ["user"]
    if args.admin:
        roles.append(get_settings().admin_role)
    if args.server:
        roles.append(get_settings().server_role)
    print(issue_token(get_settings(), args.user, roles, args.ttl))
    return 0


def _migrate(_: argparse.Namespace) -> int:
    """Bring the PostgreSQL database to this release's schema; safe to run repeatedly."""
    settings = get_settings()
    if settings.storage_backend != "postgres":
        print("mysoulmate: migrate needs STORAGE_BACKEND=postgres", file=sys.stderr)
        return 2
    import psycopg
    from botocore.exceptions import BotoCoreError, ClientError
    from sqlalchemy.exc import SQLAlchemyError

    from mysoulmate.analytics.ports import StorageUnavailableError
    from mysoulmate.storage.postgres.connection import conninfo, describe, safe_error
    from mysoulmate.storage.postgres.migrate import current_revision, migrate

    try:
        info = conninfo(settings)
        database = describe(info)[0]
        before = current_revision(info)
        applied = migrate(info)
    except (
        psycopg.Error,
        SQLAlchemyError,
        StorageUnavailableError,
        BotoCoreError,
        ClientError,
    ) as exc:
        # libpq, Secrets Manager and our own messages name host and user, never the password.
        cause = getattr(exc, "orig", None) or exc
        print(f"mysoulmate: cannot migrate PostgreSQL: {safe_error(cause)}", file=sys.stderr)
        return 2
    if before == applied:
        print(f"already at {applied}")
    else:
        print(f"migrated {database} to {applied}")
    return 0


def _seed(args: argparse.Namespace) -> int:
    """Fill the configured store with demo events through the consumer's write path."""
    from mysoulmate.analytics.date_range import today_utc
    from mysoulmate.analytics.models import QueuedMessage
    from mysoulmate.analytics.seed import seed_messages
    from mysoulmate.runtime.backends import event_store

    store = event_store()
    batch: list[QueuedMessage] = []
    stored = 0
    for message in seed_messages(args.events, args.users, args.days, end=today_utc()):
        batch.append(message)
        if len(batch) == 1000:
            stored += store.insert_events(batch).written
            batch.clear()
    if batch:
        stored += store.insert_events(batch).written
    print(f"stored {stored} new events from {args.users} users over {args.days} days")
    return 0


def _dlq_list(args: argparse.Namespace) -> int:
    import json

    from mysoulmate.runtime.dlq import dead_letters

    try:
        rows = dead_letters(get_settings(), args.limit)
    except ValueError as exc:
        print(f"mysoulmate: {exc}", file=sys.stderr)
        return 2
    if args.json:
        for row in rows:
            sent = row.sent_at.isoformat() if row.sent_at else None
            record = {"id": row.id, "sentAt": sent, "receives": row.receives, "reason": row.reason}
            print(json.dumps(record, ensure_ascii=False))
        return 0
    if not rows:
        print("no dead letters")
        return 0
    for row in rows:
        sent = row.sent_at.isoformat(timespec="seconds") if row.sent_at else "?"
        print(f"{row.id}  sent {sent}  received {row.receives}x  {row.reason}")
    print(f"{len(rows)} dead letter(s)")
    return 0


def _openapi(args: argparse.Namespace) -> int:
    """The whole API's OpenAPI document: canonical (what docs/openapi.json holds), or as this
    deployment serves it (`--deployment`: APP_VERSION, servers, contact)."""
    from mysoulmate.api.openapi import canonical_spec
    from mysoulmate.api.openapi_document import dump, with_deployment

    spec = canonical_spec()
    if args.deployment:
        spec = with_deployment(spec, get_settings())
    sys.stdout.write(dump(spec))
    return 0


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _i18n_check(args: argparse.Namespace) -> int:
    from mysoulmate.i18n.check import run

    return run(args.locales or get_settings().supported_locales, verbose=args.verbose)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mysoulmate", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve every endpoint group over HTTP")
    serve.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    serve.add_argument(
        "--port", type=_port, default=_port(os.environ.get("PORT", "3000")), help="env PORT"
    )
    serve.set_defaults(run=_serve)

    worker = commands.add_parser(
        "worker",
        help="consume the RabbitMQ events queue into storage (QUEUE_BACKEND=rabbitmq)",
        description=(
            "Store what the API queued in RabbitMQ: batches of WORKER_BATCH_SIZE, acked once\n"
            "storage has them, redelivered (and dead-lettered after 5 deliveries) when not.\n"
            "Run as many as you like beside any number of `mysoulmate serve`. SIGTERM or\n"
            "SIGINT: stop taking messages, finish and ack the batch in hand, exit 0."
        ),
        epilog=(
            "example:\n"
            "  QUEUE_BACKEND=rabbitmq RABBITMQ_URL=amqp://user:password@rabbitmq:5672/%2F \\\n"
            "  STORAGE_BACKEND=postgres DATABASE_URL=postgresql://user@db/mysoulmate \\\n"
            "  mysoulmate worker"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    worker.set_defaults(run=_worker)

    token = commands.add_parser("token", help="print a bearer token for the local server")
    token.add_argument("--user", required=True, help="the token's subject (user id)")
    token.add_argument("--admin", action="store_true", help="grant the admin role")
    token.add_argument("--server", action="store_true", help="grant the server role")
    token.add_argument("--ttl", type=parse_duration, default=3600, help="lifetime, e.g. 1h")
    token.set_defaults(run=_token)

    migrate = commands.add_parser(
        "migrate", help="upgrade the PostgreSQL schema to this release (STORAGE_BACKEND=postgres)"
    )
    migrate.set_defaults(run=_migrate)

    seed = commands.add_parser("seed", help="store demo events (idempotent for the same sizes)")
    seed.add_argument("--events", type=_positive, default=10_000, help="about this many")
    seed.add_argument("--users", type=_positive, default=1_000)
    seed.add_argument("--days", type=_positive, default=30, help="ending today (UTC)")
    seed.set_defaults(run=_seed)

    openapi = commands.add_parser(
        "openapi", help="print the OpenAPI document (mysoulmate openapi > docs/openapi.json)"
    )
    openapi.add_argument(
        "--deployment", action="store_true", help="with APP_VERSION, servers and contact"
    )
    openapi.set_defaults(run=_openapi)

    dlq = commands.add_parser("dlq", help="messages the consumer gave up on")
    dlq_commands = dlq.add_subparsers(dest="dlq_command", required=True)
    dlq_list = dlq_commands.add_parser(
        "list", help="list dead letters with why each failed (never their payload)"
    )
    dlq_list.add_argument("--limit", type=_positive, default=100)
    dlq_list.add_argument("--json", action="store_true", help="one JSON object per line")
    dlq_list.set_defaults(run=_dlq_list)

    i18n = commands.add_parser("i18n", help="translation catalog tools")
    i18n_commands = i18n.add_subparsers(dest="i18n_command", required=True)
    check = i18n_commands.add_parser(
        "check", help="check every catalog against English and CLDR; exit 1 on any error"
    )
    check.add_argument("locales", nargs="*", help="default: SUPPORTED_LOCALES")
    check.add_argument("--verbose", action="store_true", help="list every warning")
    check.set_defaults(run=_i18n_check)

    add_writekey_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        get_settings()  # validate the environment before doing anything
    except SettingsError as exc:
        print(f"mysoulmate: {exc}", file=sys.stderr)
        return 2
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
