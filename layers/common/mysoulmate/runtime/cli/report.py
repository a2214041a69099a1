"""`mysoulmate report`: one period's report (HTML, JSON, CSV) into a directory, once.

What the laptop runs by hand and the Helm chart's CronJobs run on a schedule; the scheduled
Lambda runs the same computation into S3 (`runtime/lambda_reports.py`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, get_args

import typer

from mysoulmate.core.settings import Settings, get_settings
from mysoulmate.runtime.cli.output import CliError, choice, stderr_is_terminal

if TYPE_CHECKING:
    from mysoulmate.analytics.period_report import Period
    from mysoulmate.analytics.period_report_models import (
        ForwardingHealth,
        Granularity,
        PeriodReport,
    )

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
    language = locale or settings.report_locale
    if settings.reports_bucket and out is None:
        _to_bucket(settings, chosen, language, force=force)
        return
    directory = out or settings.reports_dir or settings.data_dir / "reports"
    with _working(f"reporting {chosen.key}"):
        written = write_report(
            event_store(),
            chosen,
            directory,
            locale=language,
            force=force,
            forwarding=dead_letter_health(settings),
        )
    print(written.message)
    if written.written:
        for path in written.files:
            print(f"  {path}")
        claim = written.directory / "slack-posted"
        from mysoulmate.analytics.period_report_models import PeriodReport

        stored = (written.directory / "report.json").read_text(encoding="utf-8")
        print(
            _summarize(
                settings,
                PeriodReport.model_validate_json(stored),
                claim=lambda: _claim_file(claim),
                release=lambda: claim.unlink(missing_ok=True),
                link=lambda: None,  # a file on this machine: nothing a reader could open
                locale=language,
            )
        )


def _to_bucket(settings: Settings, chosen: Period, language: str, *, force: bool) -> None:
    """REPORTS_BUCKET (Kubernetes with an IRSA role): what the AWS reports function does,
    then the period's one Slack summary with a presigned link."""
    from mysoulmate.observability.process_logs import configure_process_logs
    from mysoulmate.runtime.lambda_reports import LINK_SECONDS, store_in_bucket
    from mysoulmate.storage.aws import aws_client
    from mysoulmate.storage.report_bucket import S3ReportBucket

    configure_process_logs(settings.log_level, settings.log_format)  # logs on stderr, not stdout
    bucket = S3ReportBucket(settings.reports_bucket, aws_client("s3"))
    with _working(f"reporting {chosen.key}"):
        result = store_in_bucket(
            bucket,
            chosen,
            settings,
            force=force,
            forwarding=dead_letter_health(settings),
            locale=language,
        )
    where = f"s3://{bucket.bucket}/{bucket.key(chosen.key, '')}"
    if result.report is None or not result.written:
        print(f"{chosen.key}: already in {where}; nothing written (force to redo)")
        return
    print(f"{chosen.key}: written to {where}")
    print(
        _summarize(
            settings,
            result.report,  # as built: no need to read the stored JSON back
            claim=lambda: bucket.claim_slack(chosen.key),
            release=lambda: bucket.release_slack(chosen.key),
            link=lambda: bucket.link(chosen.key, LINK_SECONDS),
            locale=language,
        )
    )


def _claim_file(path: Path) -> bool:
    """Create ``path`` if it does not exist (atomically): the period's one summary."""
    try:
        path.open("x").close()
    except FileExistsError:
        return False
    return True


def _summarize(
    settings: Settings,
    report: PeriodReport,
    *,
    claim: Callable[[], bool],
    release: Callable[[], None],
    link: Callable[[], str | None],
    locale: str,
) -> str:
    """Post the report's Slack summary once per finished period (when a webhook is
    configured); say what happened in one line."""
    if not (settings.slack_webhook_url or settings.slack_webhook_parameter):
        return "slack: no webhook configured (SLACK_WEBHOOK_URL); no summary posted"
    if not report.complete:
        return "slack: the period is not over yet; its summary waits for the full report"
    from mysoulmate.runtime.lambda_reports import SummaryNotPostedError, post_summary

    try:
        posted = post_summary(report, claim=claim, release=release, link=link, locale=locale)
    except SummaryNotPostedError as exc:
        raise CliError(f"slack: the summary was not posted: {exc.reason}") from None
    if not posted:
        return "slack: the summary of this period was already posted"
    return "slack: summary posted"


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
