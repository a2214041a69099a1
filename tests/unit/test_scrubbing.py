"""What `scrubbing` removes before anything leaves the process, and what it keeps."""

from __future__ import annotations

import pytest
from mysoulmate.observability.scrubbing import FILTERED, scrub, scrub_text, scrub_user

JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSJ9."
    "Ueq2mspZnTJJC7WdFRNN2_r1XXTnazSXFbx4ihDhr4U"
)


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        (f"Authorization: Bearer {JWT}", JWT),
        ("authorization: bearer abcdef123456opaque", "abcdef123456opaque"),
        (f"token {JWT} rejected", JWT),
        ("Basic dXNlcjpodW50ZXIy", "dXNlcjpodW50ZXIy"),
        ("GET /login?user=alice&password=hunter2&x=1", "hunter2"),
        ("?api_key=ak-123456&lang=fr", "ak-123456"),
        ("?access_token=opaque-tok-1", "opaque-tok-1"),
        ('{"password": "hunter2", "event": "signup"}', "hunter2"),
        ("{'client_secret': 's3cr3t-value'}", "s3cr3t-value"),
        ("TrackRequest(properties={'apiKey': 'k-998877'})", "k-998877"),
        ("Cookie: session=ck-abc123; theme=dark", "ck-abc123"),
        ("x-api-key=ak-777", "ak-777"),
        ("postgresql://app:pw-Secret9@db.internal:5432/app", "pw-Secret9"),
        ("https://hooks.slack.com/services/T000/B000/XXXXSECRET", "XXXXSECRET"),
        ("key AKIAIOSFODNN7EXAMPLE leaked", "AKIAIOSFODNN7EXAMPLE"),
        ("xoxb-123456789012-abcdefABCDEF", "xoxb-123456789012-abcdefABCDEF"),
        ("sent to alice.smith+tag@example.co.uk today", "alice.smith+tag@example.co.uk"),
        ("?email=alice%40example.com", "alice%40example.com"),
        ("call +1 415 555 0142 now", "415 555 0142"),
        ("call (415) 555-0142", "555-0142"),
        ("tel +33 6 12 34 56 78", "12 34 56 78"),
        ("E.164 +14155550142", "14155550142"),
        ("from 203.0.113.7 via proxy", "203.0.113.7"),
    ],
)
def test_secrets_and_personal_data_in_text_are_filtered(text: str, secret: str) -> None:
    cleaned = scrub_text(text)
    assert secret not in cleaned
    assert FILTERED in cleaned


@pytest.mark.parametrize(
    "text",
    [
        "2026-01-31T12:00:00.123456Z",
        "2026-01-31 12:00:00",
        "request 3f0c1e2a-9b7d-4c1e-8f00-123456789012 failed",
        "took 0.123456789 s",
        "Jh5zfgx1IAMEVlw=",
        "arn:aws:lambda:us-east-1:123456789012:function:mysoulmate-analytics",
        "basic validation failed for field event",
        "the token expired",
        "python3.12 /opt/python/mysoulmate/api/analytics.py line 43",
        "Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0.6099.109",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert scrub_text(text) == text


def test_values_under_sensitive_keys_are_filtered_at_any_depth() -> None:
    event = {
        "request": {
            "url": "https://api.example.com/api/v1/analytics/track?password=hunter2",
            "query_string": "lang=fr&email=alice%40example.com&api_key=ak-1",
            "headers": {
                "Authorization": f"Bearer {JWT}",
                "Cookie": "session=ck-session-77",
                "X-Api-Key": "ak-1",
                "X-Auth-Token": "opaque",
                "X-Forwarded-For": "198.51.100.4",
                "User-Agent": "integration-test",
            },
            "cookies": {"session": "ck-session-77"},
            "data": {"event": "signup", "traits": {"email": "a@b.co", "phone": 5551234567}},
        },
        "extra": {"form": [{"user_password": "hunter2"}, ["secret", "shh-123"]]},
        "breadcrumbs": {"values": [{"message": "login for bob@example.com", "data": {"jwt": JWT}}]},
        "exception": {"values": [{"type": "RuntimeError", "value": f"bad token={JWT}"}]},
        "tags": {"request_id": "Jh5zfgx1IAMEVlw=", "locale": "fr"},
        "event_id": "0123456789abcdef0123456789abcdef",
    }

    cleaned = scrub(event)

    text = repr(cleaned)
    for secret in (
        "hunter2",
        "ak-1",
        JWT,
        "ck-session-77",
        "opaque",
        "198.51.100.4",
        "a@b.co",
        "5551234567",
        "shh-123",
        "bob@example.com",
        "alice%40example.com",
    ):
        assert secret not in text, secret
    headers = cleaned["request"]["headers"]
    assert headers["Authorization"] == FILTERED
    assert headers["User-Agent"] == "integration-test"
    assert cleaned["request"]["data"]["event"] == "signup"
    assert cleaned["extra"]["form"][1] == ["secret", FILTERED]
    assert cleaned["tags"] == {"request_id": "Jh5zfgx1IAMEVlw=", "locale": "fr"}
    assert cleaned["event_id"] == event["event_id"]
    assert cleaned["exception"]["values"][0]["type"] == "RuntimeError"
    assert (
        event["request"]["headers"]["Cookie"] == "session=ck-session-77"
    )  # the input is not changed


def test_header_pairs_and_bytes_are_scrubbed() -> None:
    headers = [(b"authorization", b"Bearer xyz123456"), (b"accept", b"application/json")]
    assert scrub(headers) == [(b"authorization", FILTERED), ("accept", "application/json")]
    assert scrub(b"password=hunter2") == f"password={FILTERED}"


def test_user_context_keeps_the_id_only() -> None:
    user = {"id": "alice", "email": "alice@example.com", "ip_address": "{{auto}}", "username": "A"}
    assert scrub_user(user) == {"id": "alice"}
    assert scrub_user({"ip_address": "203.0.113.7"}) == {}
    assert scrub_user(None) == {}
