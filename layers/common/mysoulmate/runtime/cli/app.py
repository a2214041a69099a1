"""The `mysoulmate` command: its commands, options and one place for errors.

Exit codes: 0 success; 1 the command failed (an unreachable database, a broker that refuses,
an answer of "no"); 2 the command line or the configuration is wrong; 130 interrupted.
Every error is one line on stderr (``mysoulmate: …``); ``--debug`` adds the traceback.
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Sequence
from typing import Any

import typer
from typer.core import TyperGroup

from mysoulmate.runtime.cli import admin, data, dlq, report, server, writekey
from mysoulmate.runtime.cli.output import PROG, CliError, one_line, say

LONG_RUNNING = ("serve", "worker")  # their logs are for people to read
_state = {"debug": False}
# While a command runs, the root logger has this handler, so that warnings of the libraries
# (a connection pool retrying, …) do not reach stderr through Python's last-resort handler
# around the one line an error is; `--debug`, `serve` and `worker` take it away.
_QUIET = logging.NullHandler()


class _Commands(TyperGroup):
    """The top-level group: its `main` is where every error becomes one line and a code."""

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        _state["debug"] = False
        refused = False  # the command line did not parse
        root = logging.getLogger()
        root.addHandler(_QUIET)  # see `_options`
        try:
            result = super().main(
                args, prog_name or PROG, complete_var, standalone_mode=False, **extra
            )
            code = result if isinstance(result, int) else 0
        except typer.TyperException as exc:  # the parser's errors (Click's UsageError, …)
            code = _parser_error(exc)
            refused = code == 2
        except typer.Abort:
            say(f"{PROG}: aborted")
            code = 1
        except Exception as exc:  # noqa: BLE001 - the one place that turns errors into lines
            code = _failure(exc)
        finally:
            root.removeHandler(_QUIET)
        if standalone_mode or refused:
            sys.exit(code)
        return code


def _parser_error(exc: typer.TyperException) -> int:
    code = int(getattr(exc, "exit_code", 2))
    message = one_line(exc.format_message())
    if message:  # none: `mysoulmate` (or `mysoulmate dlq`) alone, which printed the help
        ctx = getattr(exc, "ctx", None)
        where = ctx.command_path if ctx is not None else PROG
        say(f"{where}: {message} (see `{where} --help`)" if code == 2 else f"{PROG}: {message}")
    return code


def _failure(exc: Exception) -> int:
    from mysoulmate.analytics.ports import QueueError, StorageUnavailableError
    from mysoulmate.core.settings import SettingsError

    if _state["debug"]:
        traceback.print_exception(exc, file=sys.stderr)
    if isinstance(exc, CliError):
        say(f"{PROG}: {one_line(exc.message)}")
        return exc.code
    if isinstance(exc, SettingsError):
        say(f"{PROG}: {one_line(str(exc))}")
        return 2
    if isinstance(exc, StorageUnavailableError | QueueError):
        say(f"{PROG}: {one_line(str(exc))}")  # written to be shown: host and user, no secret
        return 1
    say(f"{PROG}: {_describe(exc)}" + ("" if _state["debug"] else " (--debug shows where)"))
    return 1


def _describe(exc: BaseException) -> str:
    """An unexpected error as one line, with anything shaped like a secret or personal
    datum filtered out (drivers name hosts and users; a URL may carry a password)."""
    from mysoulmate.observability.scrubbing import scrub_text

    text = one_line(str(exc))
    return scrub_text(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            print(f"{PROG} {version('mysoulmate')}")
        except PackageNotFoundError:
            print(f"{PROG} (not installed)")
        raise typer.Exit()


app = typer.Typer(
    name=PROG,
    cls=_Commands,
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
    help=(
        "MySoulmate platform services: the server, the worker and the operator's tools. "
        "Settings come from the environment (README, Configuration)."
    ),
    epilog=(
        "Exit codes: 0 success, 1 failure, 2 usage or configuration error, 130 interrupted."
        "\n\nExample: mysoulmate serve --port 8080"
    ),
)


@app.callback()
def _options(
    ctx: typer.Context,
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
    debug: bool = typer.Option(False, "--debug", help="Show the traceback of an error."),
) -> None:
    _state["debug"] = debug
    if debug or ctx.invoked_subcommand in LONG_RUNNING:
        logging.getLogger().removeHandler(_QUIET)


for _module in (server, admin, data, report, dlq, writekey):
    app.add_typer(_module.commands)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default: the process's) and return its exit code.

    As with argparse before, a command line that does not parse exits (SystemExit 2) after
    saying why; `mysoulmate` as a console script exits with whatever this returns."""
    command = typer.main.get_command(app)
    return int(command.main(argv, PROG, standalone_mode=False))
