"""Scheduled reports in the template: a private, encrypted bucket that expires them, two
schedules in a configurable time zone with retries and a dead-letter queue, a summary
function outside the VPC fed by the bucket's events, and least privilege for both."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.infrastructure.test_template import (
    BACKENDS,
    effective_function,
    load_template,
    resolved,
)


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


def test_the_bucket_is_encrypted_private_tls_only_and_expires_reports(
    template: dict[str, Any],
) -> None:
    bucket = template["Resources"]["ReportsBucket"]
    assert (bucket["DeletionPolicy"], bucket["UpdateReplacePolicy"]) == ("Retain", "Retain")
    props = bucket["Properties"]
    (rule,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    assert all(props["PublicAccessBlockConfiguration"].values())
    assert len(props["PublicAccessBlockConfiguration"]) == 4
    assert props["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    (expiry,) = props["LifecycleConfiguration"]["Rules"]
    assert expiry["ExpirationInDays"] == {"Ref": "ReportRetentionDays"}
    assert expiry["Status"] == "Enabled"
    assert props["NotificationConfiguration"] == {
        "EventBridgeConfiguration": {"EventBridgeEnabled": True}
    }
    (deny,) = template["Resources"]["ReportsBucketPolicy"]["Properties"]["PolicyDocument"][
        "Statement"
    ]
    assert (deny["Effect"], deny["Action"]) == ("Deny", "s3:*")
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_reports_run_daily_and_on_mondays_at_six_in_the_chosen_time_zone(
    template: dict[str, Any],
) -> None:
    events = template["Resources"]["ReportsFunction"]["Properties"]["Events"]
    schedules = {
        name: e["Properties"]
        for name, e in events.items()
        if e["Type"] == "ScheduleV2" and "period" in json.loads(e["Properties"]["Input"])
    }
    assert {n: s["ScheduleExpression"] for n, s in schedules.items()} == {
        "Daily": "cron(0 6 * * ? *)",
        "Weekly": "cron(0 6 ? * MON *)",
    }
    assert {json.loads(s["Input"])["period"] for s in schedules.values()} == {"day", "week"}
    for schedule in schedules.values():
        assert schedule["ScheduleExpressionTimezone"] == {"Ref": "ReportTimeZone"}
        assert schedule["DeadLetterConfig"] == {
            "Arn": {"Fn::GetAtt": ["ReportsDeadLetterQueue", "Arn"]}
        }
        assert schedule["RetryPolicy"]["MaximumRetryAttempts"] >= 1
    zone = template["Parameters"]["ReportTimeZone"]
    assert zone["Default"] == "UTC"
    import re

    pattern = re.compile(zone["AllowedPattern"])
    for good in ("UTC", "Europe/Paris", "America/Argentina/Buenos_Aires", "Etc/GMT+5"):
        assert pattern.fullmatch(good), good
    for bad in ("", "paris", "Europe/../x", "UTC; rm"):
        assert not pattern.fullmatch(bad), bad


def test_the_summary_function_reacts_to_a_stored_report_outside_the_vpc(
    template: dict[str, Any],
) -> None:
    function = template["Resources"]["ReportSummaryFunction"]["Properties"]
    assert function["VpcConfig"] == {"Ref": "AWS::NoValue"}
    (event,) = function["Events"].values()
    assert event["Type"] == "EventBridgeRule"
    pattern = event["Properties"]["Pattern"]
    assert pattern["source"] == ["aws.s3"]
    assert pattern["detail-type"] == ["Object Created"]
    assert pattern["detail"]["bucket"]["name"] == [{"Ref": "ReportsBucket"}]
    assert pattern["detail"]["object"]["key"] == [{"suffix": "/report.json"}]
    assert event["Properties"]["DeadLetterConfig"] == {
        "Arn": {"Fn::GetAtt": ["ReportsDeadLetterQueue", "Arn"]}
    }
    # The rule delivers failures under the queue's policy: only this account's rules.
    (statement,) = template["Resources"]["ReportsDeadLetterQueuePolicy"]["Properties"][
        "PolicyDocument"
    ]["Statement"]
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert statement["Condition"] == {
        "StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    }


def allowed(function: dict[str, Any]) -> dict[str, tuple[list[str], Any]]:
    statements = [s for p in function["Policies"] if "Statement" in p for s in p["Statement"]]
    return {
        s["Sid"]: (s["Action"] if isinstance(s["Action"], list) else [s["Action"]], s["Resource"])
        for s in statements
        if s["Effect"] == "Allow"
    }


@pytest.mark.parametrize("backend", BACKENDS)
def test_report_functions_hold_only_what_they_use(template: dict[str, Any], backend: str) -> None:
    stack = resolved(template, {"StorageBackend": backend})
    reports = effective_function(stack, "ReportsFunction")
    objects = {"Fn::Sub": "${ReportsBucket.Arn}/reports/*"}
    grants = allowed(reports)
    assert grants["StoreReports"] == (["s3:PutObject", "s3:GetObject"], objects)
    assert grants["ReadQueueDepths"] == (
        ["sqs:GetQueueAttributes"],
        [{"Fn::GetAtt": ["EventsDeadLetterQueue", "Arn"]}],
    )
    assert set(grants) == {"StoreReports", "ReadQueueDepths"}
    templates = {k for p in reports["Policies"] for k in p if k != "Statement"}
    expected = (
        {"DynamoDBReadPolicy"}
        if backend == "dynamodb"
        else {"AWSSecretsManagerGetSecretValuePolicy"}
    )
    assert templates == expected
    assert ("VpcConfig" in reports) is (backend == "aurora")
    summary = effective_function(stack, "ReportSummaryFunction")
    assert allowed(summary) == {
        "ReadReportsAndClaimTheSummary": (
            ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
            objects,
        )
    }
    assert "VpcConfig" not in summary


def test_report_failures_are_alarmed(template: dict[str, Any]) -> None:
    resources = template["Resources"]
    dlq = resources["ReportsDeadLetterQueueAlarm"]["Properties"]
    assert dlq["Dimensions"] == [
        {"Name": "QueueName", "Value": {"Fn::GetAtt": ["ReportsDeadLetterQueue", "QueueName"]}}
    ]
    assert (dlq["ComparisonOperator"], dlq["Threshold"]) == ("GreaterThanThreshold", 0)
    for function in ("Reports", "ReportSummary"):
        for metric in ("Errors", "Throttles"):
            props = resources[f"{function}{metric}Alarm"]["Properties"]
            assert props["MetricName"] == metric
            assert props["Dimensions"][0]["Value"] == {"Ref": f"{function}Function"}


def test_the_hourly_perf_check_is_scheduled_and_its_regressions_alarmed(
    template: dict[str, Any],
) -> None:
    events = template["Resources"]["ReportsFunction"]["Properties"]["Events"]
    check = events["PerfCheck"]["Properties"]
    assert events["PerfCheck"]["Type"] == "ScheduleV2"
    assert check["ScheduleExpression"] == "rate(1 hour)"
    assert json.loads(check["Input"]) == {"check": "perf"}
    assert check["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": ["ReportsDeadLetterQueue", "Arn"]}}
    alarm = template["Resources"]["ScreenRenderRegressionAlarm"]["Properties"]
    assert (alarm["Namespace"], alarm["MetricName"]) == ("MySoulmate", "PerfRegressedScreens")
    assert alarm["Dimensions"] == [{"Name": "service", "Value": "reports"}]
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanThreshold", 0)
    reports_env = template["Resources"]["ReportsFunction"]["Properties"]["Environment"]
    assert reports_env["Variables"]["POWERTOOLS_SERVICE_NAME"] == "reports"
    globals_env = template["Globals"]["Function"]["Environment"]["Variables"]
    assert globals_env["PERF_REGRESSION_THRESHOLD"] == {"Ref": "PerfRegressionThreshold"}
