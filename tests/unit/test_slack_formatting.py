"""The Slack message an alarm notification becomes (and the card for anything else on the
alerts topic). Formatting only: nothing here opens a connection."""

from __future__ import annotations

import json
from typing import Any

import pytest
from mysoulmate.alerts.slack import HEADER_LIMIT, SECTION_LIMIT, message_for

from tests.support.helpers import load_event

TOPIC = "arn:aws:sns:us-east-1:123456789012:mysoulmate-prod-alerts"
CONSOLE = "https://us-east-1.console.aws.amazon.com/cloudwatch/home?region=us-east-1"


def alarm(**overrides: Any) -> dict[str, Any]:
    """The alarm notification of tests/events/sns-cloudwatch-alarm.json, as a dict."""
    record = load_event("sns-cloudwatch-alarm.json")["Records"][0]["Sns"]
    data: dict[str, Any] = json.loads(record["Message"])
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    [attachment] = message["attachments"]
    found: list[dict[str, Any]] = attachment["blocks"]
    return found


def header(message: dict[str, Any]) -> str:
    text: str = blocks(message)[0]["text"]["text"]
    return text


def body(message: dict[str, Any]) -> str:
    text: str = blocks(message)[1]["text"]["text"]
    return text


def fields(message: dict[str, Any]) -> dict[str, str]:
    """The field grid as {label: value} (each field is "*Label*\\nvalue")."""
    grid = blocks(message)[2]["fields"]
    pairs = (field["text"].split("\n", 1) for field in grid)
    return {label.strip("*"): value for label, value in pairs}


def button_url(message: dict[str, Any]) -> str:
    url: str = blocks(message)[3]["elements"][0]["url"]
    return url


def test_an_alarm_becomes_a_red_card_with_state_reason_and_details() -> None:
    record = load_event("sns-cloudwatch-alarm.json")["Records"][0]["Sns"]
    message = message_for(record["Message"], record["Subject"], record["TopicArn"])
    title = ":rotating_light: ALARM: mysoulmate-prod-consumer-errors"
    assert message["text"] == title
    assert message["attachments"][0]["color"] == "#d13212"
    assert message["attachments"][0]["fallback"] == title
    assert header(message) == title
    assert body(message) == (
        "*Whole consumer batches failed (crash or timeout; single bad records are reported as "
        "batch item failures and do not count). SQS redelivers them; after 5 receives they go "
        "to the DLQ.*\nThreshold Crossed: 1 out of the last 1 datapoints [3.0 (31/01/26 "
        "11:55:00)] was greater than the threshold (0.0) (minimum 1 datapoint for OK -&gt; "
        "ALARM transition)."
    )
    assert fields(message) == {
        "State": "OK → ALARM",
        "Since": "<!date^1769860841^{date_short_pretty} {time_secs}|2026-01-31 12:00:41 UTC>",
        "Metric": "AWS/Lambda Errors (FunctionName=mysoulmate-prod-ConsumerFunction-Ab12Cd34Ef56)",
        "Threshold": "SUM &gt; 0 for 1 x 300 s",
        "Region": "US East (N. Virginia) (us-east-1)",
        "Account": "123456789012",
    }
    assert button_url(message) == f"{CONSOLE}#alarmsV2:alarm/mysoulmate-prod-consumer-errors"
    assert blocks(message)[3]["elements"][0]["text"]["text"] == "Open in CloudWatch"


@pytest.mark.parametrize(
    ("old", "new", "emoji", "colour"),
    [
        ("ALARM", "OK", ":white_check_mark:", "#1d8102"),
        ("OK", "INSUFFICIENT_DATA", ":grey_question:", "#8d99a8"),
        ("OK", "SOMETHING_NEW", ":grey_question:", "#8d99a8"),
    ],
)
def test_each_state_has_its_emoji_and_colour(old: str, new: str, emoji: str, colour: str) -> None:
    message = message_for(alarm(OldStateValue=old, NewStateValue=new))
    assert message["text"] == f"{emoji} {new}: mysoulmate-prod-consumer-errors"
    assert message["attachments"][0]["color"] == colour
    assert fields(message)["State"] == f"{old} → {new}"


def test_an_already_parsed_alarm_is_recognised_too() -> None:
    message = message_for(alarm())
    assert message["text"] == ":rotating_light: ALARM: mysoulmate-prod-consumer-errors"


def test_reason_and_description_are_escaped_for_slack() -> None:
    message = message_for(
        alarm(AlarmDescription="p99 > 2 s & <rising>", NewStateReason="<!channel> & co")
    )
    assert body(message) == "*p99 &gt; 2 s &amp; &lt;rising&gt;*\n&lt;!channel&gt; &amp; co"


def test_missing_details_say_so() -> None:
    message = message_for(
        {"AlarmName": "bare", "NewStateValue": "ALARM", "StateChangeTime": "not a time"}
    )
    assert body(message) == "_no reason given_"
    assert fields(message) == {
        "State": "ALARM",
        "Since": "(not given)",
        "Metric": "(not given)",
        "Threshold": "(not given)",
        "Region": "(not given)",
        "Account": "(not given)",
    }
    assert button_url(message) == f"{CONSOLE}#alarmsV2:alarm/bare"


