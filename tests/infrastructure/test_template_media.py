"""The images group in the template: a public route to its own function outside any VPC,
private encrypted buckets (derivatives expire, they re-render on demand), read-only access to
originals, and signed URLs that cannot be required without a secret."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.infrastructure.test_template import effective_function, load_template, resolved


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


@pytest.mark.parametrize("bucket", ["MediaOriginalsBucket", "MediaDerivativesBucket"])
def test_buckets_are_private_encrypted_and_tls_only(template: dict[str, Any], bucket: str) -> None:
    props = template["Resources"][bucket]["Properties"]
    (rule,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    assert len(props["PublicAccessBlockConfiguration"]) == 4
    assert all(props["PublicAccessBlockConfiguration"].values())
    (deny,) = template["Resources"][f"{bucket}Policy"]["Properties"]["PolicyDocument"]["Statement"]
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    expiry = props.get("LifecycleConfiguration")
    if bucket == "MediaDerivativesBucket":
        (only,) = expiry["Rules"]
        assert only["ExpirationInDays"] == {"Ref": "MediaDerivativeDays"}
    else:
        assert expiry is None, "originals are never expired by the stack"


def test_the_function_reads_originals_and_writes_only_derivatives(
    template: dict[str, Any],
) -> None:
    function = effective_function(resolved(template, {}), "MediaFunction")
    assert "VpcConfig" not in function
    assert {"S3ReadPolicy": {"BucketName": {"Ref": "MediaOriginalsBucket"}}} in function["Policies"]
    assert {"S3CrudPolicy": {"BucketName": {"Ref": "MediaDerivativesBucket"}}} in function[
        "Policies"
    ]
    writes = [p for p in function["Policies"] if "S3CrudPolicy" in p or "S3WritePolicy" in p]
    assert len(writes) == 1
    (route,) = function["Events"].values()
    assert route["Properties"]["Path"] == "/api/v1/images/{key+}"
    assert route["Properties"]["Auth"] == {"Authorizer": "NONE"}
    assert function["MemorySize"] >= 1024


def test_signed_urls_need_a_secret_from_ssm(template: dict[str, Any]) -> None:
    signed = resolved(
        template,
        {"MediaRequireSigned": "true", "MediaSigningSecretParameter": "/mysoulmate/prod/media"},
    )
    function = effective_function(signed, "MediaFunction")
    variables = function["Environment"]["Variables"]
    assert variables["MEDIA_SIGNING_SECRET_PARAMETER"] == {"Ref": "MediaSigningSecretParameter"}
    assert "MEDIA_SIGNING_SECRET" not in variables  # never a value in the template
    read = {
        "SSMParameterWithSlashPrefixReadPolicy": {
            "ParameterName": {"Ref": "MediaSigningSecretParameter"}
        }
    }
    assert read in function["Policies"]
    (rule,) = [r for r in template["Rules"].values() if "MediaRequireSigned" in json.dumps(r)]
    assert "MediaSigningSecretParameter" in json.dumps(rule["Assertions"])
