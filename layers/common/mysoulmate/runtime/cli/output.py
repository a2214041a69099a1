"""What every command shares: its errors, progress bars, prompts and option parsers.

Results go to stdout as plain text (scripts read them: `TOKEN=$(mysoulmate token …)`);
messages, prompts and progress go to stderr. Progress bars are drawn (by Rich) only when
stderr is a terminal: in a pipe, a log file or a CronJob's log there is nothing to redraw.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from rich.progress import Progress

PROG = "mysoulmate"


class CliError(Exception):
    """A failure the operator can act on: printed as one line on stderr, then exit ``code``
    (1: the command failed; 2: the command line or the configuration is wrong)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def usage_error(message: str) -> CliError:
    return CliError(message, 2)


def one_line(text: str) -> str:
    """``text`` on one line: its lines joined, runs of spaces collapsed."""
    return " ".join(text.split())


def say(message: str) -> None:
    """A message for the operator (stderr: stdout is the command's result)."""
    print(message, file=sys.stderr, flush=True)


def _is_terminal(stream: object) -> bool:
    try:
        return bool(stream.isatty())  # type: ignore[attr-defined]
    except (AttributeError, ValueError):  # replaced or closed stream
        return False


def stderr_is_terminal() -> bool:
    return _is_terminal(sys.stderr)


def progress(transient: bool = False) -> Progress:
    """A Rich progress display on stderr, disabled unless stderr is a terminal."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    drawn = stderr_is_terminal()
    return Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(file=sys.stderr, force_terminal=drawn or None),
        disable=not drawn,
        transient=transient,
        redirect_stdout=False,  # stdout is the command's result (`export` writes it meanwhile)
        redirect_stderr=False,
    )


def confirm(question: str) -> bool:
    """Ask on stderr; no answer (end of input) is no."""
    try:
        answer = bool(typer.confirm(question, default=False, err=True))
    except typer.Abort:
        answer = False
    if not _is_terminal(sys.stdin):
        say("")  # a piped answer is not echoed: end the prompt's line
    return answer


def choice(*values: str) -> Callable[[str], str]:
    """An option parser accepting ``values`` only (``invalid choice: …`` otherwise)."""

    def parse(text: str) -> str:
        if text not in values:
            raise typer.BadParameter(f"invalid choice: {text!r} (choose from {', '.join(values)})")
        return text

    return parse


def positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise typer.BadParameter(f"invalid number {text!r}") from None
    if value < 1:
        raise typer.BadParameter(f"must be at least 1, not {value}")
    return value


class Interrupt:
    """Set by the first SIGINT (Ctrl-C) or SIGTERM inside `interruptible`."""

    def __init__(self) -> None:
        self.requested = False
        self.signal_name = ""

    def __call__(self) -> bool:
        return self.requested


@contextmanager
def interruptible() -> Iterator[Interrupt]:
    """Turn the first Ctrl-C or SIGTERM into a request to stop after the current step (the
    caller polls it); a second Ctrl-C interrupts at once, as usual."""
    flag = Interrupt()
    if threading.current_thread() is not threading.main_thread():
        yield flag  # signals are delivered to the main thread only
        return

    def request(signum: int, _: FrameType | None) -> None:
        flag.requested = True
        flag.signal_name = signal.Signals(signum).name
        signal.signal(signal.SIGINT, signal.default_int_handler)
        say(f"{PROG}: stopping after the current message ({flag.signal_name}; again to abort)")

    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    for signum in previous:
        signal.signal(signum, request)
    try:
        yield flag
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
