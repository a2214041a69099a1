"""`mysoulmate report`: one period's report (HTML, JSON, CSV) into a directory, once.

What the laptop runs by hand and the Helm chart's CronJobs run on a schedule; the scheduled
Lambda runs the same computation into S3 (`runtime/lambda_reports.py`).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, get_args

import typer

from mysoulmate.core.settings import Settings, get_settings
from mysoulmate.runtime.cli.output import choice, stderr_is_terminal

if TYPE_CHECKING:
    from mysoulmate.analytics.period_report_models import ForwardingHealth, Granularity

commands = typer.Typer()
LOCALES: tuple[str, ...] = get_args(Settings.model_fields["report_locale"].annotation)


def _day(text: str) -> date:
    try:
        return date.fromisoformat(str(text))
    except ValueError:
        raise typer.BadParameter(f"invalid date {text!r}: use YYYY-MM-DD") from None


@commands.command(
    epilog=(
        "Examples:\n\n"
        "mysoulmate report --period week --out reports/    # the last complete week\n\n"
        "mysoulmate report --period day --date 2026-12-06 --locale fr\n\n"
        "mysoulmate report --period week --date 2026-12-09 --force    # that week, again"
    )
)
def report(
    period: str = typer.Option(
        "day", "--period", parser=choice("day", "week"), metavar="day|week", help="Period kind."
    ),
    day: date | None = typer.Option(
        None,
        "--date",
        parser=_day,
        metavar="YYYY-MM-DD",
        help="A day of the period (default: the last complete one).",
    ),
    out: Path | None = typer.Option(
        None, "--out", file_okay=False, help="Directory (default: REPORTS_DIR or DATA_DIR/reports)."
    ),
    locale: str | None = typer.Option(
        None,
        "--locale",
        parser=choice(*LOCALES),
        metavar="|".join(LOCALES),
        help="Language and formats (default: REPORT_LOCALE).",
    ),
    force: bool = typer.Option(False, "--force", help="Write it again even if it is there."),
) -> None:
    """Write the report of a UTC day or ISO week (HTML with charts, JSON, CSV).

    Into OUT/daily/<date>/ or OUT/weekly/<year>-W<week>/: report.html (charts inline,
    nothing fetched), report.json and report.csv.

    A finished period already written is not computed again (unless --force); a period
    written before it ended is replaced.
    """
    from mysoulmate.analytics.period_report import Period
    from mysoulmate.reports.job import write_report
    from mysoulmate.runtime.backends import event_store

    settings = get_settings()
    kind: Granularity = "week" if period == "week" else "day"
    today = datetime.now(UTC).date()
    chosen = Period.of(kind, day) if day else Period.last_complete(kind, today)
    directory = out or settings.reports_dir or settings.data_dir / "reports"
    with _working(f"reporting {chosen.key}"):
        written = write_report(
            event_store(),
            chosen,
            directory,
            locale=locale or settings.report_locale,
            force=force,
            forwarding=dead_letter_health(settings),
        )
    print(written.message)
    if written.written:
        for path in written.files:
            print(f"  {path}")


@contextmanager
def _working(what: str) -> Iterator[None]:
    """A spinner on stderr while the report is computed (only on a terminal)."""
    if not stderr_is_terminal():
        yield
        return
    from rich.console import Console

    with Console(file=sys.stderr).status(what):
        yield


def dead_letter_health(settings: Settings) -> ForwardingHealth | None:
    """The dead letters of the configured queue (and, on SQS, the forward queues): the
    report's health section. Unknown (None) rather than a failed report when unreachable."""
    from mysoulmate.analytics.period_report_models import ForwardingHealth, ProviderHealth
    from mysoulmate.observability import get_logger
    from mysoulmate.runtime.dlq import open_dead_letters

    if settings.queue_backend == "sqs":
        from mysoulmate.runtime.lambda_reports import queue_health
        from mysoulmate.storage.aws import aws_client

        return queue_health(settings, aws_client("sqs"))
    try:
        queue = open_dead_letters(settings)
        try:
            dead = queue.depth()
        finally:
            queue.close()
    except Exception as exc:  # noqa: BLE001 - unknown health is shown as unknown
        get_logger().warning("dead letters unavailable", extra={"reason": str(exc)[:300]})
        return None
    return ForwardingHealth(
        providers=[ProviderHealth(provider="consumer", deadLetters=dead)],
        checkedAt=datetime.now(UTC),
    )
