"""Forwarding on AWS, in the template: a queue, a dead-letter queue and a forwarder function
per provider, alarms on both queues, secrets only by SSM parameter name and readable only by
the function that needs them, and (with aurora) the one way out to the internet.

The static checks evaluate the conditions for a parameter set first (`resolved`), as
CloudFormation does; the stack is then created in moto with forwarding on.
"""

from __future__ import annotations

import json
import warnings
from typing import Any

import boto3
import pytest
from mysoulmate.runtime.lambda_forwarder import deferral_seconds

from tests.infrastructure.test_template import (
    ARTIFACT_BUCKET,
    BACKENDS,
    DEPLOY_PARAMETERS,
    FORWARDER_FUNCTIONS,
    FORWARDING,
    MOTO_DROPPABLE_TYPES,
    STACK,
    TEMPLATE_PATH,
    _code_zip,
    _drop_unsupported_by_moto,
    _translate,
    console_script,
    effective_function,
    load_template,
    mapped,
    moto_environment,
    resolved,
    run_tool,
)

PROVIDERS = {"Mixpanel": "mixpanel", "Ga4": "ga4"}
ONLY = {
    "Mixpanel": {k: v for k, v in FORWARDING.items() if k.startswith("Mixpanel")},
    "Ga4": {k: v for k, v in FORWARDING.items() if k.startswith("Ga")},
}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


def forwarding_resources(stack: dict[str, Any]) -> set[str]:
    return {
        k
        for k in stack["Resources"]
        if any(k.startswith(f"{p}Forward") for p in PROVIDERS) or k in FORWARDER_FUNCTIONS
    }


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_forwarding_resources_unless_a_provider_is_named(
    template: dict[str, Any], backend: str
) -> None:
    plain = resolved(template, {"StorageBackend": backend})
    assert forwarding_resources(plain) == set()
    consumer = plain["Resources"]["ConsumerFunction"]["Properties"]
    assert not {"MIXPANEL_FORWARD_QUEUE_URL", "GA4_FORWARD_QUEUE_URL"} & set(
        consumer["Environment"]["Variables"]
    )
    # A GA4 measurement id without its API secret forwards nothing (and a Rule refuses it).
    half = resolved(template, {"StorageBackend": backend, "GaMeasurementId": "G-TEST12345"})
    assert forwarding_resources(half) == set()
    (rule,) = [r for r in template["Rules"].values() if "GaMeasurementId" in json.dumps(r)]
    assert "GaApiSecretParameter" in json.dumps(rule["Assertions"])


@pytest.mark.parametrize("provider", PROVIDERS)
def test_each_provider_alone_gets_its_own_queue_dlq_function_and_alarms(
    template: dict[str, Any], provider: str
) -> None:
    stack = resolved(template, {"StorageBackend": "dynamodb", **ONLY[provider]})
    made = forwarding_resources(stack)
    assert made == {
        f"{provider}ForwarderFunction",
        f"{provider}ForwarderLogGroup",
        f"{provider}ForwardQueue",
        f"{provider}ForwardDeadLetterQueue",
        f"{provider}ForwarderErrorsAlarm",
        f"{provider}ForwarderThrottlesAlarm",
        f"{provider}ForwardDeadLetterQueueAlarm",
        f"{provider}ForwardLagAlarm",
    }
    name = PROVIDERS[provider]
    variables = effective_function(stack, f"{provider}ForwarderFunction")["Environment"][
        "Variables"
    ]
    assert variables["FORWARD_PROVIDER"] == name
    assert variables[f"{name.upper()}_FORWARD_QUEUE_URL"] == {"Ref": f"{provider}ForwardQueue"}
    assert variables["FORWARD_DLQ_URL"] == {"Ref": f"{provider}ForwardDeadLetterQueue"}
    other = "GA" if provider == "Mixpanel" else "MIXPANEL"
    assert not [k for k in variables if k.startswith(other)], "the other provider's settings"
    consumer = effective_function(stack, "ConsumerFunction")["Environment"]["Variables"]
    assert consumer[f"{name.upper()}_FORWARD_QUEUE_URL"] == {"Ref": f"{provider}ForwardQueue"}