def test_the_console_link_follows_the_region_and_partition_of_the_alarm() -> None:
    name = "api 5xx/errors"
    china = message_for(
        alarm(AlarmName=name, AlarmArn=f"arn:aws-cn:cloudwatch:cn-north-1:1:alarm:{name}")
    )
    assert button_url(china) == (
        "https://cn-north-1.console.amazonaws.cn/cloudwatch/home?region=cn-north-1"
        "#alarmsV2:alarm/api%205xx%2Ferrors"
    )
    gov = message_for(alarm(AlarmArn="arn:aws-us-gov:cloudwatch:us-gov-west-1:1:alarm:x"))
    assert button_url(gov).startswith(
        "https://console.amazonaws-us-gov.com/cloudwatch/home?region=us-gov-west-1#"
    )
    no_arn = message_for(alarm(AlarmArn=None, Region=None), default_region="eu-west-1")
    assert button_url(no_arn).startswith(
        "https://eu-west-1.console.aws.amazon.com/cloudwatch/home?region=eu-west-1#"
    )
    assert fields(no_arn)["Region"] == "eu-west-1"


def test_thresholds_read_as_a_sentence() -> None:
    trigger = {
        "MetricName": "Duration",
        "Namespace": "AWS/Lambda",
        "ExtendedStatistic": "P99",
        "StatisticType": "ExtendedStatistic",
        "Threshold": 2500.5,
        "ComparisonOperator": "GreaterThanOrEqualToThreshold",
        "EvaluationPeriods": 5,
        "DatapointsToAlarm": 3,
        "Period": 60,
        "Dimensions": [{"Name": "FunctionName", "Value": "api"}],
    }
    message = message_for(alarm(Trigger=trigger))
    assert fields(message)["Threshold"] == "p99 ≥ 2500.5 for 3 of 5 x 60 s"
    assert fields(message)["Metric"] == "AWS/Lambda Duration (FunctionName=api)"


def test_a_metric_math_alarm_shows_the_expression_first() -> None:
    trigger = {
        "Metrics": [
            {
                "Id": "errors",
                "MetricStat": {
                    "Metric": {
                        "Namespace": "AWS/Lambda",
                        "MetricName": "Errors",
                        "Dimensions": [{"name": "FunctionName", "value": "api"}],
                    }
                },
            },
            {
                "Id": "calls",
                "MetricStat": {"Metric": {"Namespace": "AWS/Lambda", "MetricName": "Invocations"}},
            },
            {"Id": "rate", "Expression": "100 * errors / calls", "Label": "Error rate"},
        ],
        "Threshold": 5.0,
        "ComparisonOperator": "LessThanThreshold",
    }
    message = message_for(alarm(Trigger=trigger))
    assert fields(message)["Metric"] == (
        "rate = 100 * errors / calls “Error rate”\n"
        "errors: AWS/Lambda Errors (FunctionName=api)\n"
        "calls: AWS/Lambda Invocations"
    )
    assert fields(message)["Threshold"] == "&lt; 5"


def test_a_long_alarm_name_is_clipped_in_the_header_only() -> None:
    name = "x" * 300
    message = message_for(alarm(AlarmName=name))
    assert len(header(message)) == HEADER_LIMIT
    assert header(message).endswith("…")
    assert message["text"] == f":rotating_light: ALARM: {name}"


# -- anything else on the topic ---------------------------------------------------------


def test_plain_text_becomes_a_grey_fallback_card_shown_as_it_came() -> None:
    message = message_for("hello <world> & all", subject="Test", topic=TOPIC)
    title = ":envelope: Test (not a CloudWatch alarm)"
    assert message["text"] == title
    assert message["attachments"][0]["color"] == "#8d99a8"
    assert header(message) == title
    assert body(message) == "```hello &lt;world&gt; &amp; all```"
    assert blocks(message)[2]["elements"][0]["text"] == f"Received on `{TOPIC}`."


@pytest.mark.parametrize(
    ("payload", "shown"),
    [
        ('{"foo": 1}', '{"foo": 1}'),  # JSON, but not an alarm
        ({"AlarmName": "no-state"}, '{"AlarmName": "no-state"}'),
        ([1, 2], "[1, 2]"),
        ("", "(empty message)"),
    ],
)
def test_anything_that_is_not_an_alarm_is_still_delivered(payload: Any, shown: str) -> None:
    message = message_for(payload)
    assert message["text"] == ":envelope: Message (not a CloudWatch alarm)"
    assert body(message) == f"```{shown}```"
    assert blocks(message)[2]["elements"][0]["text"] == "Received on the alerts topic."


def test_a_huge_message_is_clipped_to_fit_a_slack_section() -> None:
    message = message_for("y" * 10_000)
    assert len(body(message)) <= SECTION_LIMIT
    assert body(message).endswith("…```")


def test_mentions_in_names_and_subjects_never_ping_the_channel() -> None:
    """Slack reads the notification text as mrkdwn: `<!channel>` would notify everyone."""
    fallback = message_for("hi", subject="<!channel> deploy")
    assert "<!channel>" not in fallback["text"]
    assert "&lt;!channel&gt;" in fallback["text"]
    assert "<!channel>" not in fallback["attachments"][0]["fallback"]
