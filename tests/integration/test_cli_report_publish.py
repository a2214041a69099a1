"""`mysoulmate report` beyond the directory: the period's one Slack summary (a finished
period only, once, given back when Slack fails), and REPORTS_BUCKET, the Kubernetes CronJob's
way to store in S3 as the AWS reports function does."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto import mock_aws
from mysoulmate.runtime.cli.app import app
from typer.testing import CliRunner, Result

from tests.support.capture_server import CaptureServer, Reply

BUCKET = "mysoulmate-test-reports"


def run(*args: str) -> Result:
    """One command, as a new process would run it: settings read from the environment now."""
    from mysoulmate.observability.process_logs import reset_process_logs
    from mysoulmate.runtime.backends import reset_backends

    reset_backends()
    try:
        return CliRunner().invoke(app, list(args))
    finally:
        reset_process_logs()  # its log handler wrote to this run's (now closed) stderr


@pytest.fixture
def slack(monkeypatch: pytest.MonkeyPatch) -> Iterator[CaptureServer]:
    with CaptureServer(status=200, body=b"ok", content_type="text/plain") as server:
        monkeypatch.setenv("SLACK_WEBHOOK_URL", f"{server.url}/services/T0/B0/x")
        yield server


@pytest.fixture(autouse=True)
def unconfigured_logs() -> Iterator[None]:
    from mysoulmate.observability.process_logs import reset_process_logs

    yield
    reset_process_logs()


@pytest.fixture
def seeded() -> None:
    assert run("seed", "--events", "300", "--users", "15", "--days", "10").exit_code == 0


def posts(server: CaptureServer) -> list[dict[str, object]]:
    return [r.json() for r in server.received() if r.method == "POST"]


@pytest.mark.usefixtures("seeded")
def test_a_finished_period_is_summarized_in_slack_once(
    slack: CaptureServer, tmp_path: Path
) -> None:
    out = ["--out", str(tmp_path)]
    first = run("report", "--period", "day", *out)
    assert first.exit_code == 0, first.output
    assert "slack: summary posted" in first.stdout
    (post,) = posts(slack)
    assert [b["type"] for b in post["blocks"]] == ["header", "context", "section"]  # type: ignore[index]
    assert "nothing written" in run("report", "--period", "day", *out).stdout
    forced = run("report", "--period", "day", "--force", *out)
    assert "already posted" in forced.stdout
    assert len(posts(slack)) == 1


@pytest.mark.usefixtures("seeded")
def test_a_period_not_over_yet_is_not_summarized(slack: CaptureServer, tmp_path: Path) -> None:
    import time

    today = time.strftime("%Y-%m-%d", time.gmtime())
    result = run("report", "--period", "day", "--date", today, "--out", str(tmp_path))
    assert "not over yet" in result.stdout
    assert posts(slack) == []


@pytest.mark.usefixtures("seeded")
def test_a_refused_summary_fails_the_run_and_is_posted_by_the_next(
    slack: CaptureServer, tmp_path: Path
) -> None:
    slack.routes["/services/"] = Reply(status=404, body=b"no_service")
    failed = run("report", "--period", "week", "--out", str(tmp_path))
    assert failed.exit_code == 1
    assert "not posted" in failed.stderr
    slack.routes.clear()
    again = run("report", "--period", "week", "--force", "--out", str(tmp_path))
    assert "slack: summary posted" in again.stdout


@pytest.mark.usefixtures("seeded")
def test_reports_bucket_stores_in_s3_once_and_links_the_page(
    slack: CaptureServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REPORTS_BUCKET", BUCKET)
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        first = run("report", "--period", "week")
        assert first.exit_code == 0, first.output
        key = first.stdout.split(":", 1)[0]
        assert f"written to s3://{BUCKET}/reports/{key}/" in first.stdout
        listed = s3.list_objects_v2(Bucket=BUCKET)["Contents"]
        names = sorted(item["Key"].rsplit("/", 1)[-1] for item in listed)
        assert names == ["report.csv", "report.html", "report.json", "slack-posted"]
        (post,) = posts(slack)
        (button,) = post["blocks"][-1]["elements"]  # type: ignore[index]
        assert f"/reports/{key}/report.html?" in button["url"]
        second = run("report", "--period", "week")
        assert "nothing written" in second.stdout
        assert len(posts(slack)) == 1
