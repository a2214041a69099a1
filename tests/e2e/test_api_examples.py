"""Every example of docs/api-examples.md, run against a real `mysoulmate serve`.

The convention (also written at the top of the document):

* a fenced block whose info string is ``sh example`` (or ``bash example``), ``js example`` or
  ``python example`` is run; a group is one ``sh example`` block followed by one ``js example``
  and one ``python example`` block;
* the line just before the ``sh example`` block is ``<!-- expect: 200 304 -->``: the statuses
  of the group's HTTP requests, in order, which each language must get exactly;
  ``<!-- expect: 202 429; env: NAME=value ... -->`` runs the group against a server of its own
  started with those variables;
* the ``sh setup`` block sets BASE, TOKEN and ADMIN; the ``js setup`` and ``python setup``
  blocks are put at the top of every JavaScript and Python example.

Each language runs the whole document in order on a fresh server, one process per block, so
that later examples see what earlier ones tracked (and erased). Statuses are observed, not
printed by the examples: curl is wrapped by a shell function adding ``-w`` (to stderr), and
``fetch`` and ``httpx.Client.send`` are wrapped the same way.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.support.helpers import require_service
from tests.support.server import BIN, ROOT, ServerProcess, mysoulmate_serve

pytestmark = pytest.mark.slow

DOC = ROOT / "docs" / "api-examples.md"
README = ROOT / "README.md"
LANGUAGES = ("sh", "js", "python")
ALIASES = {"bash": "sh", "javascript": "js", "py": "python"}
FENCE = re.compile(r"^```(?P<lang>[\w-]*)(?:[ \t]+(?P<kind>\S+))?[ \t]*$")
EXPECT = re.compile(
    r"^<!--\s*expect:\s*(?P<statuses>[\d\s]+?)\s*(?:;\s*env:\s*(?P<env>.*?))?\s*-->$"
)
STATUS_LINE = re.compile(r"^@@status (\d{3})$", re.MULTILINE)
BLOCK_TIMEOUT_SECONDS = 60
DRAIN_WITHIN_SECONDS = 15

# What each language runs before the example: a way to see every request's status.
HARNESS = {
    "sh": (
        "set -euo pipefail\n"
        "curl() { command curl --max-time 30 -w '%{stderr}@@status %{http_code}\\n' \"$@\"; }\n"
    ),
    "js": (
        "const __fetch = globalThis.fetch;\n"
        "globalThis.fetch = async (...args) => {\n"
        "  const response = await __fetch(...args);\n"
        "  process.stderr.write(`@@status ${response.status}\\n`);\n"
        "  return response;\n"
        "};\n"
    ),
    "python": (
        "import sys as __sys\n"
        "import httpx as __httpx\n"
        "__send = __httpx.Client.send\n"
        "def __recording_send(self, request, **kwargs):\n"
        "    response = __send(self, request, **kwargs)\n"
        "    print(f'@@status {response.status_code}', file=__sys.stderr, flush=True)\n"
        "    return response\n"
        "__httpx.Client.send = __recording_send\n"
    ),
}
SUFFIX = {"sh": ".sh", "js": ".mjs", "python": ".py"}


@dataclass
class Example:
    line: int  # of the `sh example` fence, 1-based
    expect: tuple[int, ...]
    env: dict[str, str]
    code: dict[str, str] = field(default_factory=dict)


@dataclass
class Document:
    setup: dict[str, str]
    examples: list[Example]


class ConventionError(ValueError):
    pass


def parse(text: str) -> Document:
    """The runnable blocks of the document, grouped; ConventionError names each mistake."""
    lines = text.splitlines()
    setup: dict[str, str] = {}
    examples: list[Example] = []
    problems: list[str] = []
    pending: tuple[int, re.Match[str]] | None = None  # an expect comment awaiting its block
    previous = ""  # the last non-blank line before a fence
    i = 0
    while i < len(lines):
        line = lines[i]
        fence = FENCE.match(line)
        if not fence:
            if line.strip():
                expect = EXPECT.match(line.strip())
                if expect:
                    if pending is not None:
                        problems.append(f"line {pending[0]}: expect comment without an example")
                    pending = (i + 1, expect)
                elif line.strip().startswith("<!--") and "expect" in line:
                    problems.append(f"line {i + 1}: malformed expect comment: {line.strip()}")
                previous = line.strip()
            i += 1
            continue
        start = i + 1
        body: list[str] = []
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i])
            i += 1
        if i == len(lines):
            problems.append(f"line {start}: unclosed code block")
        i += 1
        lang = ALIASES.get(fence["lang"], fence["lang"])
        kind = fence["kind"]
        code = "\n".join(body) + "\n"
        if kind is None:
            continue
        if kind not in {"example", "setup"} or lang not in LANGUAGES:
            problems.append(f"line {start}: unknown runnable block {line!r}")
            continue
        if kind == "setup":
            if lang in setup:
                problems.append(f"line {start}: a second {lang} setup block")
            if examples:
                problems.append(f"line {start}: the {lang} setup block comes after examples")
            setup[lang] = code
        elif lang == "sh":
            if pending is None or not EXPECT.match(previous):
                problems.append(f"line {start}: sh example without an expect comment before it")
            else:
                statuses = tuple(int(s) for s in pending[1]["statuses"].split())
                env = dict(pair.split("=", 1) for pair in (pending[1]["env"] or "").split())
                examples.append(Example(start, statuses, env, {"sh": code}))
                if re.search(r"(^|\s)(-w|--write-out)\b", code):
                    problems.append(f"line {start}: -w is the test's; the example may not use it")
            pending = None
        elif not examples or lang in examples[-1].code:
            problems.append(f"line {start}: {lang} example without an sh example before it")
        else:
            examples[-1].code[lang] = code
        previous = ""
    if pending is not None:
        problems.append(f"line {pending[0]}: expect comment without an example")
    problems += [f"no {lang} setup block" for lang in LANGUAGES if lang not in setup]
    for example in examples:
        missing = [lang for lang in LANGUAGES if lang not in example.code]
        if missing:
            problems.append(f"line {example.line}: the example has no {', '.join(missing)}")
    if problems:
        raise ConventionError("docs/api-examples.md:\n  " + "\n  ".join(problems))
    return Document(setup, examples)


# -- running ------------------------------------------------------------------------------


@dataclass
class Outcome:
    returncode: int
    statuses: tuple[int, ...]
    stdout: str
    stderr: str


def run_block(lang: str, code: str, env: dict[str, str], workdir: Path, name: str) -> Outcome:
    script = workdir / f"{name}{SUFFIX[lang]}"
    script.write_text(HARNESS[lang] + code, encoding="utf-8")
    command = {
        "sh": ["bash", str(script)],
        "js": ["node", str(script)],
        "python": [sys.executable, str(script)],
    }[lang]
    try:
        result = subprocess.run(
            command,
            env=env,
            cwd=workdir,
            capture_output=True,
            text=True,
            timeout=BLOCK_TIMEOUT_SECONDS,
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else exc.stderr or ""
        return Outcome(-1, _statuses(err), out, err + f"\n(timed out after {exc.timeout}s)")
    return Outcome(result.returncode, _statuses(result.stderr), result.stdout, result.stderr)


def _statuses(stderr: str) -> tuple[int, ...]:
    return tuple(int(code) for code in STATUS_LINE.findall(stderr))


def wait_for_queue_drain(base_url: str) -> None:
    """Tracked events are stored a moment after the 202: wait until the local queue is empty
    (`mysoulmate_queue_messages` counts messages waiting or in flight)."""
    deadline = time.monotonic() + DRAIN_WITHIN_SECONDS
    while time.monotonic() < deadline:
        try:
            text = httpx.get(f"{base_url}/metrics", timeout=5).text
        except httpx.TransportError:
            return  # the example that follows will say what is wrong with the server
        depth = re.search(r"^mysoulmate_queue_messages (\S+)$", text, re.MULTILINE)
        if depth is None or float(depth.group(1)) == 0:
            return
        time.sleep(0.05)


def tokens(setup: str, env: dict[str, str]) -> dict[str, str]:
    """BASE, TOKEN and ADMIN, as the document's own `sh setup` block sets them."""
    script = setup + 'printf "%s\\n" "$BASE" "$TOKEN" "$ADMIN"\n'
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=BLOCK_TIMEOUT_SECONDS,
    )
    assert result.returncode == 0, f"the sh setup block failed:\n{result.stderr}"
    values = dict(zip(("BASE", "TOKEN", "ADMIN"), result.stdout.split(), strict=True))
    assert all(values.values()), f"the sh setup block set nothing: {values}"
    return values


