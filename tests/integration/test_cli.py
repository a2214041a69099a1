"""`mysoulmate` on Typer: each command driven through Typer's CliRunner (stdout and stderr
apart), its exit codes (0 / 1 failure / 2 usage), one-line errors, `--debug`, and progress
bars that are drawn on a terminal only. Dead letters: test_cli_dlq.py; serve and worker as
processes: tests/e2e/test_cli_processes.py; writekey: test_writekey_cli.py."""

from __future__ import annotations

import csv
import io
import json
import os
import pty
import re
import select
import subprocess
import time
from pathlib import Path

import pytest
from mysoulmate.analytics.gdpr import CSV_COLUMNS
from mysoulmate.analytics.models import Profile
from mysoulmate.runtime.backends import event_store, reset_backends
from mysoulmate.runtime.cli import app
from typer.testing import CliRunner, Result

from tests.support.messages import jan, track
from tests.support.postgres import require_postgres
from tests.support.server import BIN, ROOT

UNREACHABLE = "postgresql://app:Sup3rSecretPw@127.0.0.1:1/analytics?connect_timeout=2"
COMMANDS = [
    ["serve"],
    ["worker"],
    ["token"],
    ["migrate"],
    ["seed"],
    ["openapi"],
    ["i18n", "check"],
    ["export"],
    ["erase"],
    ["report"],
    ["dlq", "list"],
    ["dlq", "redrive"],
    ["writekey", "create"],
    ["writekey", "list"],
    ["writekey", "revoke"],
]


def run(*args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(app, list(args), input=stdin)


def one_line(text: str) -> str:
    """The only line of ``text``: errors are one line, no traceback."""
    lines = text.strip("\n").splitlines()
    assert len(lines) == 1, text
    assert "Traceback" not in text
    return lines[0]


# -- the command line itself --------------------------------------------------------------


def test_version() -> None:
    from importlib.metadata import version

    result = run("--version")
    assert result.exit_code == 0
    assert result.stdout == f"mysoulmate {version('mysoulmate')}\n"


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_help_with_an_example(command: list[str]) -> None:
    result = run(*command, "--help")
    assert result.exit_code == 0, result.output
    assert "Usage: mysoulmate " + " ".join(command) in result.stdout
    assert re.search(r"Examples?:", result.stdout), result.stdout
    assert "mysoulmate " + command[0] in result.stdout.split("Example", 1)[1]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["token"], "mysoulmate token: Missing option '--user'."),
        (["token", "--user", "u", "--ttl", "1w"], "invalid duration '1w'"),
        (["seed", "--events", "0"], "must be at least 1"),
        (["export", "--user", "u", "--format", "xml"], "invalid choice: 'xml'"),
        (["report", "--period", "month"], "invalid choice: 'month'"),
        (["report", "--date", "2026-02-30"], "invalid date '2026-02-30'"),
        (["report", "--locale", "xx"], "invalid choice: 'xx'"),
        (["dlq", "list", "--limit", "x"], "invalid number 'x'"),
        (["serve", "--port", "70000"], "--port"),
        (["no-such-command"], "No such command 'no-such-command'"),
    ],
)
def test_a_usage_error_exits_2_with_one_line(args: list[str], message: str) -> None:
    result = run(*args)
    assert result.exit_code == 2
    line = one_line(result.stderr)
    assert message in line
    assert line.endswith("--help`)")
    assert result.stdout == ""


def test_an_invalid_environment_exits_2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STORAGE_BACKEND", "mysql")
    result = run("token", "--user", "u")
    assert result.exit_code == 2
    assert "STORAGE_BACKEND" in one_line(result.stderr)


