"""Logs of the long-running processes (`mysoulmate serve`, `mysoulmate worker`).

One line per request (method, route template, status, duration, request id) and per
consumed batch (messages, stored, duplicates, failures, duration): never a path with its
ids, a query string, a body or a user id. On a terminal the lines are short and readable;
otherwise (a container, a pipe) they are Powertools' redacted JSON, one object a line, like
every other log of the package. ``LOG_LEVEL`` sets the level; ``LOG_FORMAT`` (``auto``,
``text``, ``json``) overrides the choice. On Lambda none of this is configured: API
Gateway's access log and the Powertools logger already say it.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from typing import Any, TextIO

from mysoulmate.observability.powertools import PACKAGE_LOGGER, get_logger, redact

ACCESS = "request"
BATCH = "batch"
# Extras each kind of line carries, in the order the text form shows them.
_TEXT_FIELDS = (
    "request_id",
    "messages",
    "stored",
    "duplicates",
    "erased",
    "failures",
)
_state: dict[str, bool] = {"on": False}
# What configuring changed (handler, its stream, its formatter; the package's propagation),
# so that `reset_process_logs` can put it back (tests configure and unconfigure).
_changed: list[tuple[logging.StreamHandler[TextIO], TextIO, logging.Formatter | None]] = []
_added: list[logging.Handler] = []


class _DropTerminalColours(logging.Filter):
    """uvicorn adds ``color_message`` (its message with ANSI escapes) to its records: JSON
    lines and other terminals have no use for it."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.__dict__.pop("color_message", None)
        return True


class ConsoleFormatter(logging.Formatter):
    """``12:00:01 INFO  POST /api/v1/analytics/track 202 3.1 ms req=…`` for people."""

    def format(self, record: logging.LogRecord) -> str:
        clock = time.strftime("%H:%M:%S", time.localtime(record.created))
        extras = record.__dict__
        if record.msg == ACCESS:
            text = (
                f"{extras.get('method', '')} {extras.get('route', '')} "
                f"{extras.get('status', '')} {extras.get('duration_ms', 0):.1f} ms "
                f"req={extras.get('request_id', '')}"
            )
        else:
            message = str(redact(record.getMessage()))
            shown = [f"{key}={extras[key]}" for key in _TEXT_FIELDS if key in extras]
            if "duration_ms" in extras:
                shown.append(f"{extras['duration_ms']:.1f} ms")
            text = " ".join([message, *shown])
        line = f"{clock} {record.levelname:<5} {text}"
        if record.exc_info:
            line += "\n" + str(redact(self.formatException(record.exc_info)))
        return line


def configure_process_logs(level: str, fmt: str = "auto", stream: TextIO | None = None) -> str:
    """Route the package's logs to ``stream`` (stderr) in the chosen form; return the form."""
    out = stream or sys.stderr
    form = fmt if fmt in ("text", "json") else ("text" if out.isatty() else "json")
    logger = get_logger()
    powertools = logging.getLogger(logger.name)
    for handler in powertools.handlers:
        if isinstance(handler, logging.StreamHandler):
            _changed.append((handler, handler.stream, handler.formatter))
            if not any(isinstance(f, _DropTerminalColours) for f in handler.filters):
                handler.addFilter(_DropTerminalColours())
            with handler.lock or contextlib.nullcontext():
                handler.stream = out  # not setStream: it flushes the old one, maybe closed
            if form == "text":
                handler.setFormatter(ConsoleFormatter())
    logger.setLevel(level)
    package = logging.getLogger(PACKAGE_LOGGER)
    if package is not powertools and not package.handlers:
        # Stdlib loggers of the package (i18n's missing-key warning, …) in the same form.
        handler = powertools.handlers[0] if powertools.handlers else logging.StreamHandler(out)
        package.addHandler(handler)
        _added.append(handler)
    package.setLevel(level)
    _state["on"] = True
    return form


def log_request(method: str, route: str, status: int, seconds: float, request_id: str) -> None:
    """The access line of one request (only once `configure_process_logs` ran)."""
    if not _state["on"]:
        return
    extra: dict[str, Any] = {
        "method": method,
        "route": route,
        "status": status,
        "duration_ms": round(seconds * 1000, 1),
        "request_id": request_id,
    }
    logger = get_logger()
    (logger.warning if status >= 500 else logger.info)(ACCESS, extra=extra)


def log_batch(
    messages: int, stored: int, duplicates: int, erased: int, failures: int, seconds: float
) -> None:
    """The line of one consumed batch (only once `configure_process_logs` ran)."""
    if not _state["on"]:
        return
    extra = {
        "messages": messages,
        "stored": stored,
        "duplicates": duplicates,
        "erased": erased,
        "failures": failures,
        "duration_ms": round(seconds * 1000, 1),
    }
    logger = get_logger()
    (logger.warning if failures else logger.info)(BATCH, extra=extra)


def reset_process_logs() -> None:
    """Undo `configure_process_logs` (tests configure it and must leave logging as found)."""
    _state["on"] = False
    while _changed:
        handler, stream, formatter = _changed.pop()
        with handler.lock or contextlib.nullcontext():
            handler.stream = stream  # not setStream: it flushes the old one, maybe closed
        handler.setFormatter(formatter)
    package = logging.getLogger(PACKAGE_LOGGER)
    while _added:
        package.removeHandler(_added.pop())
