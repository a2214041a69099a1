"""The i18n Lambda function answers real API Gateway (HTTP API v2) events."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from mysoulmate.i18n.translate import t

from tests.support.aws import FakeLambdaContext, http_event

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


@pytest.fixture
def i18n(lambda_env: Callable[..., None], load_function: Callable[[str], Handler]) -> Handler:
    lambda_env("https://sqs.us-east-1.amazonaws.com/123456789012/unused")
    return load_function("i18n")


def test_locales_through_api_gateway(i18n: Handler) -> None:
    response = i18n(http_event("GET", "/api/v1/i18n/locales"), FakeLambdaContext())
    assert response["statusCode"] == 200
    codes = [entry["code"] for entry in json.loads(response["body"])["locales"]]
    assert codes == ["en", "fr", "es", "de", "it", "pt", "ja", "zh"]


def test_translate_in_the_negotiated_language_with_content_language(i18n: Handler) -> None:
    event = http_event("GET", "/api/v1/i18n/translate", query="key=common.save")
    event["headers"]["accept-language"] = "de-AT,de;q=0.9"
    response = i18n(event, FakeLambdaContext())
    assert response["statusCode"] == 200
    assert response["headers"]["content-language"] == "de"
    assert json.loads(response["body"])["text"] == t("common.save", "de")


def test_catalog_with_etag_then_304(i18n: Handler) -> None:
    first = i18n(http_event("GET", "/api/v1/i18n/translations/ja"), FakeLambdaContext())
    assert first["statusCode"] == 200
    assert json.loads(first["body"])["common"]["save"] == t("common.save", "ja")
    again = http_event("GET", "/api/v1/i18n/translations/ja")
    again["headers"]["if-none-match"] = first["headers"]["etag"]
    assert i18n(again, FakeLambdaContext())["statusCode"] == 304


def test_unknown_locale_is_a_localized_404(i18n: Handler) -> None:
    event = http_event("GET", "/api/v1/i18n/translations/xx")
    event["headers"]["accept-language"] = "fr"
    response = i18n(event, FakeLambdaContext())
    assert response["statusCode"] == 404
    error = json.loads(response["body"])["error"]
    assert error["code"] == "unknown_locale"
    assert error["message"] == t(
        "errors.unknown_locale", "fr", locale="xx", supported="en, fr, es, de, it, pt, ja, zh"
    )
