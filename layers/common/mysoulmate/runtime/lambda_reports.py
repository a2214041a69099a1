"""The two report functions of the AWS shape.

* `reports_handler`: run by EventBridge Scheduler (``{"period": "day"}`` daily, ``{"period":
  "week"}`` on Mondays; by hand also ``"date"`` and ``"force"``). It builds the last complete
  period's report from the rollups, unless that period is already stored, and stores its
  HTML, CSV and JSON in the reports bucket (the JSON last, created only if absent).
  The same function runs the hourly app-performance check (``{"check": "perf"}``,
  `perf_check`), which the screen-regression alarm watches.
* `report_summary_handler`: run by the S3 "Object Created" event of that JSON (through
  EventBridge), outside any VPC. It posts the period's one Slack summary, with a presigned
  link to the page; a claim object taken with ``If-None-Match`` makes a redelivered event or
  a forced rewrite post nothing twice.

A failure raises: the scheduler and the rule retry, then dead-letter the event (alarmed).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from mysoulmate.analytics.period_report import Period, build_period_report
from mysoulmate.analytics.period_report_models import (
    ForwardingHealth,
    PeriodReport,
    ProviderHealth,
)
from mysoulmate.core.settings import Settings, SettingsError, get_settings
from mysoulmate.observability import get_logger, get_metrics, init_error_tracking
from mysoulmate.runtime.lambda_handlers import LambdaHandler, traced

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

    from mysoulmate.storage.report_bucket import S3ReportBucket

LINK_SECONDS = 7 * 24 * 3600  # SigV4's longest presigned URL
SLACK_BUDGET_SECONDS = 15.0
PERF_CHECK = "perf"


class ReportRequestError(ValueError):
    """The invocation's payload names no valid period."""


def requested_period(event: Any, today: date) -> tuple[Period, bool]:
    """The period an invocation asks for, and whether to write it again (``force``)."""
    if not isinstance(event, dict):
        raise ReportRequestError("the payload must be a JSON object")
    kind = event.get("period", "day")
    if kind not in ("day", "week"):
        raise ReportRequestError(f'"period" must be "day" or "week", not {kind!r}')
    force = event.get("force", False)
    if not isinstance(force, bool):
        raise ReportRequestError('"force" must be true or false')
    text = event.get("date")
    if text is None:
        return Period.last_complete(kind, today), force
    try:
        return Period.of(kind, date.fromisoformat(str(text))), force
    except ValueError:
        message = f'"date" must be a date such as 2026-12-01, not {text!r}'
        raise ReportRequestError(message) from None


def queue_health(settings: Settings, sqs: SQSClient) -> ForwardingHealth | None:
    """Depths of the forward queues and their dead-letter queues (named `<queue>-dlq` by the
    template), and of the events' dead-letter queue; None when none is configured."""
    queues = {
        "mixpanel": settings.mixpanel_forward_queue_url,
        "ga4": settings.ga4_forward_queue_url,
    }
    providers = [
        ProviderHealth(
            provider=name,
            queueDepth=_depth(sqs, url),
            deadLetters=_depth(sqs, f"{url}-dlq"),
        )
        for name, url in queues.items()
        if url
    ]
    if settings.events_dlq_url:
        providers.append(
            ProviderHealth(provider="consumer", deadLetters=_depth(sqs, settings.events_dlq_url))
        )
    if not providers:
        return None
    return ForwardingHealth(providers=providers, checkedAt=datetime.now(UTC))


def _depth(sqs: SQSClient, url: str) -> int | None:
    try:
        attributes = sqs.get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"])
    except Exception:  # noqa: BLE001 - unknown health is shown as unknown, never a failed report
        get_logger().warning("queue depth unavailable", extra={"queue": url.rsplit("/", 1)[-1]})
        return None


def reports_handler() -> LambdaHandler:
    from mysoulmate.storage.aws import aws_client
    from mysoulmate.storage.report_bucket import S3ReportBucket

    settings = get_settings()
    if not settings.reports_bucket:
        raise SettingsError("REPORTS_BUCKET must name the bucket reports are stored in")
    init_error_tracking("lambda")
    bucket = S3ReportBucket(settings.reports_bucket, aws_client("s3"))
    sqs: SQSClient = aws_client("sqs")
    logger, metrics = get_logger(), get_metrics()

    @metrics.log_metrics(capture_cold_start_metric=True)
    @logger.inject_lambda_context
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        if isinstance(event, dict) and event.get("check") == PERF_CHECK:
            return perf_check(metrics)
        period, force = requested_period(event, datetime.now(UTC).date())
        forwarding = queue_health(settings, sqs)
        stored = store_in_bucket(bucket, period, settings, force=force, forwarding=forwarding)
        return stored.answer()

    return traced(handler)


def perf_check(metrics: Any) -> dict[str, Any]:
    """The hourly app-performance check (``{"check": "perf"}``): every screen's p90 render
    time against the previous app version's, as the metrics the regression alarm watches
    (`PerfRegressedScreens`, `PerfWorstRenderP90Change` in percent) and one warning log per
    regressed screen, saying which."""
    from aws_lambda_powertools.metrics import MetricUnit

    from mysoulmate.analytics.perf import perf_screens_now, regressions
    from mysoulmate.runtime.backends import event_store

    screens = perf_screens_now(event_store())
    regressed = regressions(screens)
    changes = [screen.change for screen in screens if screen.change is not None]
    metrics.add_metric(name="PerfRegressedScreens", unit=MetricUnit.Count, value=len(regressed))
    metrics.add_metric(
        name="PerfWorstRenderP90Change",
        unit=MetricUnit.Percent,
        value=round(max(changes, default=0.0) * 100, 2),
    )
    logger = get_logger()
    for screen in regressed:
        logger.warning(
            "screen render time regressed",
            extra={
                "screen": screen.name,
                "platform": screen.platform,
                "version": screen.appVersion,
                "previous_version": screen.previousVersion,
                "p90_ms": screen.p90,
                "previous_p90_ms": screen.previousP90,
                "change": screen.change,
            },
        )
    return {
        "check": PERF_CHECK,
        "screens": len(screens),
        "regressed": [f"{s.name} ({s.platform} {s.appVersion})" for s in regressed],
    }