@contextmanager
def serving(data_dir: Path, **overrides: str) -> Iterator[ServerProcess]:
    server = mysoulmate_serve(data_dir, WORKER_ENABLED="true", **overrides).start()
    try:
        yield server
    finally:
        server.stop()


def run_document(lang: str, data_dir: Path, workdir: Path) -> None:
    """Every example of the document in ``lang``, in order, each checked for its statuses."""
    document = parse(DOC.read_text(encoding="utf-8"))
    workdir.mkdir(parents=True, exist_ok=True)
    failures: list[str] = []
    with serving(data_dir / "main") as server:
        env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
        env |= tokens(document.setup["sh"], {**env, "BASE": server.url})
        setup = "" if lang == "sh" else document.setup[lang]
        for number, example in enumerate(document.examples, 1):
            name = f"example-{number:02d}-line-{example.line}"
            if example.env:
                # A server of its own, fresh for each language: a limit's bucket starts full.
                with serving(data_dir / name, **example.env) as own:
                    outcome = run_block(
                        lang, setup + example.code[lang], env | {"BASE": own.url}, workdir, name
                    )
            else:
                wait_for_queue_drain(server.url)
                outcome = run_block(lang, setup + example.code[lang], env, workdir, name)
            if outcome.returncode != 0 or outcome.statuses != example.expect:
                failures.append(
                    f"{lang} example of docs/api-examples.md line {example.line}: expected "
                    f"statuses {list(example.expect)}, got {list(outcome.statuses)} "
                    f"(exit {outcome.returncode})\n--- stdout\n{outcome.stdout}"
                    f"--- stderr\n{outcome.stderr}"
                )
    assert not failures, "\n\n".join(failures)


