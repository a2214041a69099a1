"""The PII policy: secrets never stored, contact details hashed or masked in events, profile
traits kept as sent so export and erasure cover them."""

from __future__ import annotations

import pytest
from mysoulmate.analytics.pii import (
    PiiPolicy,
    filter_event,
    filter_traits,
    holds_card_number,
    is_secret_key,
)

HASH = PiiPolicy()
MASK = PiiPolicy(contact_mode="mask")


@pytest.mark.parametrize(
    "key",
    [
        "password",
        "Password",
        "user_password",
        "apiKey",
        "api_key",
        "X-Api-Key",
        "client_secret",
        "access_token",
        "refreshToken",
        "authorization",
        "cvv",
        "cardNumber",
    ],
)
def test_credential_keys_are_secret(key: str) -> None:
    assert is_secret_key(key)


@pytest.mark.parametrize(
    "key", ["tokens_used", "token_count", "author", "passwordless", "email", "plan", "pinned"]
)
def test_ordinary_keys_are_not(key: str) -> None:
    assert not is_secret_key(key)


def test_card_numbers_need_the_luhn_check() -> None:
    assert holds_card_number("4111 1111 1111 1111")
    assert holds_card_number("paid with 4111-1111-1111-1111 today")
    assert not holds_card_number("4111 1111 1111 1112")  # fails Luhn
    assert not holds_card_number("order 1234567890123")  # 13 digits, fails Luhn


def test_secrets_and_cards_are_dropped_everywhere_in_an_event() -> None:
    properties, context, report = filter_event(
        {
            "password": "hunter2",
            "song": "Clair de lune",
            "payment": {"card": "4111111111111111", "accessToken": "t0k", "amount": 3},
            "list": ["ok", "4111 1111 1111 1111"],
        },
        {"headers": {"Authorization": "Bearer abc"}, "ip": "203.0.113.9"},
        HASH,
    )
    assert properties == {"song": "Clair de lune", "payment": {"amount": 3}, "list": ["ok"]}
    assert context == {"headers": {}, "ip": "203.0.113.9"}
    assert report.counts == {"secret": 3, "card": 2}


def test_contact_details_in_events_are_hashed_by_default() -> None:
    properties, _, report = filter_event(
        {"email": "Ann@Example.com", "other": "ann@example.com ", "phone": "+33 6 12 34 56 78"},
        {},
        HASH,
    )
    assert properties["email"] == properties["other"].strip()  # same person, same digest
    assert properties["email"].startswith("sha256:")
    assert "example" not in properties["email"]
    assert properties["phone"].startswith("sha256:")
    assert report.counts == {"email": 2, "phone": 1}


def test_contact_details_can_be_masked_instead() -> None:
    properties, _, _ = filter_event(
        {"email": "ann@example.com", "text": "write to bob@example.org!", "phone": "555-123-4567"},
        {},
        MASK,
    )
    assert properties == {
        "email": "a***@example.com",
        "text": "write to b***@example.org!",
        "phone": "555*******67",
    }


@pytest.mark.parametrize("value", ["2026-01-31", "192.168.100.200", "12345678", "v1.2.3", 42])
def test_dates_versions_and_numbers_are_left_alone(value: object) -> None:
    assert filter_event({"v": value}, {}, HASH)[0] == {"v": value}


def test_profile_traits_are_kept_as_sent_but_never_secrets() -> None:
    traits, report = filter_traits(
        {
            "email": "ann@example.com",
            "phone": "+33 6 12 34 56 78",
            "name": "Ann",
            "password": "hunter2",
            "favorite_contact": "bob@example.org",
        },
        HASH,
    )
    assert traits["email"] == "ann@example.com"
    assert traits["phone"] == "+33 6 12 34 56 78"
    assert traits["name"] == "Ann"
    assert "password" not in traits
    assert traits["favorite_contact"].startswith("sha256:")
    assert report.counts == {"secret": 1, "email": 1}


def test_the_policy_can_be_turned_off() -> None:
    off = PiiPolicy(enabled=False)
    raw = {"password": "x", "email": "ann@example.com"}
    assert filter_event(raw, {}, off)[0] == raw
    assert filter_traits(raw, off)[0] == raw