@dataclass(frozen=True)
class StoredReport:
    """What storing a period came to; ``report`` when this run built it."""

    period: str
    written: bool
    reason: str = ""
    report: PeriodReport | None = None

    def answer(self) -> dict[str, Any]:
        """The invocation's result (no figures: they are in the bucket)."""
        answer: dict[str, Any] = {"period": self.period, "written": self.written}
        if self.reason:
            answer["reason"] = self.reason
        return answer


def store_in_bucket(
    bucket: S3ReportBucket,
    period: Period,
    settings: Settings,
    *,
    force: bool = False,
    forwarding: ForwardingHealth | None = None,
    locale: str | None = None,
) -> StoredReport:
    """Build, render and store ``period``'s report in the bucket, unless it is there already
    (and not ``force``): what the reports function and `mysoulmate report` with
    REPORTS_BUCKET both do."""
    from mysoulmate.reports import render_report
    from mysoulmate.runtime.backends import event_store

    logger = get_logger()
    if not force and bucket.exists(period.key):
        logger.info("report already stored", extra={"period": period.key})
        return StoredReport(period.key, written=False, reason="already stored")
    started = time.perf_counter()
    report = build_period_report(
        event_store(), period, funnel_steps=settings.default_funnel, forwarding=forwarding
    )
    rendered = render_report(report, locale or settings.report_locale)
    files = {"report.html": rendered.html, "report.csv": rendered.csv}
    files["report.json"] = rendered.json
    written = bucket.write(period.key, files, force=force)
    seconds = round(time.perf_counter() - started, 3)
    logger.info(
        "report stored" if written else "report stored by another run first",
        extra={"period": period.key, "seconds": seconds},
    )
    return StoredReport(period.key, written=written, report=report)


class SummaryNotPostedError(RuntimeError):
    """Slack did not take a period's summary; its claim was given back for a retry."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"Slack did not take the summary: {reason}")
        self.reason = reason


def post_summary(
    report: PeriodReport,
    *,
    claim: Callable[[], bool],
    release: Callable[[], None],
    link: Callable[[], str | None],
    locale: str,
) -> bool:
    """Post ``report``'s one Slack summary: take the period's claim (False: it was already
    posted), post, and give the claim back if the post fails so a retry may post it. The
    summary function and `mysoulmate report` both post through here."""
    from mysoulmate.alerts.slack import post
    from mysoulmate.reports.slack_summary import summary_message
    from mysoulmate.runtime.alerts import webhook_url

    if not claim():
        return False
    try:
        message = summary_message(report, link(), locale)
        delivery = post(webhook_url(), message, budget_seconds=SLACK_BUDGET_SECONDS)
    except Exception:
        release()
        raise
    if not delivery.delivered:
        release()
        raise SummaryNotPostedError(delivery.error)
    return True


def stored_period_key(event: Any, bucket: str) -> str | None:
    """The period key of an S3 "Object Created" event (via EventBridge) for a report's JSON
    in ``bucket``; None for anything else."""
    detail = event.get("detail") if isinstance(event, dict) else None
    if not isinstance(detail, dict):
        return None
    name = (detail.get("bucket") or {}).get("name")
    key = str((detail.get("object") or {}).get("key", ""))
    prefix, suffix = "reports/", "/report.json"
    if name != bucket or not (key.startswith(prefix) and key.endswith(suffix)):
        return None
    period_key = key[len(prefix) : -len(suffix)]
    try:
        Period.from_key(period_key)
    except ValueError:
        return None
    return period_key


def report_summary_handler() -> LambdaHandler:
    from mysoulmate.analytics.period_report_models import PeriodReport
    from mysoulmate.storage.aws import aws_client
    from mysoulmate.storage.report_bucket import MARKER, S3ReportBucket

    settings = get_settings()
    if not settings.reports_bucket:
        raise SettingsError("REPORTS_BUCKET must name the bucket reports are stored in")
    bucket = S3ReportBucket(settings.reports_bucket, aws_client("s3"))
    logger = get_logger()

    @logger.inject_lambda_context
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        period_key = stored_period_key(event, bucket.bucket)
        if period_key is None:
            logger.warning("ignoring an event that is not a stored report")
            return {"posted": False, "reason": "not a stored report"}
        report = PeriodReport.model_validate_json(bucket.read(period_key, MARKER))
        posted = post_summary(
            report,
            claim=lambda: bucket.claim_slack(period_key),
            release=lambda: bucket.release_slack(period_key),
            link=lambda: bucket.link(period_key, LINK_SECONDS),
            locale=settings.report_locale,
        )
        if not posted:
            logger.info("summary already posted", extra={"period": period_key})
            return {"period": period_key, "posted": False, "reason": "already posted"}
        logger.info("summary posted", extra={"period": period_key})
        return {"period": period_key, "posted": True}

    return handler