def test_forward_queues_ride_out_an_outage_then_dead_letter(template: dict[str, Any]) -> None:
    stack = resolved(template, {"StorageBackend": "dynamodb", **FORWARDING})
    timeout = mapped(template, {"Fn::FindInMap": ["Forwarder", "Limits", "TimeoutSeconds"]})
    for provider, name in PROVIDERS.items():
        function = effective_function(stack, f"{provider}ForwarderFunction")
        assert function["Timeout"] == {"Fn::FindInMap": ["Forwarder", "Limits", "TimeoutSeconds"]}
        queue = stack["Resources"][f"{provider}ForwardQueue"]["Properties"]
        assert queue["VisibilityTimeout"] >= 6 * timeout
        assert queue["SqsManagedSseEnabled"] is True
        assert queue["QueueName"] == {"Fn::Sub": f"${{AWS::StackName}}-forward-{name}"}
        receives = queue["RedrivePolicy"]["maxReceiveCount"]
        assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {
            "Fn::GetAtt": [f"{provider}ForwardDeadLetterQueue", "Arn"]
        }
        # The forwarder's deferrals between receives add up to far more than an hour's
        # outage before the last receive, and fit in the queue's retention.
        patience = sum(deferral_seconds(n) for n in range(1, receives))
        assert 12 * 3600 <= patience < queue["MessageRetentionPeriod"]
        dlq = stack["Resources"][f"{provider}ForwardDeadLetterQueue"]["Properties"]
        assert dlq["MessageRetentionPeriod"] == 14 * 24 * 3600
        assert dlq["RedriveAllowPolicy"]["redrivePermission"] == "byQueue"
        (source,) = [e["Properties"] for e in function["Events"].values() if e["Type"] == "SQS"]
        assert source["Queue"] == {"Fn::GetAtt": [f"{provider}ForwardQueue", "Arn"]}
        assert source["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
        assert source["ScalingConfig"]["MaximumConcurrency"] == 2


def test_deferral_grows_and_is_capped() -> None:
    assert [deferral_seconds(n) for n in (0, 1, 2, 3)] == [60, 60, 120, 240]
    assert deferral_seconds(7) == 3600
    assert deferral_seconds(1000) == 3600


def statements(function: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for p in function["Policies"] if "Statement" in p for s in p["Statement"]]


@pytest.mark.parametrize("backend", BACKENDS)
def test_forwarders_hold_only_the_permissions_they_use(
    template: dict[str, Any], backend: str
) -> None:
    stack = resolved(template, {"StorageBackend": backend, **FORWARDING})
    for provider in PROVIDERS:
        function = effective_function(stack, f"{provider}ForwarderFunction")
        allowed = {
            (s["Sid"], json.dumps(s["Action"]), json.dumps(s["Resource"]))
            for s in statements(function)
            if s["Effect"] == "Allow"
        }
        expected = {
            (
                "DeferRecordsOfItsQueue",
                '"sqs:ChangeMessageVisibility"',
                json.dumps({"Fn::GetAtt": [f"{provider}ForwardQueue", "Arn"]}),
            ),
            (
                "DeadLetterRefusedRecords",
                '"sqs:SendMessage"',
                json.dumps({"Fn::GetAtt": [f"{provider}ForwardDeadLetterQueue", "Arn"]}),
            ),
        }
        if backend == "dynamodb":
            actions = ["dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:BatchWriteItem"]
            table = {"Fn::GetAtt": ["EventsTable", "Arn"]}
            expected.add(
                ("ReadErasuresAndProfilesWriteTheLedger", json.dumps(actions), json.dumps(table))
            )
        assert allowed == expected, provider
        sam_templates = {k for p in function["Policies"] for k in p if k != "Statement"}
        assert sam_templates <= {
            "SSMParameterWithSlashPrefixReadPolicy",
            "AWSSecretsManagerGetSecretValuePolicy",
        }
        assert ("AWSSecretsManagerGetSecretValuePolicy" in sam_templates) is (backend == "aurora")
        assert ("VpcConfig" in function) is (backend == "aurora")


def test_the_consumer_may_send_to_the_forward_queues_and_reads_no_provider_secret(
    template: dict[str, Any],
) -> None:
    stack = resolved(template, {"StorageBackend": "dynamodb", **FORWARDING})
    consumer = effective_function(stack, "ConsumerFunction")
    sends = [
        p["SQSSendMessagePolicy"]["QueueName"]
        for p in consumer["Policies"]
        if "SQSSendMessagePolicy" in p
    ]
    assert sends == [
        {"Fn::GetAtt": ["MixpanelForwardQueue", "QueueName"]},
        {"Fn::GetAtt": ["Ga4ForwardQueue", "QueueName"]},
    ]
    variables = consumer["Environment"]["Variables"]
    assert not [
        k for k in variables if "TOKEN" in k or ("SECRET" in k and k != "DATABASE_SECRET_ARN")
    ]


def test_forward_alarms_watch_the_dlq_depth_and_the_lag(template: dict[str, Any]) -> None:
    stack = resolved(template, {"StorageBackend": "dynamodb", **FORWARDING})
    for provider in PROVIDERS:
        dlq = stack["Resources"][f"{provider}ForwardDeadLetterQueueAlarm"]["Properties"]
        assert dlq["MetricName"] == "ApproximateNumberOfMessagesVisible"
        assert dlq["Dimensions"] == [
            {
                "Name": "QueueName",
                "Value": {"Fn::GetAtt": [f"{provider}ForwardDeadLetterQueue", "QueueName"]},
            }
        ]
        assert (dlq["ComparisonOperator"], dlq["Threshold"]) == ("GreaterThanThreshold", 0)
        lag = stack["Resources"][f"{provider}ForwardLagAlarm"]["Properties"]
        assert lag["MetricName"] == "ApproximateAgeOfOldestMessage"
        assert lag["Dimensions"][0]["Value"] == {
            "Fn::GetAtt": [f"{provider}ForwardQueue", "QueueName"]
        }
        assert lag["Threshold"] == 900


def test_aurora_gets_a_nat_gateway_only_when_forwarding(template: dict[str, Any]) -> None:
    nat = {"NatGateway", "PublicSubnet", "InternetGateway", "PrivateDefaultRoute"}
    assert not nat & set(resolved(template, {"StorageBackend": "aurora"})["Resources"])
    assert not nat & set(resolved(template, FORWARDING)["Resources"])
    stack = resolved(template, {"StorageBackend": "aurora", **FORWARDING})
    assert nat <= set(stack["Resources"])
    route = stack["Resources"]["PrivateDefaultRoute"]["Properties"]
    assert route == {
        "RouteTableId": {"Ref": "PrivateRouteTable"},
        "DestinationCidrBlock": "0.0.0.0/0",
        "NatGatewayId": {"Ref": "NatGateway"},
    }
    # The public subnet holds the gateway only: nothing launched there gets a public address.
    assert stack["Resources"]["PublicSubnet"]["Properties"]["MapPublicIpOnLaunch"] is False


@pytest.mark.parametrize("backend", BACKENDS)
def test_cfn_lint_passes_with_forwarding(backend: str) -> None:
    parameters = [f"{k}={v}" for k, v in FORWARDING.items()]
    result = run_tool(
        [
            console_script("cfn-lint"),
            str(TEMPLATE_PATH),
            "--parameters",
            f"StorageBackend={backend}",
            "JwtIssuer=https://cognito-idp.us-east-1.amazonaws.com/us-east-1_Example",
            "JwtAudience=client-one",
            *parameters,
        ]
    )
    assert result.returncode == 0, f"cfn-lint ({backend}):\n{result.stdout}{result.stderr}"


def test_forwarding_stack_creates_in_moto(
    template: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from moto import mock_aws
    from mysoulmate.core.settings import load_settings

    moto_environment(monkeypatch)
    values = {**DEPLOY_PARAMETERS, **FORWARDING}
    cfn = resolved(_translate(template, values), values)
    dropped = _drop_unsupported_by_moto(cfn)
    assert {type_ for _, type_ in dropped} <= MOTO_DROPPABLE_TYPES
    assert {*FORWARDER_FUNCTIONS, "MixpanelForwardQueue", "Ga4ForwardQueue"} <= set(
        cfn["Resources"]
    )
    with mock_aws(), warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*not supported by moto.*")
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=ARTIFACT_BUCKET)
        for logical_id in cfn["Resources"]:
            s3.put_object(Bucket=ARTIFACT_BUCKET, Key=f"{logical_id}.zip", Body=_code_zip())
        cloudformation = boto3.client("cloudformation")
        cloudformation.create_stack(
            StackName=STACK,
            TemplateBody=json.dumps(cfn),
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in values.items()],
            Capabilities=["CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"],
        )
        stack = cloudformation.describe_stacks(StackName=STACK)["Stacks"][0]
        assert stack["StackStatus"] == "CREATE_COMPLETE", stack.get("StackStatusReason")
        created = {
            r["LogicalResourceId"]: r["PhysicalResourceId"]
            for r in cloudformation.describe_stack_resources(StackName=STACK)["StackResources"]
            if "PhysicalResourceId" in r
        }
        sqs, lambda_ = boto3.client("sqs"), boto3.client("lambda")
        consumer = lambda_.get_function_configuration(FunctionName=created["ConsumerFunction"])
        consumer_env = consumer["Environment"]["Variables"]
        for provider, name in PROVIDERS.items():
            queue_url = created[f"{provider}ForwardQueue"]
            attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])[
                "Attributes"
            ]
            dlq_url = created[f"{provider}ForwardDeadLetterQueue"]
            dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])[
                "Attributes"
            ]["QueueArn"]
            assert json.loads(attributes["RedrivePolicy"]) == {
                "deadLetterTargetArn": dlq_arn,
                "maxReceiveCount": 24,
            }
            assert consumer_env[f"{name.upper()}_FORWARD_QUEUE_URL"] == queue_url
            function = created[f"{provider}ForwarderFunction"]
            env = lambda_.get_function_configuration(FunctionName=function)["Environment"][
                "Variables"
            ]
            (mapping,) = lambda_.list_event_source_mappings(FunctionName=function)[
                "EventSourceMappings"
            ]
            assert mapping["EventSourceArn"] == attributes["QueueArn"]
            assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
            # The code accepts what the function is given.
            for key, value in env.items():
                monkeypatch.setenv(key, value)
            settings = load_settings()
            assert settings.forward_provider == name
            assert settings.forward_dlq_url == dlq_url
            for key in env:
                monkeypatch.delenv(key)
