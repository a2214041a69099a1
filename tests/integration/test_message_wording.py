"""Messages keep their word: validation messages agree with their number by CLDR rules, a
catalog answers in its own language, a whole count is shown whole."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.support.helpers import auth_header


def first_message(client: TestClient, body: dict[str, object], language: str) -> str:
    response = client.post(
        "/api/v1/analytics/track",
        json=body,
        headers={**auth_header("ann"), "Accept-Language": language},
    )
    assert response.status_code == 422
    message: str = response.json()["error"]["details"][0]["message"]
    return message


def test_validation_messages_are_pluralized_by_cldr_rules(client: TestClient) -> None:
    assert first_message(client, {"event": ""}, "fr") == "Doit comporter au moins 1 caractère."
    assert first_message(client, {"event": ""}, "en") == "Must have at least 1 character."
    long_id = {"event": "x", "messageId": "m" * 101}
    assert first_message(client, long_id, "fr") == "Doit comporter au plus 100 caractères."
    assert first_message(client, long_id, "es") == "Debe tener como máximo 100 caracteres."
    assert first_message(client, long_id, "ja") == "100 文字以内である必要があります。"


def test_a_catalog_answers_in_its_own_language(client: TestClient) -> None:
    response = client.get("/api/v1/i18n/translations/fr", headers={"Accept-Language": "en"})
    assert response.status_code == 200
    assert response.headers["Content-Language"] == "fr"


def test_a_whole_count_is_echoed_whole(client: TestClient) -> None:
    response = client.get(
        "/api/v1/i18n/translate", params={"key": "common.itemsSelected", "count": "3"}
    )
    assert response.status_code == 200
    assert '"count":3,' in response.text
    half = client.get(
        "/api/v1/i18n/translate", params={"key": "common.itemsSelected", "count": "1.5"}
    )
    assert half.json()["count"] == 1.5