# -- tests --------------------------------------------------------------------------------


def test_the_document_follows_the_convention_and_readme_links_it() -> None:
    document = parse(DOC.read_text(encoding="utf-8"))
    assert len(document.examples) >= 20
    statuses = {status for example in document.examples for status in example.expect}
    assert {200, 202, 304, 401, 403, 422, 429} <= statuses
    for name in ("BASE", "TOKEN", "ADMIN"):
        assert f"export {name}=" in document.setup["sh"]
    assert "(docs/api-examples.md)" in README.read_text(encoding="utf-8")


def test_parse_rejects_blocks_that_break_the_convention() -> None:
    setups = "".join(f"```{lang} setup\nx\n```\n" for lang in LANGUAGES)
    with pytest.raises(ConventionError, match="without an expect comment"):
        parse(setups + "```sh example\ncurl x\n```\n```js example\n```\n```python example\n```\n")
    with pytest.raises(ConventionError, match="has no js"):
        parse(setups + "<!-- expect: 200 -->\n```sh example\ncurl x\n```\n```python example\n```\n")
    with pytest.raises(ConventionError, match="unknown runnable block"):
        parse(setups + "```sh exmaple\ncurl x\n```\n")
    with pytest.raises(ConventionError, match="-w is the test's"):
        parse(
            setups + "<!-- expect: 200 -->\n```sh example\ncurl -w '%{http_code}' x\n```\n"
            "```js example\n```\n```python example\n```\n"
        )
    document = parse(
        setups + "<!-- expect: 202 429; env: A=1 B=2 -->\n```bash example\ncurl x\n```\n"
        "```js example\nfetch(x)\n```\n```python example\nhttpx.get(x)\n```\n"
    )
    assert document.examples[0].expect == (202, 429)
    assert document.examples[0].env == {"A": "1", "B": "2"}


def test_every_curl_example_answers_its_documented_status(
    isolated_env: Path, tmp_path: Path
) -> None:
    if shutil.which("curl") is None:
        require_service("curl is not installed: the cURL examples of docs/api-examples.md")
    if shutil.which("bash") is None:
        require_service("bash is not installed: the cURL examples of docs/api-examples.md")
    run_document("sh", isolated_env, tmp_path / "work")


def test_every_javascript_example_answers_its_documented_status(
    isolated_env: Path, tmp_path: Path
) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the JavaScript examples need Node 18+ (fetch)")
    version = subprocess.run([node, "--version"], capture_output=True, text=True).stdout
    if int(version.lstrip("v").split(".")[0]) < 18:
        pytest.skip(f"node {version.strip()} has no fetch: the examples need Node 18+")
    run_document("js", isolated_env, tmp_path / "work")


def test_every_python_example_answers_its_documented_status(
    isolated_env: Path, tmp_path: Path
) -> None:
    run_document("python", isolated_env, tmp_path / "work")
