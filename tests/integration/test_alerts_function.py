"""The alerts function, called as Lambda calls it: a real SNS-wrapped CloudWatch alarm in
(tests/events/sns-cloudwatch-alarm.json, from `sam local generate-event sns notification` with
an alarm notification as the message), the webhook URL from moto's SSM (a SecureString), and
a local capture server standing in for Slack's incoming webhook."""

from __future__ import annotations

import copy
import json
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any

import boto3
import pytest
from mysoulmate.observability import powertools
from mysoulmate.runtime.backends import reset_backends

from tests.support.aws import REGION, FakeLambdaContext
from tests.support.capture_server import CapturedRequest, CaptureServer
from tests.support.helpers import load_event

Handler = Callable[[Any, Any], dict[str, int]]
PARAMETER = "/mysoulmate/test/slack-webhook-url"
ALARM_EVENT = "sns-cloudwatch-alarm.json"


class ScriptedServer(CaptureServer):
    """A capture server answering the first requests from a script of (status, headers),
    then 200 "ok" as Slack does."""

    def __init__(self, *script: tuple[int, dict[str, str]]) -> None:
        self.script = list(script)
        self.extra_headers: dict[str, str] = {}
        super().__init__(status=200, body=b"ok", content_type="text/html")

    def _record(self, request: CapturedRequest) -> None:
        # Runs before the response is written: choose this request's answer here.
        status, headers = self.script.pop(0) if self.script else (200, {})
        self.status, self.extra_headers = status, headers
        self.body = b"ok" if status == 200 else b"server_error"
        super()._record(request)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        base = super()._handler_class()
        server = self

        class Handler(base):  # type: ignore[misc,valid-type]
            def end_headers(self) -> None:
                for name, value in server.extra_headers.items():
                    self.send_header(name, value)
                super().end_headers()

        return Handler


@dataclass
class ShortContext(FakeLambdaContext):
    """A context whose invocation has ``remaining_ms`` left (the function's timeout nears)."""

    remaining_ms: int = 30_000

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


@pytest.fixture
def ssm(aws: None) -> Any:
    return boto3.client("ssm", region_name=REGION)


@pytest.fixture
def configured(monkeypatch: pytest.MonkeyPatch, aws: None) -> Iterator[None]:
    """The function's deployed configuration: only the parameter's NAME in the environment.
    A Logger of its own (Powertools binds a handler to the sys.stdout of its first build)."""
    from aws_lambda_powertools.utilities import parameters

    monkeypatch.setenv("SLACK_WEBHOOK_PARAMETER", PARAMETER)
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", f"alerts-test-{uuid.uuid4().hex}")
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "INFO")
    parameters.clear_caches()
    parameters.base.DEFAULT_PROVIDERS.clear()
    powertools.get_logger.cache_clear()
    reset_backends()
    yield
    parameters.clear_caches()
    parameters.base.DEFAULT_PROVIDERS.clear()
    powertools.get_logger.cache_clear()


@pytest.fixture
def webhook(ssm: Any, configured: None) -> Callable[[str], str]:
    """Stores ``base_url`` + a secret path as the SecureString; returns the full URL."""

    def store(base_url: str) -> str:
        url = f"{base_url}/services/T0001/B0001/planted-webhook-secret-{uuid.uuid4().hex}"
        ssm.put_parameter(Name=PARAMETER, Value=url, Type="SecureString")
        return url

    return store


@pytest.fixture
def alerts(configured: None, load_function: Callable[[str], Handler]) -> Callable[[], Handler]:
    """Loads functions/alerts/app.py once the test has set up SSM and the server."""
    return lambda: load_function("alerts")


def alarm_event(**changes: Any) -> dict[str, Any]:
    event = load_event(ALARM_EVENT)
    sns = event["Records"][0]["Sns"]
    alarm = json.loads(sns["Message"])
    alarm.update(changes)
    sns["Message"] = json.dumps(alarm)
    return event


def fields_of(payload: dict[str, Any]) -> dict[str, str]:
    """The card's fields as {label: value}."""
    (attachment,) = payload["attachments"]
    fields = next(b["fields"] for b in attachment["blocks"] if "fields" in b)
    out = {}
    for field_ in fields:
        label, _, value = field_["text"].partition("\n")
        out[label.strip("*")] = value
    return out


