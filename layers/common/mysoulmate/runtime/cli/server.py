"""`mysoulmate serve` and `mysoulmate worker`: the long-running processes.

Both log through `observability.process_logs`: one line per request (the middleware's) or
per consumed batch, readable on a terminal and JSON otherwise, at ``LOG_LEVEL``. uvicorn
gets no logging configuration of its own (``log_config=None``): its few lines (started,
shutting down, errors) go through the same handler, and its access log stays off.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import typer

from mysoulmate.core.settings import get_settings
from mysoulmate.runtime.cli.output import CliError, usage_error

commands = typer.Typer()

_SERVE_EXAMPLES = (
    "Examples:\n\n"
    "mysoulmate serve    # http://127.0.0.1:3000, Swagger UI at /api-docs\n\n"
    "PORT=8080 mysoulmate serve --host 0.0.0.0"
)
_WORKER_EXAMPLES = (
    "Example:\n\n"
    "mysoulmate worker    # with QUEUE_BACKEND=rabbitmq, RABBITMQ_URL, STORAGE_BACKEND, …"
)


@commands.command(epilog=_SERVE_EXAMPLES)
def serve(
    host: str = typer.Option("127.0.0.1", envvar="HOST", help="Interface to listen on."),
    port: int = typer.Option(3000, envvar="PORT", min=1, max=65535, help="Port to listen on."),
) -> None:
    """Serve every endpoint group over HTTP (uvicorn, one process).

    With QUEUE_BACKEND=local it also drains the local queue in-process; only one process may
    serve one DATA_DIR's local queue (a second one exits 2).
    """
    import uvicorn

    from mysoulmate.observability.process_logs import configure_process_logs
    from mysoulmate.runtime.http_protocol import GuardedHttpToolsProtocol

    settings = get_settings()
    lock = _lock_local_queue(settings.data_dir) if settings.queue_backend == "local" else None
    configure_process_logs(settings.log_level, settings.log_format)
    _uvicorn_logs_through_ours(settings.log_level)
    try:
        uvicorn.run(
            "mysoulmate.runtime.server:create_server_app",
            factory=True,
            http=GuardedHttpToolsProtocol,  # header size and read deadlines for slow clients
            host=host,
            port=port,
            log_config=None,  # keep our handler and formatter
            log_level=settings.log_level.lower(),
            access_log=False,  # the middleware writes one line per request
            proxy_headers=True,
        )
    finally:
        if lock is not None:
            os.close(lock)


def _uvicorn_logs_through_ours(level: str) -> None:
    """uvicorn's own logger (``uvicorn.error`` and friends) through the handler
    `configure_process_logs` set up for the package, in the same form."""
    from mysoulmate.observability.powertools import PACKAGE_LOGGER

    uvicorn_logger = logging.getLogger("uvicorn")
    for handler in logging.getLogger(PACKAGE_LOGGER).handlers:
        if handler not in uvicorn_logger.handlers:
            uvicorn_logger.addHandler(handler)
    uvicorn_logger.setLevel(level)
    uvicorn_logger.propagate = False


def _lock_local_queue(data_dir: Path) -> int:
    """The local queue is one process's: hold an exclusive lock beside queue.db while
    serving (released by the kernel however the process ends). Returns the lock's file
    descriptor; exits 2 saying why when another process holds it."""
    import fcntl

    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "queue.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        holder = path.read_text().strip() or "?"
        raise usage_error(
            f"another process (pid {holder}) already serves the local queue in "
            f"{data_dir}; QUEUE_BACKEND=local is for one process. Stop it, give this one its "
            "own DATA_DIR, or share a broker between processes (QUEUE_BACKEND=rabbitmq or sqs)."
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


@commands.command(epilog=_WORKER_EXAMPLES)
def worker() -> int:
    """Consume the RabbitMQ events queue into storage (QUEUE_BACKEND=rabbitmq).

    Batches of WORKER_BATCH_SIZE, acked once storage has them, redelivered (and
    dead-lettered after 5 deliveries) when not. Run as many as you like beside any number
    of `mysoulmate serve`. SIGTERM or SIGINT: stop taking messages, finish and ack the
    batch in hand, exit 0.
    """
    settings = get_settings()
    if settings.queue_backend != "rabbitmq":
        raise usage_error(
            "worker needs QUEUE_BACKEND=rabbitmq (`mysoulmate serve` drains the local queue "
            "itself; on AWS the consumer Lambda drains SQS)"
        )
    from mysoulmate.analytics.ports import StorageUnavailableError
    from mysoulmate.observability.process_logs import configure_process_logs
    from mysoulmate.runtime.backends import event_store
    from mysoulmate.runtime.broker_worker import run_worker

    configure_process_logs(settings.log_level, settings.log_format)  # a line per batch
    try:
        store = event_store()
    except StorageUnavailableError as exc:
        raise CliError(f"cannot start the worker: {exc}") from exc
    return run_worker(settings, store)
