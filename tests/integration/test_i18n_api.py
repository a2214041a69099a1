"""The i18n endpoints and the localized API: what a client in any language gets back."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from mysoulmate.i18n.translate import catalogs, t

from tests.support.helpers import auth_header

I18N = "/api/v1/i18n"
TRACK = "/api/v1/analytics/track"


def error_of(response: Any) -> dict[str, Any]:
    error: dict[str, Any] = response.json()["error"]
    assert set(error) == {"code", "message", "details", "requestId"}
    return error


def test_a_validation_error_comes_back_in_japanese(client: TestClient) -> None:
    headers = {**auth_header("alice"), "Accept-Language": "ja,en;q=0.5"}
    response = client.post(TRACK, json={"properties": "nope"}, headers=headers)
    assert response.status_code == 422
    assert response.headers["content-language"] == "ja"
    assert "Accept-Language" in response.headers["vary"]
    error = error_of(response)
    assert error["code"] == "validation_error"
    assert error["message"] == t("errors.validation_error", "ja", fields="event, properties")
    by_field = {d["field"]: d for d in error["details"]}
    assert by_field["event"]["message"] == t("validation.missing", "ja")
    assert by_field["properties"]["message"] == t("validation.dict_type", "ja")
    assert by_field["properties"]["message"] != t("validation.dict_type", "en")


def test_constraint_values_fill_the_localized_field_message(client: TestClient) -> None:
    headers = {**auth_header("alice"), "X-Locale": "de"}
    response = client.post(TRACK, json={"event": "x" * 300}, headers=headers)
    (detail,) = error_of(response)["details"]
    # A count by CLDR plural rules ("höchstens 255 Zeichen"), the constraint as the count.
    assert detail["message"] == t("validation.string_too_long", "de", 255, max_length=255)
    assert "255" in detail["message"]


@pytest.mark.parametrize(
    ("headers", "query", "expected"),
    [
        ({"Accept-Language": "fr-CA,en;q=0.5"}, "", "fr"),
        ({"Accept-Language": "fr", "X-Locale": "es"}, "", "es"),
        ({"Accept-Language": "fr", "X-Locale": "es"}, "?lang=it", "it"),
        ({"Accept-Language": "ko"}, "", "en"),
    ],
)
def test_every_error_is_localized_by_the_negotiated_locale(
    client: TestClient, headers: dict[str, str], query: str, expected: str
) -> None:
    response = client.get(f"/api/v1/analytics/dashboard{query}", headers=headers)
    assert response.status_code == 401
    assert response.headers["content-language"] == expected
    assert error_of(response)["message"] == t("errors.unauthorized", expected)


def test_locales_lists_names_completeness_and_direction(client: TestClient) -> None:
    response = client.get(f"{I18N}/locales")
    assert response.status_code == 200
    body = response.json()
    assert body["default"] == "en"
    by_code = {entry["code"]: entry for entry in body["locales"]}
    assert list(by_code) == ["en", "fr", "es", "de", "it", "pt", "ja", "zh"]
    assert by_code["ja"]["name"] == "Japanese"
    assert by_code["ja"]["nativeName"] == "日本語"
    assert by_code["fr"]["nativeName"] == "français"
    assert {e["direction"] for e in body["locales"]} == {"ltr"}
    assert {e["completeness"] for e in body["locales"]} == {100.0}


def test_translations_carry_an_etag_and_answer_304(client: TestClient) -> None:
    response = client.get(f"{I18N}/translations/fr")
    assert response.status_code == 200
    assert response.json() == json.loads(catalogs().get("fr").raw)
    etag = response.headers["etag"]
    assert "max-age" in response.headers["cache-control"]
    again = client.get(f"{I18N}/translations/fr", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    other = client.get(f"{I18N}/translations/de", headers={"If-None-Match": etag})
    assert other.status_code == 200


def test_one_namespace_of_a_catalog(client: TestClient) -> None:
    response = client.get(f"{I18N}/translations/es", params={"namespace": "errors"})
    assert response.status_code == 200
    assert response.json()["not_found"] == t("errors.not_found", "es")
    assert response.headers["etag"] != client.get(f"{I18N}/translations/es").headers["etag"]


def test_translate_one_string_with_count_and_params(client: TestClient) -> None:
    response = client.get(
        f"{I18N}/translate", params={"key": "chat.messagesUnread", "locale": "fr", "count": 2}
    )
    assert response.status_code == 200
    assert response.json()["text"] == t("chat.messagesUnread", "fr", count=2)
    as_json = client.get(
        f"{I18N}/translate",
        params={"key": "errors.invalid_token", "locale": "de", "params": '{"reason": "x"}'},
    )
    pairs = client.get(
        f"{I18N}/translate",
        params={"key": "errors.invalid_token", "locale": "de", "param.reason": "x"},
    )
    assert (
        as_json.json()["text"]
        == pairs.json()["text"]
        == t("errors.invalid_token", "de", reason="x")
    )
    negotiated = client.get(
        f"{I18N}/translate", params={"key": "common.save"}, headers={"Accept-Language": "zh-TW"}
    )
    assert negotiated.json() == {
        "key": "common.save",
        "locale": "zh",
        "count": None,
        "text": t("common.save", "zh"),
    }


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/translations/xx", 404, "unknown_locale"),
        ("/translations/fr?namespace=nope", 404, "unknown_namespace"),
        ("/translate?key=common.save&locale=klingon", 422, "unknown_locale"),
        ("/translate?key=no.such.key&locale=fr", 404, "unknown_key"),
        ("/translate?key=common.save&params=%7Bbad", 422, "invalid_params"),
        ("/translate?key=common.save&params=%5B1%5D", 422, "invalid_params"),
        ('/translate?key=common.save&params={"a":{"b":1}}', 422, "invalid_params"),
        ("/translate", 422, "validation_error"),
        ("/translate?key=common.save&count=many", 422, "validation_error"),
    ],
)
def test_bad_i18n_requests_are_localized_4xx(
    client: TestClient, path: str, status: int, code: str
) -> None:
    response = client.get(I18N + path, headers={"Accept-Language": "it"})
    assert response.status_code == status
    error = error_of(response)
    assert error["code"] == code
    assert response.headers["content-language"] == "it"
    assert error["message"] != t(f"errors.{code}", "en", **{})  # Italian, not English