def logged(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


# ----------------------------------------------------------------------------- delivery


def test_alarm_is_posted_to_slack_as_a_readable_card(
    webhook: Callable[[str], str],
    alerts: Callable[[], Handler],
    capsys: pytest.CaptureFixture[str],
) -> None:
    with CaptureServer(body=b"ok", content_type="text/html") as slack:
        url = webhook(slack.url)
        handler = alerts()
        outcome = handler(load_event(ALARM_EVENT), FakeLambdaContext())
        (request,) = slack.wait_for()

    assert outcome == {"delivered": 1, "failed": 0, "skipped": 0}
    assert request.method == "POST"
    assert request.path == url.removeprefix(slack.url)
    assert request.headers["content-type"].startswith("application/json")
    payload = request.json()

    name = "mysoulmate-prod-consumer-errors"
    assert payload["text"] == f":rotating_light: ALARM: {name}"
    (attachment,) = payload["attachments"]
    assert attachment["color"] == "#d13212"  # red
    blocks = attachment["blocks"]
    assert blocks[0] == {
        "type": "header",
        "text": {"type": "plain_text", "text": f":rotating_light: ALARM: {name}", "emoji": True},
    }
    reason = blocks[1]["text"]["text"]
    assert reason.startswith("*Whole consumer batches failed")
    # The reason, with Slack's control characters escaped ("OK -> ALARM").
    assert "was greater than the threshold (0.0)" in reason
    assert "OK -&gt; ALARM transition" in reason
    changed = int(datetime(2026, 1, 31, 12, 0, 41, 637000, tzinfo=UTC).timestamp())
    assert fields_of(payload) == {
        "State": "OK → ALARM",
        "Since": f"<!date^{changed}^{{date_short_pretty}} {{time_secs}}|2026-01-31 12:00:41 UTC>",
        "Metric": "AWS/Lambda Errors (FunctionName=mysoulmate-prod-ConsumerFunction-Ab12Cd34Ef56)",
        "Threshold": "SUM &gt; 0 for 1 x 300 s",
        "Region": "US East (N. Virginia) (us-east-1)",
        "Account": "123456789012",
    }
    (button,) = blocks[-1]["elements"]
    assert button["text"]["text"] == "Open in CloudWatch"
    assert button["url"] == (
        "https://us-east-1.console.aws.amazon.com/cloudwatch/home?region=us-east-1"
        f"#alarmsV2:alarm/{name}"
    )
    # The webhook URL is a credential: nowhere in the logs.
    out = capsys.readouterr()
    secret = url.rsplit("/", 1)[1]
    assert secret not in out.out + out.err
    assert any(line["message"] == "Posted to Slack" for line in logged(out.out))


def test_ok_and_metric_math_alarms(
    webhook: Callable[[str], str], alerts: Callable[[], Handler]
) -> None:
    """Back to OK in green; an alarm on a metric math expression shows the expression."""
    trigger = {
        "Metrics": [
            {
                "Id": "rate",
                "Expression": "IF(requests >= 20, 100 * FILL(errors, 0) / requests, 0)",
                "Label": "5xx responses (% of requests)",
                "ReturnData": True,
            },
            {
                "Id": "errors",
                "MetricStat": {
                    "Metric": {
                        "Namespace": "AWS/ApiGateway",
                        "MetricName": "5xx",
                        "Dimensions": [
                            {"value": "a1b2c3", "name": "ApiId"},
                            {"value": "$default", "name": "Stage"},
                        ],
                    },
                    "Period": 300,
                    "Stat": "Sum",
                },
                "ReturnData": False,
            },
        ],
        "ComparisonOperator": "GreaterThanThreshold",
        "Threshold": 5.0,
        "EvaluationPeriods": 3,
        "DatapointsToAlarm": 2,
        "Period": 300,
    }
    event = alarm_event(
        AlarmName="mysoulmate-prod-api-5xx-rate",
        NewStateValue="OK",
        OldStateValue="ALARM",
        NewStateReason="Threshold Crossed: no datapoints were greater than the threshold",
        Trigger=trigger,
    )
    with CaptureServer(body=b"ok") as slack:
        webhook(slack.url)
        assert alerts()(event, FakeLambdaContext())["delivered"] == 1
        payload = slack.wait_for()[0].json()
    assert payload["text"] == ":white_check_mark: OK: mysoulmate-prod-api-5xx-rate"
    assert payload["attachments"][0]["color"] == "#1d8102"  # green
    fields = fields_of(payload)
    assert fields["State"] == "ALARM → OK"
    assert fields["Metric"].splitlines() == [
        "rate = IF(requests &gt;= 20, 100 * FILL(errors, 0) / requests, 0)"
        " “5xx responses (% of requests)”",
        "errors: AWS/ApiGateway 5xx (ApiId=a1b2c3, Stage=$default)",
    ]
    assert fields["Threshold"] == "&gt; 5 for 2 of 3 x 300 s"


def test_retries_a_server_error_then_succeeds(
    webhook: Callable[[str], str], alerts: Callable[[], Handler]
) -> None:
    with ScriptedServer((500, {}), (502, {})) as slack:
        webhook(slack.url)
        outcome = alerts()(load_event(ALARM_EVENT), FakeLambdaContext())
        requests = slack.received()
    assert outcome == {"delivered": 1, "failed": 0, "skipped": 0}
    assert len(requests) == 3
    assert len({r.body for r in requests}) == 1, "each retry sends the same message"


def test_honours_retry_after_on_429(
    webhook: Callable[[str], str], alerts: Callable[[], Handler]
) -> None:
    with ScriptedServer((429, {"Retry-After": "1"})) as slack:
        webhook(slack.url)
        handler = alerts()
        started = time.monotonic()
        outcome = handler(load_event(ALARM_EVENT), FakeLambdaContext())
        elapsed = time.monotonic() - started
        assert len(slack.received()) == 2
    assert outcome["delivered"] == 1
    assert elapsed >= 1.0, "retried before Slack's Retry-After"


def test_gives_up_within_the_bound_without_raising(
    webhook: Callable[[str], str],
    alerts: Callable[[], Handler],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Slack down for good: attempts stop TIMEOUT_MARGIN (5 s) before the function's timeout
    (7 s left here, so a 2-second budget), and the handler returns normally."""
    from mysoulmate.runtime.alerts import TIMEOUT_MARGIN_SECONDS

    remaining_ms = int((TIMEOUT_MARGIN_SECONDS + 2) * 1000)
    with ScriptedServer(*[(503, {})] * 100) as slack:
        webhook(slack.url)
        handler = alerts()
        started = time.monotonic()
        outcome = handler(load_event(ALARM_EVENT), ShortContext(remaining_ms=remaining_ms))
        elapsed = time.monotonic() - started
        attempts = len(slack.received())
    assert outcome == {"delivered": 0, "failed": 1, "skipped": 0}
    assert attempts >= 2, "a transient failure is retried"
    assert elapsed < 2.0 + 0.5, f"took {elapsed:.2f} s, beyond the 2 s budget"
    (error,) = [line for line in logged(capsys.readouterr().out) if line["level"] == "ERROR"]
    assert error["message"] == "Gave up posting to Slack"
    assert error["attempts"] == attempts
    assert error["status"] == 503


def test_connection_errors_are_retried_then_given_up(
    ssm: Any, configured: None, alerts: Callable[[], Handler]
) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ssm.put_parameter(Name=PARAMETER, Value=f"http://127.0.0.1:{port}/hook", Type="SecureString")
    outcome = alerts()(load_event(ALARM_EVENT), ShortContext(remaining_ms=6_000))
    assert outcome == {"delivered": 0, "failed": 1, "skipped": 0}


def test_a_rejected_webhook_is_not_retried(
    webhook: Callable[[str], str], alerts: Callable[[], Handler]
) -> None:
    """404 no_service (a removed webhook) will not heal by retrying."""
    with ScriptedServer((404, {})) as slack:
        webhook(slack.url)
        outcome = alerts()(load_event(ALARM_EVENT), FakeLambdaContext())
        assert len(slack.received()) == 1
    assert outcome == {"delivered": 0, "failed": 1, "skipped": 0}


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "event",
    [
        {},
        None,
        [],
        "not an event",
        {"Records": "nope"},
        {"Records": []},
        {"Records": [{"Sns": {"Subject": "no message"}}, 42]},
    ],
    ids=["empty", "none", "list", "string", "records-not-a-list", "no-records", "no-sns"],
)
def test_a_malformed_event_is_logged_not_raised(
    event: Any,
    webhook: Callable[[str], str],
    alerts: Callable[[], Handler],
    capsys: pytest.CaptureFixture[str],
) -> None:
    with CaptureServer() as slack:
        webhook(slack.url)
        outcome = alerts()(copy.deepcopy(event), FakeLambdaContext())
        assert slack.received() == []
    assert outcome["delivered"] == outcome["failed"] == 0
    assert outcome["skipped"] >= 1
    warnings = [line for line in logged(capsys.readouterr().out) if line["level"] == "WARNING"]
    assert warnings, "a malformed event must leave a trace in the logs"


@pytest.mark.parametrize(
    ("message", "shown"),
    [
        ("Plain text from a test publish <3 & more", "Plain text from a test publish &lt;3 &amp;"),
        ('{"hello": "world"}', '{"hello": "world"}'),
        ('{"AlarmName": "half an alarm"', '{"AlarmName": "half an alarm"'),
        ("", "(empty message)"),
    ],
    ids=["text", "other-json", "broken-json", "empty"],
)
def test_anything_else_on_the_topic_becomes_a_fallback_message(
    message: str, shown: str, webhook: Callable[[str], str], alerts: Callable[[], Handler]
) -> None:
    event = load_event(ALARM_EVENT)
    event["Records"][0]["Sns"]["Message"] = message
    event["Records"][0]["Sns"]["Subject"] = "Manual test"
    with CaptureServer(body=b"ok") as slack:
        webhook(slack.url)
        assert alerts()(event, FakeLambdaContext())["delivered"] == 1
        payload = slack.wait_for()[0].json()
    assert payload["text"] == ":envelope: Manual test (not a CloudWatch alarm)"
    (attachment,) = payload["attachments"]
    header, content, origin = attachment["blocks"]
    assert header["text"]["text"] == payload["text"]
    assert shown in content["text"]["text"]
    assert "mysoulmate-prod-alerts" in origin["elements"][0]["text"]  # where it came from


def test_a_missing_webhook_parameter_is_logged_not_raised(
    ssm: Any, configured: None, alerts: Callable[[], Handler], capsys: pytest.CaptureFixture[str]
) -> None:
    outcome = alerts()(load_event(ALARM_EVENT), FakeLambdaContext())
    assert outcome == {"delivered": 0, "failed": 1, "skipped": 0}
    (error,) = [line for line in logged(capsys.readouterr().out) if line["level"] == "ERROR"]
    assert error["message"] == "Cannot post alarms to Slack"
    assert PARAMETER in error["reason"]


def test_the_webhook_is_read_once_decrypted_and_cached(
    webhook: Callable[[str], str], alerts: Callable[[], Handler]
) -> None:
    """Read at first use with decryption, then served from the cache (one SSM call)."""
    from aws_lambda_powertools.utilities import parameters

    calls: list[dict[str, Any]] = []
    provider = parameters.SSMProvider()
    provider.client.meta.events.register(
        "provide-client-params.ssm.GetParameter", lambda params, **_: calls.append(dict(params))
    )
    parameters.base.DEFAULT_PROVIDERS["ssm"] = provider
    with CaptureServer(body=b"ok") as slack:
        webhook(slack.url)
        handler = alerts()
        for _ in range(2):
            handler(load_event(ALARM_EVENT), FakeLambdaContext())
        assert len(slack.wait_for(count=2)) == 2
    assert calls == [{"Name": PARAMETER, "WithDecryption": True}]


@pytest.mark.parametrize(
    "value", ["ftp://planted-secret.example/hook", "http://planted-secret:port/hook", "junk"]
)
def test_a_webhook_that_is_not_an_http_url_is_refused_without_quoting_it(
    value: str,
    ssm: Any,
    configured: None,
    alerts: Callable[[], Handler],
    capsys: pytest.CaptureFixture[str],
) -> None:
    ssm.put_parameter(Name=PARAMETER, Value=value, Type="SecureString")
    outcome = alerts()(load_event(ALARM_EVENT), FakeLambdaContext())
    assert outcome == {"delivered": 0, "failed": 1, "skipped": 0}
    out = capsys.readouterr()
    assert "planted-secret" not in out.out + out.err
    assert "junk" not in out.out + out.err
