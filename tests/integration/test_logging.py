"""Logs through the real Lambda handler: JSON lines carrying API Gateway's request id, DEBUG
only for sampled invocations, and no secret or personal data in any line, whichever way it
was logged (Powertools extras, the package's stdlib loggers, an exception's message)."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from mysoulmate.analytics import reporting
from mysoulmate.observability import powertools
from mysoulmate.observability.powertools import get_logger, redact, redact_log

from tests.support.aws import (
    API_REQUEST_ID,
    FakeLambdaContext,
    Queues,
    http_event,
)

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]
ALICE = {"sub": "alice", "roles": "[user]"}

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXNlY3JldA"
PASSWORD = "hunter2-correct-horse"
API_KEY = "sk_live_51HplantedKey"
COOKIE = "session=cookie-planted-value"
EMAIL = "alice.smith@example.com"
PHONE = "+14155550123"
PLANTED = (JWT, PASSWORD, API_KEY, "cookie-planted-value", EMAIL, PHONE, "415) 555-0199")


@pytest.fixture
def fresh_logger(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A Logger built inside the test, writing to the stdout pytest captures (Powertools
    binds a logger's handler to sys.stdout once per service name)."""
    powertools.get_logger.cache_clear()
    yield
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", f"logging-test-{uuid.uuid4().hex}")
    powertools.unroute_package_loggers()
    powertools.get_logger.cache_clear()


@pytest.fixture
def configured(
    lambda_env: Callable[..., None],
    events_table: str,
    queues: Queues,
    monkeypatch: pytest.MonkeyPatch,
    fresh_logger: None,
) -> Callable[..., None]:
    """The deployed configuration, then per-test logging variables; returns `set_env`."""
    lambda_env(queues.url)
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", f"logging-test-{uuid.uuid4().hex}")
    monkeypatch.delenv("POWERTOOLS_LOGGER_SAMPLE_RATE", raising=False)
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "INFO")

    def set_env(**values: str) -> None:
        for name, value in values.items():
            monkeypatch.setenv(name, value)

    return set_env


def lines_of(out: str) -> list[dict[str, Any]]:
    """Every line written, each of which must be one JSON object."""
    parsed = []
    for line in out.splitlines():
        if line.strip():
            parsed.append(json.loads(line))
    return parsed


def user_request() -> dict[str, Any]:
    event = http_event("GET", "/api/v1/analytics/user/alice", claims=ALICE)
    event["headers"]["authorization"] = f"Bearer {JWT}"
    event["headers"]["cookie"] = COOKIE
    event["cookies"] = [COOKIE]
    return event


