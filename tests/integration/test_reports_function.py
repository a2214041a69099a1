"""The two report functions in moto: the scheduled one stores a week's report in S3 once
(a second run writes nothing unless forced); the S3 event of its JSON makes the summary
function post one Slack message with a link to the page, and only one, whatever the
redeliveries; a failed post is given back so the rule's retry can post it."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from mysoulmate.analytics.period_report_models import PeriodReport

from tests.support.aws import REGION, FakeLambdaContext
from tests.support.capture_server import CaptureServer, Reply
from tests.support.helpers import load_event
from tests.support.report_data import seed_demo

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]
BUCKET = "mysoulmate-test-reports"
WEBHOOK_PARAMETER = "/mysoulmate/test/slack-webhook-url"
KEY = "weekly/2026-W48"


@pytest.fixture
def slack() -> Iterator[CaptureServer]:
    with CaptureServer(status=200, body=b"ok", content_type="text/plain") as server:
        yield server


@pytest.fixture
def deployed(
    lambda_env: Callable[..., None],
    events_table: str,
    slack: CaptureServer,
    monkeypatch: pytest.MonkeyPatch,
) -> Any:
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=BUCKET)
    boto3.client("ssm", region_name=REGION).put_parameter(
        Name=WEBHOOK_PARAMETER, Value=f"{slack.url}/services/T0/B0/x", Type="SecureString"
    )
    for name, value in {
        "REPORTS_BUCKET": BUCKET,
        "REPORT_LOCALE": "fr",
        "SLACK_WEBHOOK_PARAMETER": WEBHOOK_PARAMETER,
    }.items():
        monkeypatch.setenv(name, value)
    from aws_lambda_powertools.utilities import parameters

    parameters.clear_caches()
    lambda_env("https://sqs.us-east-1.amazonaws.com/123456789012/unused")
    from mysoulmate.runtime.backends import event_store

    seed_demo(event_store(), users=12)
    return s3


def stored_keys(s3: Any) -> list[str]:
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix="reports/").get("Contents", [])
    return sorted(item["Key"] for item in listed)


def slack_posts(server: CaptureServer) -> list[dict[str, Any]]:
    return [request.json() for request in server.received() if request.method == "POST"]


def test_a_scheduled_run_stores_the_period_once(
    deployed: Any, load_function: Callable[[str], Handler]
) -> None:
    reports = load_function("reports")
    event = load_event("scheduler-weekly-report.json")
    assert reports(event, FakeLambdaContext()) == {"period": KEY, "written": True}
    keys = stored_keys(deployed)
    assert keys == [f"reports/{KEY}/report.{ext}" for ext in ("csv", "html", "json")]
    page = deployed.get_object(Bucket=BUCKET, Key=f"reports/{KEY}/report.html")
    assert page["ContentType"].startswith("text/html")
    html = page["Body"].read().decode()
    assert 'lang="fr"' in html
    assert html.count("<svg") >= 4  # the charts, inline
    report = PeriodReport.model_validate_json(
        deployed.get_object(Bucket=BUCKET, Key=f"reports/{KEY}/report.json")["Body"].read()
    )
    assert report.totals.events.current > 0
    before = deployed.head_object(Bucket=BUCKET, Key=f"reports/{KEY}/report.html")["ETag"]
    # The scheduler's retry, or a second schedule for the same week: nothing is written.
    second = reports(event, FakeLambdaContext())
    assert second == {"period": KEY, "written": False, "reason": "already stored"}
    assert deployed.head_object(Bucket=BUCKET, Key=f"reports/{KEY}/report.html")["ETag"] == before
    # Unless forced.
    assert reports({**event, "force": True}, FakeLambdaContext())["written"] is True


def test_without_a_date_the_last_complete_period_is_reported(
    deployed: Any, load_function: Callable[[str], Handler]
) -> None:
    reports = load_function("reports")
    answer = reports({"period": "day"}, FakeLambdaContext())
    assert answer["written"] is True
    assert answer["period"].startswith("daily/")


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({"period": "month"}, '"period" must be "day" or "week"'),
        ({"period": "week", "date": "yesterday"}, '"date" must be a date'),
        ({"period": "week", "force": "yes"}, '"force" must be true or false'),
    ],
)
def test_a_bad_payload_is_refused_with_a_clear_error(
    deployed: Any, load_function: Callable[[str], Handler], event: dict[str, Any], message: str
) -> None:
    from mysoulmate.runtime.lambda_reports import ReportRequestError

    reports = load_function("reports")
    with pytest.raises(ReportRequestError, match=message):
        reports(event, FakeLambdaContext())
    assert stored_keys(deployed) == []


def test_the_summary_is_posted_once_per_period_with_a_link(
    deployed: Any, load_function: Callable[[str], Handler], slack: CaptureServer
) -> None:
    load_function("reports")(load_event("scheduler-weekly-report.json"), FakeLambdaContext())
    summary = load_function("report-summary")
    stored = load_event("eventbridge-s3-object-created.json")
    assert summary(stored, FakeLambdaContext()) == {"period": KEY, "posted": True}
    (post,) = slack_posts(slack)
    assert post["text"].endswith("semaine 48, 2026")  # French, as REPORT_LOCALE says
    header, context, figures, actions = post["blocks"]
    assert header["type"] == "header"
    assert "2026" in context["elements"][0]["text"]
    assert "Événements" in figures["fields"][0]["text"]
    (button,) = actions["elements"]
    assert f"{BUCKET}" in button["url"]
    assert f"/reports/{KEY}/report.html?" in button["url"]
    assert "X-Amz-Expires=604800" in button["url"]  # 7 days
    # EventBridge delivers an event more than once now and then: still one message.
    assert summary(stored, FakeLambdaContext())["posted"] is False
    assert len(slack_posts(slack)) == 1


def test_a_failed_post_is_given_back_for_the_retry(
    deployed: Any, load_function: Callable[[str], Handler], slack: CaptureServer
) -> None:
    load_function("reports")(load_event("scheduler-weekly-report.json"), FakeLambdaContext())
    summary = load_function("report-summary")
    stored = load_event("eventbridge-s3-object-created.json")
    slack.routes["/services/"] = Reply(status=404, body=b"no_service")  # a permanent refusal
    with pytest.raises(RuntimeError, match="Slack did not take the summary"):
        summary(stored, FakeLambdaContext())
    slack.routes.clear()
    assert summary(stored, FakeLambdaContext())["posted"] is True
    assert len([p for p in slack_posts(slack) if "blocks" in p]) == 2  # refused, then taken


def test_events_for_other_objects_are_ignored(
    deployed: Any, load_function: Callable[[str], Handler], slack: CaptureServer
) -> None:
    summary = load_function("report-summary")
    event = load_event("eventbridge-s3-object-created.json")
    event["detail"]["object"]["key"] = f"reports/{KEY}/report.html"
    assert summary(event, FakeLambdaContext())["posted"] is False
    event["detail"]["bucket"]["name"] = "someone-elses"
    assert summary(event, FakeLambdaContext())["posted"] is False
    assert slack_posts(slack) == []
    assert json.dumps(event)  # the event itself is left as it was given


def perf_batch(user: str, version: str, render_ms: float, count: int) -> Any:
    from datetime import UTC, datetime

    from mysoulmate.analytics.models import QueuedMessage
    from mysoulmate.analytics.perf_models import Measurement, PerfPayload

    now = datetime.now(UTC)
    payload = PerfPayload(
        appVersion=version,
        deviceClass="mid",
        measurements=[Measurement(metric="render", name="ChatScreen", value=render_ms)] * count,
    )
    return QueuedMessage(
        type="perf",
        messageId=f"perf-{version}",
        userId=user,
        timestamp=now,
        receivedAt=now,
        platform="ios",
        properties=payload.model_dump(mode="json", exclude_none=True),
    )


def test_the_hourly_perf_check_publishes_the_regressed_screens_for_the_alarm(
    deployed: Any, load_function: Callable[[str], Handler], capsys: pytest.CaptureFixture[str]
) -> None:
    from mysoulmate.runtime.backends import event_store

    event_store().record_perf(
        [perf_batch("ava", "2.3.0", 100.0, 60), perf_batch("ava", "2.4.0", 150.0, 60)]
    )
    reports = load_function("reports")
    capsys.readouterr()
    answer = reports({"check": "perf"}, FakeLambdaContext())
    # (The seeded demo week may fall in the last 14 days too, with a regression of its own.)
    assert answer["check"] == "perf"
    assert "ChatScreen (ios 2.4.0)" in answer["regressed"]
    assert "ChatScreen (ios 2.3.0)" not in answer["regressed"]
    # The EMF document the alarm's metric comes from: by the function's service dimension.
    published: dict[str, Any] = {}
    for line in capsys.readouterr().out.splitlines():
        if line.startswith("{") and "_aws" in line:
            document = json.loads(line)
            directive = document["_aws"]["CloudWatchMetrics"][0]
            for metric in directive["Metrics"]:
                value = document[metric["Name"]]
                value = value[0] if isinstance(value, list) else value
                published[metric["Name"]] = (value, directive["Dimensions"])
    # Exactly the alarm's dimensions (service alone), or the alarm would watch nothing.
    assert published["PerfRegressedScreens"] == (len(answer["regressed"]), [["service"]])
    assert published["PerfWorstRenderP90Change"][0] == pytest.approx(50, abs=3)
