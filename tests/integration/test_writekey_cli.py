"""`mysoulmate writekey create | list | revoke` on each storage backend the settings choose."""

from __future__ import annotations

import logging
import re

import pytest
from mysoulmate.analytics.write_keys import WRITE_KEYS, hash_key
from mysoulmate.runtime.backends import reset_backends, source_store
from mysoulmate.runtime.cli import main

from tests.support.postgres import truncate_all


@pytest.fixture(params=["sqlite", "dynamodb", "postgres"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The process configured for one storage backend (sqlite: the laptop defaults)."""
    if request.param == "dynamodb":
        table: str = request.getfixturevalue("events_table")
        monkeypatch.setenv("STORAGE_BACKEND", "dynamodb")
        monkeypatch.setenv("EVENTS_TABLE", table)
    elif request.param == "postgres":
        conninfo: str = request.getfixturevalue("postgres_database")
        truncate_all(conninfo)
        monkeypatch.setenv("STORAGE_BACKEND", "postgres")
        monkeypatch.setenv("DATABASE_URL", conninfo)
    reset_backends()
    return str(request.param)


def create(capsys: pytest.CaptureFixture[str], name: str, kind: str = "client") -> dict[str, str]:
    """Run `writekey create`; the fields it printed (source, name, kind, key)."""
    assert main(["writekey", "create", "--name", name, "--kind", kind]) == 0
    out = capsys.readouterr()
    assert "only time the key is shown" in out.err
    return dict(line.split(maxsplit=1) for line in out.out.splitlines())


def listing(capsys: pytest.CaptureFixture[str]) -> list[list[str]]:
    """`writekey list` as rows of cells (header first)."""
    assert main(["writekey", "list"]) == 0
    return [re.split(r" {2,}", line) for line in capsys.readouterr().out.splitlines()]


@pytest.mark.usefixtures("backend")
def test_create_list_revoke(capsys: pytest.CaptureFixture[str]) -> None:
    created = create(capsys, "ios")
    key, source_id = created["key"], created["source"]
    assert (created["name"], created["kind"]) == ("ios", "client")
    assert re.fullmatch(r"wk_[A-Za-z0-9_-]{32}", key)
    # What the CLI stored authenticates that key, as the ingest path will look it up.
    assert WRITE_KEYS.lookup(source_store(), key) is not None

    header, row = listing(capsys)
    assert header == ["ID", "NAME", "KIND", "KEY", "CREATED", "REVOKED"]
    assert row[:4] == [source_id, "ios", "client", f"{key[:7]}…"]
    assert row[5] == "-"

    assert main(["writekey", "revoke", source_id]) == 0
    assert f"revoked source {source_id} (ios)" in capsys.readouterr().out
    _, row = listing(capsys)
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ", row[5])

    assert main(["writekey", "revoke", source_id]) == 0
    assert "already revoked at " + row[5] in capsys.readouterr().out
    WRITE_KEYS.forget()
    assert WRITE_KEYS.lookup(source_store(), key) is None


@pytest.mark.usefixtures("backend")
def test_the_key_is_printed_once_and_never_listed_or_logged(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        key = create(capsys, "billing", "server")["key"]
        listed = "\n".join("  ".join(row) for row in listing(capsys))

    assert key not in listed
    assert hash_key(key) not in listed
    assert "billing" in listed
    # Every logger at DEBUG (botocore's request bodies included): the key is in none of them.
    logged = "\n".join(record.getMessage() + str(record.__dict__) for record in caplog.records)
    assert "write key created" in logged
    assert key not in logged
    assert key[7:] not in logged  # nor its secret part after the hint
    ours = [r for r in caplog.records if r.name.startswith("mysoulmate")]
    assert hash_key(key) not in "\n".join(str(record.__dict__) for record in ours)


def test_list_with_no_sources(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["writekey", "list"]) == 0
    assert capsys.readouterr().out == "no sources\n"


@pytest.mark.usefixtures("backend")
def test_revoking_an_unknown_id_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    create(capsys, "ios")

    assert main(["writekey", "revoke", "no-such-source"]) == 1
    out = capsys.readouterr()
    assert out.err == (
        "mysoulmate: no source with id 'no-such-source' (see `mysoulmate writekey list`)\n"
    )
    assert listing(capsys)[1][5] == "-"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--name", "   ", "--kind", "client"], "name must be 1 to 100 characters"),
        (["--name", "x" * 101, "--kind", "server"], "name must be 1 to 100 characters"),
    ],
)
def test_an_invalid_name_exits_2_and_stores_nothing(
    capsys: pytest.CaptureFixture[str], arguments: list[str], message: str
) -> None:
    assert main(["writekey", "create", *arguments]) == 2
    assert capsys.readouterr().err == f"mysoulmate: {message}\n"
    assert source_store().list_sources() == []


def test_an_unknown_kind_is_refused_by_the_parser(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["writekey", "create", "--name", "ios", "--kind", "mobile"])
    assert exited.value.code == 2
    assert "invalid choice: 'mobile'" in capsys.readouterr().err