def test_log_lines_are_json_with_the_correlation_id_and_nothing_secret(
    configured: Callable[..., None],
    load_function: Callable[[str], Handler],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    async def leaky_lookup(*args: Any, **kwargs: Any) -> Any:
        get_logger().info(
            f"looking up {EMAIL} with Authorization: Bearer {JWT}",
            extra={
                "headers": {"Authorization": f"Bearer {JWT}", "Cookie": COOKIE, "accept": "*/*"},
                "login": {"password": PASSWORD, "user": "alice"},
                "api_key": API_KEY,
                "contact": {"email": EMAIL, "phone": PHONE},
                "note": f"call (415) 555-0199 or {PHONE}, mail {EMAIL}",
                "query": f"user=alice&password={PASSWORD}&token={API_KEY}",
            },
        )
        logging.getLogger("mysoulmate.analytics.test").warning("profile of %s not cached", EMAIL)
        raise RuntimeError(f"storage refused {EMAIL}: password={PASSWORD} token {JWT}")

    monkeypatch.setattr(reporting, "user", leaky_lookup)
    # A fresh Lambda process starts cold; an earlier test in this process used that up.
    monkeypatch.setattr("aws_lambda_powertools.logging.logger.is_cold_start", True)
    handler = load_function("analytics")
    capsys.readouterr()

    response = handler(user_request(), FakeLambdaContext())

    assert response["statusCode"] == 500
    out = capsys.readouterr().out
    for secret in PLANTED:
        assert secret not in out, secret
    logs = [line for line in lines_of(out) if "level" in line]
    by_message = {str(line["message"]).split(" ")[0]: line for line in logs}
    assert {"looking", "profile", "unhandled"} <= set(by_message)
    for line in logs:
        assert line["correlation_id"] == API_REQUEST_ID
        assert line["cold_start"] is True
        assert line["function_request_id"] == FakeLambdaContext.aws_request_id
    looking = by_message["looking"]
    assert looking["message"] == "looking up [Filtered] with Authorization: [Filtered] [Filtered]"
    assert looking["headers"] == {
        "Authorization": "[Filtered]",
        "Cookie": "[Filtered]",
        "accept": "*/*",
    }
    assert looking["login"] == {"password": "[Filtered]", "user": "alice"}
    assert looking["api_key"] == "[Filtered]"
    assert looking["contact"] == {"email": "[Filtered]", "phone": "[Filtered]"}
    assert looking["note"] == "call [Filtered] or [Filtered], mail [Filtered]"
    assert looking["query"] == "user=alice&password=[Filtered]&token=[Filtered]"
    assert by_message["profile"]["level"] == "WARNING"
    assert by_message["profile"]["message"] == "profile of [Filtered] not cached"
    unhandled = by_message["unhandled"]
    assert unhandled["level"] == "ERROR"
    assert unhandled["exception_name"] == "RuntimeError"
    assert (
        "storage refused [Filtered]: password=[Filtered] token [Filtered]"
        in (unhandled["exception"])
    )


@pytest.mark.parametrize(("rate", "expect_debug"), [("1", True), ("0", False)])
def test_debug_lines_are_written_for_sampled_invocations_only(
    configured: Callable[..., None],
    load_function: Callable[[str], Handler],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    rate: str,
    expect_debug: bool,
) -> None:
    configured(POWERTOOLS_LOGGER_SAMPLE_RATE=rate)

    async def lookup(*args: Any, **kwargs: Any) -> Any:
        get_logger().debug("debug detail", extra={"user": "alice"})
        raise LookupError("not stored")

    monkeypatch.setattr(reporting, "user", lookup)
    handler = load_function("analytics")
    capsys.readouterr()

    for _ in range(2):  # the cold invocation, then a warm one (re-drawn by Powertools)
        handler(user_request(), FakeLambdaContext())

    logs = [line for line in lines_of(capsys.readouterr().out) if "level" in line]
    debug = [line for line in logs if line["message"] == "debug detail"]
    assert len(debug) == (2 if expect_debug else 0)
    for line in debug:
        assert line["level"] == "DEBUG"
        assert line["sampling_rate"] == rate
        assert line["correlation_id"] == API_REQUEST_ID


class Unserializable:
    """An object the formatter would write as str(): its text must be redacted too."""

    def __str__(self) -> str:
        return f"<Unserializable owner={EMAIL}>"


def test_a_log_dict_keeps_powertools_keys_and_redacts_the_rest() -> None:
    log = {
        "level": "INFO",
        "timestamp": "2026-01-31 12:00:00,123+0000",
        "function_arn": "arn:aws:lambda:us-east-1:123456789012:function:x",
        "xray_trace_id": "1-5759e988-bd862e3fe1be46a994272793",
        "correlation_id": "Jh5zfgx1IAMEVlw=",
        "message": f"sent to {EMAIL}",
        "password": PASSWORD,
        "extra": [{"X-Api-Key": API_KEY, "n": 1}, Unserializable()],
        "sessionId": "s-1",
    }
    assert redact_log(log) == {
        **{k: log[k] for k in ("level", "timestamp", "function_arn", "xray_trace_id")},
        "correlation_id": "Jh5zfgx1IAMEVlw=",
        "message": "sent to [Filtered]",
        "password": "[Filtered]",
        "extra": [{"X-Api-Key": "[Filtered]", "n": 1}, "<Unserializable owner=[Filtered]>"],
        "sessionId": "[Filtered]",
    }
    assert redact({"headers": {"Cookie": COOKIE, "accept": "*/*"}}) == {
        "headers": {"Cookie": "[Filtered]", "accept": "*/*"}
    }