@pytest.fixture
def unreachable_database(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STORAGE_BACKEND", "postgres")
    monkeypatch.setenv("DATABASE_URL", UNREACHABLE)
    reset_backends()


@pytest.mark.usefixtures("unreachable_database")
def test_a_failure_exits_1_with_one_line_and_no_secret() -> None:
    result = run("migrate")
    assert result.exit_code == 1
    line = one_line(result.stderr)
    assert line.startswith("mysoulmate: cannot migrate PostgreSQL: ")
    assert "127.0.0.1" in line
    assert "Sup3rSecretPw" not in result.stderr + result.stdout


@pytest.mark.usefixtures("unreachable_database")
def test_debug_shows_the_traceback() -> None:
    result = run("--debug", "migrate")
    assert result.exit_code == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert result.stderr.rstrip().splitlines()[-1].startswith("mysoulmate: cannot migrate")


def test_an_unexpected_error_is_one_line_too(monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(*_: object, **__: object) -> None:
        raise RuntimeError("disk on fire\nsecond line")

    monkeypatch.setattr("mysoulmate.api.auth.issue_token", explode)
    result = run("token", "--user", "u")
    assert result.exit_code == 1
    assert one_line(result.stderr) == (
        "mysoulmate: RuntimeError: disk on fire second line (--debug shows where)"
    )


# -- token, migrate, seed, openapi, i18n -------------------------------------------------


def test_token_prints_a_token_the_api_accepts() -> None:
    import jwt

    from tests.support.helpers import TEST_SECRET

    result = run("token", "--user", "carol", "--admin", "--ttl", "5m")
    assert result.exit_code == 0
    claims = jwt.decode(
        result.stdout.strip(), TEST_SECRET, algorithms=["HS256"], audience="mysoulmate"
    )
    assert claims["sub"] == "carol"
    assert "admin" in claims["roles"]
    assert claims["exp"] - claims["iat"] == 300


def test_migrate_needs_postgres() -> None:
    result = run("migrate")
    assert result.exit_code == 2
    assert one_line(result.stderr) == "mysoulmate: migrate needs STORAGE_BACKEND=postgres"


def test_migrate_migrates_then_has_nothing_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.support.postgres import scratch_database

    require_postgres()
    with scratch_database() as conninfo:
        monkeypatch.setenv("STORAGE_BACKEND", "postgres")
        monkeypatch.setenv("DATABASE_URL", conninfo)
        reset_backends()
        first, second = run("migrate"), run("migrate")
    assert first.exit_code == 0
    assert first.stdout.startswith("migrated ")
    assert second.exit_code == 0
    assert second.stdout.startswith("already at ")


def test_seed_stores_once_and_draws_no_progress_bar_off_a_terminal() -> None:
    first = run("seed", "--events", "2500", "--users", "50", "--days", "7")
    assert first.exit_code == 0, first.output
    assert first.stdout == "stored 2500 new events from 50 users over 7 days\n"
    assert first.stderr == ""  # no bar, no escape sequence: stderr is not a terminal
    again = run("seed", "--events", "2500", "--users", "50", "--days", "7")
    assert again.stdout == "stored 0 new events from 50 users over 7 days\n"


def _on_a_terminal(args: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    """Run ``mysoulmate args`` with stderr on a pseudo-terminal: (exit, stdout, terminal)."""
    controller, terminal = pty.openpty()
    proc = subprocess.Popen(
        [str(BIN / "mysoulmate"), *args],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=terminal,
        stdin=subprocess.DEVNULL,
    )
    os.close(terminal)
    shown = b""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([controller], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            shown += chunk
        elif proc.poll() is not None:
            break
    os.close(controller)
    stdout = proc.stdout.read().decode() if proc.stdout else ""
    return proc.wait(timeout=30), stdout, shown.decode(errors="replace")


@pytest.mark.slow
def test_seed_draws_a_progress_bar_on_a_terminal(isolated_env: Path) -> None:
    env = {**os.environ, "DATA_DIR": str(isolated_env), "COLUMNS": "100"}
    code, stdout, terminal = _on_a_terminal(["seed", "--events", "3000", "--users", "30"], env)
    assert code == 0, terminal
    assert stdout == "stored 3000 new events from 30 users over 30 days\n"  # not on stdout
    assert "seeding" in terminal
    assert "3000/3000" in terminal


@pytest.mark.slow
def test_export_on_a_terminal_draws_progress_and_keeps_stdout_for_the_data(
    isolated_env: Path,
) -> None:
    assert run("seed", "--events", "200", "--users", "10").exit_code == 0
    env = {**os.environ, "DATA_DIR": str(isolated_env), "COLUMNS": "100"}
    args = ["export", "--user", "user-000003", "--format", "csv"]
    code, stdout, terminal = _on_a_terminal(args, env)
    assert code == 0, terminal
    rows = list(csv.DictReader(io.StringIO(stdout)))
    assert len(rows) == 20
    assert "exporting user-000003" in terminal  # the bar, on stderr
    assert "exported 20 events of user-000003" in terminal
    assert "messageId" not in terminal  # the data, on stdout only


def test_openapi_prints_the_document() -> None:
    result = run("openapi")
    assert result.exit_code == 0
    spec = json.loads(result.stdout)
    assert spec["openapi"].startswith("3.")
    assert "/api/v1/analytics/track" in spec["paths"]


def test_i18n_check_passes_on_the_shipped_catalogs() -> None:
    result = run("i18n", "check", "fr", "ja")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("fr: ")
    assert "\nja: " in result.stdout


def test_i18n_check_exits_1_on_an_unknown_catalog() -> None:
    result = run("i18n", "check", "xx")
    assert result.exit_code == 1


# -- export and erase -----------------------------------------------------------------------


@pytest.fixture
def ann() -> list[str]:
    """Three events and a profile of user ann, one event of bob; ann's message ids."""
    store = event_store()
    messages = [track("ann", "signup", jan(1)), track("ann", "purchase", jan(2), revenue=9.99)]
    messages += [track("ann", "message_sent", jan(3)), track("bob", "signup", jan(1))]
    assert store.insert_events(messages).written == 4
    store.update_profile("ann", lambda _: Profile(userId="ann", traits={"plan": "pro"}))
    return [m.messageId for m in messages[:3]]


def _audit() -> list[tuple[str, str, str]]:
    return [(e.actor, e.action, e.subject) for e in event_store().list_audit(50, None).entries]


def test_export_csv_parses_and_is_audited(ann: list[str]) -> None:
    result = run("export", "--user", "ann", "--format", "csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert rows[0]["type"] == "profile"
    assert sorted(r["messageId"] for r in rows[1:]) == sorted(ann)
    assert json.loads(next(r for r in rows if r["event"] == "purchase")["properties"]) == {
        "revenue": 9.99
    }
    assert one_line(result.stderr) == "exported 3 events of ann"
    assert ("cli", "export", "ann") in _audit()


def test_export_json_to_a_file(ann: list[str], tmp_path: Path) -> None:
    (tmp_path / "exports").mkdir()
    out = tmp_path / "exports" / "ann.json"
    result = run("export", "--user", "ann", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    document = json.loads(out.read_text())
    assert document["userId"] == "ann"
    assert sorted(e["messageId"] for e in document["events"]) == sorted(ann)
    assert out.stat().st_mode & 0o777 == 0o600  # personal data
    assert [p.name for p in out.parent.iterdir()] == ["ann.json"]  # no temporary left


def test_erase_answered_no_erases_nothing(ann: list[str]) -> None:
    result = run("erase", "--user", "ann", stdin="n\n")
    assert result.exit_code == 1
    assert "Erase every event and the profile of user 'ann'?" in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last == "mysoulmate: nothing erased: 'ann' was not confirmed"
    assert len(event_store().list_events("ann", 10, None).events) == 3
    assert event_store().get_profile("ann") is not None
    assert ("cli", "delete", "ann") not in _audit()


def test_erase_confirmed_erases_and_is_audited(ann: list[str]) -> None:
    result = run("erase", "--user", "ann", stdin="y\n")
    assert result.exit_code == 0, result.output
    # (CliRunner echoes the answer on stdout, as a terminal would show it)
    erased = result.stdout.splitlines()[-1]
    assert erased.startswith("erased ann: 3 events and the profile; audit entry ")
    assert event_store().list_events("ann", 10, None).events == []
    assert event_store().get_profile("ann") is None
    assert len(event_store().list_events("bob", 10, None).events) == 1
    assert ("cli", "delete", "ann") in _audit()


def test_erase_with_yes_does_not_ask(ann: list[str]) -> None:
    result = run("erase", "--user", "ann", "--yes")
    assert result.exit_code == 0
    assert "Erase every" not in result.stderr
    assert event_store().list_events("ann", 10, None).events == []


# -- report -------------------------------------------------------------------------------


@pytest.mark.slow
def test_report_writes_a_period_once(tmp_path: Path) -> None:
    assert run("seed", "--events", "500", "--users", "20", "--days", "14").exit_code == 0
    out = tmp_path / "reports"
    today = time.strftime("%Y-%m-%d", time.gmtime())
    args = ["report", "--period", "day", "--date", today, "--out", str(out), "--locale", "fr"]

    first = run(*args)
    assert first.exit_code == 0, first.output
    directory = out / "daily" / today
    assert first.stdout.splitlines()[0] == f"daily/{today}: written to {directory}"
    assert {p.name for p in directory.iterdir()} == {"report.html", "report.json", "report.csv"}
    assert json.loads((directory / "report.json").read_text())["period"]
    assert 'lang="fr"' in (directory / "report.html").read_text()

    # Today has not ended: the report is partial, so the next run replaces it …
    again = run(*args)
    assert again.exit_code == 0
    assert "replaced partial" in again.stdout
    # … while a finished period is written once, unless forced.
    yesterday = ["report", "--out", str(out)]  # the last complete day, REPORT_LOCALE
    assert "written to" in run(*yesterday).stdout
    assert "already in" in run(*yesterday).stdout
    assert "forced" in run(*yesterday, "--force").stdout


def test_report_defaults_to_data_dir(isolated_env: Path) -> None:
    result = run("report", "--period", "week")
    assert result.exit_code == 0, result.output
    key = result.stdout.split(":", 1)[0]
    assert re.fullmatch(r"weekly/\d{4}-W\d\d", key)
    assert (isolated_env / "reports" / key / "report.html").is_file()
