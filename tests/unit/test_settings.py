"""Settings fail fast with a message naming the variable, and the CLI reports it."""

from __future__ import annotations

from pathlib import Path

import pytest
from mysoulmate.core.settings import SettingsError, load_settings
from mysoulmate.runtime.cli import main, parse_duration


@pytest.mark.parametrize(
    ("name", "value", "mentions"),
    [
        ("STORAGE_BACKEND", "mysql", "STORAGE_BACKEND"),
        ("QUEUE_VISIBILITY_TIMEOUT_SECONDS", "0", "QUEUE_VISIBILITY_TIMEOUT_SECONDS"),
        ("WORKER_BATCH_SIZE", "many", "WORKER_BATCH_SIZE"),
        ("EVENTS_QUEUE_URL", "my-queue", "EVENTS_QUEUE_URL"),
        ("JWT_SECRET", "short", "JWT_SECRET"),
    ],
)
def test_bad_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, mentions: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=mentions):
        load_settings()


def test_sqs_queue_needs_its_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUEUE_BACKEND", "sqs")
    with pytest.raises(SettingsError, match="EVENTS_QUEUE_URL"):
        load_settings()


def test_laptop_gets_a_private_random_secret_once(
    monkeypatch: pytest.MonkeyPatch, isolated_env: Path
) -> None:
    monkeypatch.delenv("JWT_SECRET")
    monkeypatch.setenv("STAGE", "local")
    first = load_settings().jwt_secret
    assert len(first) >= 32
    assert load_settings().jwt_secret == first
    assert (isolated_env / "jwt-secret").stat().st_mode & 0o777 == 0o600


def test_deployed_stage_without_a_key_refuses_to_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JWT_SECRET")
    monkeypatch.setenv("STAGE", "prod")
    with pytest.raises(SettingsError, match="JWT_SECRET"):
        load_settings()


def test_cli_exits_2_with_the_message(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("STORAGE_BACKEND", "mysql")
    assert main(["token", "--user", "u"]) == 2
    assert "STORAGE_BACKEND" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("15m", 900), ("1h", 3600), ("7d", 604800)]
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["1", "1w", "-1h", "0s", "31d"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(Exception, match="duration"):
        parse_duration(text)
