"""infrastructure/docker/Containerfile, read and run without a container engine.

No engine runs here, so the image is not built. Instead this module reads the Containerfile's
instructions and checks what the image promises (pinned base, non-root uid, read-only root
file system, no build tools in the final stage, exec-form entrypoints, a HEALTHCHECK without
curl), runs hadolint on it, and then runs each of its commands the way the image would:

* **the same installation.** The builder stage installs the requirement files named in its
  `pip install -r` lines and then the package itself with `--no-deps` into /opt/venv. This
  repository's .venv was installed from the same files (`make` installs
  layers/common/requirements.txt; the container's extra pins are checked below) and the same
  package source: every pin of every file the image installs must be installed in .venv at
  exactly that version, and every runtime dependency of the package must be pinned in one of
  them (with --no-deps nothing else reaches the image). .venv holds more (the dev tools),
  which the commands do not import; /opt/venv/bin ↦ .venv/bin.
* **the same commands and environment.** ENTRYPOINT + CMD (or a documented alternative
  command) with the final stage's ENV, PATH pointing at the venv, the working directory in
  DATA_DIR, and the settings a deployment gives (PostgreSQL, RabbitMQ, a JWT secret).

`serve` answers /health and /health/ready and accepts an event; `worker` consumes it into
PostgreSQL and stops cleanly on SIGTERM; `migrate` migrates a database of its own (twice:
the second run has nothing to do); `report` writes the last complete day's report.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shlex
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.support.helpers import TEST_SECRET, auth_header, require_service
from tests.support.postgres import require_postgres, scratch_database
from tests.support.server import free_port

ROOT = Path(__file__).resolve().parents[2]
CONTAINERFILE = ROOT / "infrastructure" / "docker" / "Containerfile"
VENV = ROOT / ".venv"
IMAGE_VENV = "/opt/venv"
RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"


# ---- reading the Containerfile ------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    stage: int  # 0 for the first FROM, 1 for the next, ...
    keyword: str
    args: str


def parse(text: str) -> list[Instruction]:
    """Instructions with their continuation lines joined; comments dropped."""
    instructions: list[Instruction] = []
    stage, pending = -1, ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # comments may also sit between continuation lines
        pending += line[:-1] + " " if line.endswith("\\") else line
        if line.endswith("\\"):
            continue
        keyword, _, args = pending.partition(" ")
        pending = ""
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        instructions.append(Instruction(stage, keyword, " ".join(args.split())))
    return instructions


INSTRUCTIONS = parse(CONTAINERFILE.read_text())
FINAL = max(i.stage for i in INSTRUCTIONS)


def final(keyword: str) -> list[str]:
    return [i.args for i in INSTRUCTIONS if i.stage == FINAL and i.keyword == keyword]


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list), args
    assert all(isinstance(v, str) for v in value), args
    return value


def image_env() -> dict[str, str]:
    """The final stage's ENV (KEY=value pairs, `$VAR` expanded from the earlier ones)."""
    env: dict[str, str] = {"PATH": "/usr/local/bin:/usr/bin:/bin"}  # the base image's
    for args in final("ENV"):
        for pair in shlex.split(args):
            key, _, value = pair.partition("=")
            env[key] = re.sub(r"\$\{?(\w+)\}?", lambda m: env.get(m.group(1), ""), value)
    return env


def copies() -> dict[str, str]:
    """Destination in the image → source in the repository, for the final stage's COPYs."""
    mapping = {}
    for args in final("COPY"):
        if not args.startswith("--from"):
            source, destination = args.split()
            mapping[destination] = source
    return mapping


def pip_installs() -> list[list[str]]:
    """The argument lists of every `pip install` of the build."""
    commands = []
    for instruction in INSTRUCTIONS:
        if instruction.keyword == "RUN":
            for command in instruction.args.split("&&"):
                words = shlex.split(command)
                if words[:2] == ["pip", "install"]:
                    commands.append(words[2:])
    return commands


# ---- what the image promises --------------------------------------------------------------------


def test_base_image_is_an_exact_python_312_slim_tag_in_every_stage() -> None:
    bases = [i.args for i in INSTRUCTIONS if i.keyword == "FROM"]
    assert len(bases) >= 2, "multi-stage: a builder and a runtime stage"
    for base in bases:
        image = base.split()[0]
        assert re.fullmatch(r"python:3\.12\.\d+-slim-[a-z]+(@sha256:[0-9a-f]{64})?", image), image
    assert len({b.split()[0] for b in bases}) == 1, (
        "the venv must run on the Python it was built on"
    )


def test_final_stage_has_the_venv_and_no_build_tools() -> None:
    assert f"--from=builder {IMAGE_VENV} {IMAGE_VENV}" in final("COPY")
    for command in final("RUN"):
        assert not re.search(r"\b(apt-get|apk|pip|gcc|g\+\+|make|build-essential)\b", command)
    # The source tree stays in the builder: only the venv and the healthcheck script come over.
    assert set(copies()) == {"/opt/mysoulmate/healthcheck.py"}


def test_runs_as_the_fixed_non_root_uid_the_chart_expects() -> None:
    (user,) = final("USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit(), user
    assert gid.isdigit(), user
    assert int(uid) >= 10000, user  # above any uid a host or base image hands out
    values = yaml.safe_load((ROOT / "infrastructure/helm/mysoulmate/values.yaml").read_text())
    assert values["podSecurityContext"]["runAsUser"] == int(uid)
    assert values["podSecurityContext"]["runAsGroup"] == int(gid)


def test_writable_paths_are_volumes_for_a_read_only_root() -> None:
    volumes = {v for args in final("VOLUME") for v in exec_form(args)}
    assert {"/data", "/tmp"} <= volumes
    env = image_env()
    assert env["DATA_DIR"] == "/data"
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"  # no .pyc writes on a read-only root
    multiproc = env.get("PROMETHEUS_MULTIPROC_DIR")
    assert multiproc is None or multiproc.startswith("/tmp/")


def test_exec_form_entrypoint_and_documented_commands() -> None:
    assert [exec_form(a) for a in final("ENTRYPOINT")] == [["mysoulmate"]]
    assert [exec_form(a) for a in final("CMD")] == [["serve", "--host", "0.0.0.0"]]
    (label,) = [a for a in final("LABEL") if "io.mysoulmate.commands" in a]
    commands = re.search(r'io\.mysoulmate\.commands="([^"]+)"', label)
    assert commands
    assert commands.group(1).split() == ["serve", "worker", "migrate", "report"]
    header = CONTAINERFILE.read_text()
    for command in ("worker", "migrate", "report"):
        assert re.search(rf"^#\s+docker run IMAGE {command}\b", header, re.MULTILINE), command


def test_healthcheck_uses_python_not_curl() -> None:
    (healthcheck,) = final("HEALTHCHECK")
    command = healthcheck.split(" CMD ", 1)[1]
    argv = exec_form(command)
    assert argv[0] == "python"
    assert "curl" not in healthcheck
    assert "wget" not in healthcheck
    assert copies()[argv[1]] == "infrastructure/docker/healthcheck.py"


def test_hadolint_finds_nothing() -> None:
    result = subprocess.run(
        [str(VENV / "bin" / "hadolint"), "--failure-threshold", "style", str(CONTAINERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def ignored(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore rule: the last pattern matching the path or a parent decides."""
    verdict = False
    parts = path.split("/")
    for pattern in patterns:
        negate = pattern.startswith("!")
        body = pattern.lstrip("!").rstrip("/")
        regex = re.escape(body).replace(r"\*\*/", "(.*/)?").replace(r"\*", "[^/]*")
        if any(re.fullmatch(regex, "/".join(parts[:n])) for n in range(1, len(parts) + 1)):
            verdict = not negate
    return verdict


def test_build_context_sends_what_the_build_copies_and_nothing_private() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    sources = {
        source
        for i in INSTRUCTIONS
        if i.keyword == "COPY" and not i.args.startswith("--from")
        for source in i.args.split()[:-1]  # the last word is the destination
    }
    assert "layers/common/requirements.txt" in sources
    for source in sources:
        probe = source if (ROOT / source).is_file() else f"{source.rstrip('/')}/__init__.py"
        assert not ignored(probe, patterns), f"{source} is copied but .dockerignore drops it"
    for private in (".venv/bin/python", ".data/jwt-secret", ".git/config", "tests/conftest.py"):
        assert ignored(private, patterns), private
    assert ignored("layers/common/mysoulmate/__pycache__/x.pyc", patterns)


# ---- the same installation ----------------------------------------------------------------------


def pins(path: Path) -> dict[str, tuple[str, Requirement]]:
    found = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            requirement = Requirement(line)
            (specifier,) = requirement.specifier
            assert specifier.operator == "==", f"{path}: {line} is not pinned"
            found[canonicalize_name(requirement.name)] = (specifier.version, requirement)
    return found


def installed_requirement_files() -> list[Path]:
    files = []
    for args in pip_installs():
        files += [ROOT / args[i + 1] for i, word in enumerate(args) if word == "-r"]
    return files


def runtime_closure(name: str, extras: frozenset[str] = frozenset()) -> set[str]:
    """Every distribution `name` (with extras) needs at run time, as installed in .venv."""
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = [(name, extras)]
    while todo:
        current, wanted = todo.pop()
        if (canonicalize_name(current), wanted) in seen:
            continue
        seen.add((canonicalize_name(current), wanted))
        for line in importlib.metadata.distribution(current).requires or []:
            requirement = Requirement(line)
            markers = [{"extra": e} for e in wanted] or [{"extra": ""}]
            if requirement.marker is None or any(requirement.marker.evaluate(m) for m in markers):
                todo.append((requirement.name, frozenset(requirement.extras)))
    return {n for n, _ in seen} - {canonicalize_name(name)}


def test_builder_installs_pinned_files_then_the_package_without_dependencies() -> None:
    files = installed_requirement_files()
    assert ROOT / "layers/common/requirements.txt" in files  # the Lambda layer's pins
    assert all(f.is_file() for f in files), files
    package_installs = [args for args in pip_installs() if "." in args]
    assert package_installs
    assert all("--no-deps" in args for args in package_installs)
    assert any("pip check" in i.args for i in INSTRUCTIONS if i.keyword == "RUN")


def test_this_venv_holds_exactly_what_the_image_installs() -> None:
    wanted: dict[str, str] = {}
    for path in installed_requirement_files():
        for name, (version, _) in pins(path).items():
            assert wanted.setdefault(name, version) == version, f"{name} pinned twice"
    mismatched = {}
    for name, version in wanted.items():
        try:
            have = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            have = "missing"
        if have != version:
            mismatched[name] = f"image {version}, .venv {have}"
    assert mismatched == {}, "run `make test` (it reinstalls .venv from the pins)"
    # The package: this source tree (the image installs it from the same files).
    direct = json.loads(
        importlib.metadata.distribution("mysoulmate").read_text("direct_url.json") or "{}"
    )
    assert Path(direct["url"].removeprefix("file://")).resolve() == ROOT
    # --no-deps: whatever the package needs must be one of those pins.
    unpinned = runtime_closure("mysoulmate") - set(wanted)
    assert unpinned == set(), "pin these in layers/common/requirements.txt or the container's"


# ---- the same commands -------------------------------------------------------------------------


def host_path(image_path: str) -> str:
    return image_path.replace(IMAGE_VENV, str(VENV))


@dataclass
class Deployment:
    env: dict[str, str]
    data_dir: Path
    database_url: str
    queue: str

    def argv(self, command: list[str] | None = None) -> list[str]:
        """ENTRYPOINT + CMD, or ENTRYPOINT + the given command (as `docker run IMAGE cmd`)."""
        (entrypoint,) = [exec_form(a) for a in final("ENTRYPOINT")]
        (cmd,) = [exec_form(a) for a in final("CMD")]
        return [*entrypoint, *(cmd if command is None else command)]

    def run(self, command: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(command),
            env=self.env,
            cwd=self.data_dir,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def start(self, command: list[str] | None = None, **env: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.argv(command),
            env={**self.env, **env},
            cwd=self.data_dir,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )


def require_rabbitmq() -> None:
    import pika

    try:
        pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL + "?connection_attempts=1")).close()
    except Exception as exc:  # noqa: BLE001 - any failure means the broker is not usable
        require_service(f"RabbitMQ at 127.0.0.1:5672 is not reachable: {exc}")


def delete_queues(queue: str) -> None:
    import pika

    connection = pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL))
    try:
        channel = connection.channel()
        for name in (queue, f"{queue}-dlq"):
            channel.queue_delete(name)
        channel.exchange_delete(f"{queue}-dlx")
    finally:
        connection.close()


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """The image's environment plus what a deployment adds: a database and a queue of this
    module's own, a JWT secret (from the Secret, in Kubernetes)."""
    require_postgres()
    require_rabbitmq()
    data_dir = tmp_path_factory.mktemp("data")
    queue = f"mysoulmate-image-test-{uuid.uuid4().hex[:8]}"
    with scratch_database() as conninfo:
        name = re.search(r"dbname=(\S+)", conninfo)
        assert name
        url = f"postgresql://postgres@127.0.0.1:5432/{name.group(1)}"
        env = {key: host_path(value) for key, value in image_env().items()}
        env.update(
            {
                "HOME": str(data_dir),  # the image's user has no home directory
                "LANG": "C.UTF-8",
                "DATA_DIR": str(data_dir),
                "PORT": str(free_port()),
                "STAGE": "test",
                "JWT_SECRET": TEST_SECRET,
                "STORAGE_BACKEND": "postgres",
                "DATABASE_URL": url,
                "QUEUE_BACKEND": "rabbitmq",
                "RABBITMQ_URL": RABBITMQ_URL,
                "RABBITMQ_QUEUE": queue,
                "WORKER_POLL_INTERVAL_SECONDS": "0.1",
            }
        )
        assert env["PATH"].startswith(f"{VENV}/bin:")
        try:
            yield Deployment(env, data_dir, url, queue)
        finally:
            delete_queues(queue)


def stop(process: subprocess.Popen[str], within: float = 30) -> tuple[int, str]:
    """SIGTERM, as Kubernetes sends it; the exit code and what the process printed."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
    try:
        output, _ = process.communicate(timeout=within)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        return -9, output
    return process.returncode, output


def wait_for(url: str, process: subprocess.Popen[str], within: float = 60) -> httpx.Response:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"exited with {process.returncode}: {process.communicate()[0]}")
        try:
            return httpx.get(url, timeout=2)
        except httpx.TransportError:
            time.sleep(0.1)
    pytest.fail(f"{url} did not answer within {within}s")


@pytest.mark.slow
def test_migrate_brings_a_new_database_to_the_schema_then_has_nothing_to_do(
    deployment: Deployment,
) -> None:
    first = deployment.run(["migrate"])
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("migrated "), first.stdout
    again = deployment.run(["migrate"])
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("already at "), again.stdout


@pytest.mark.slow
def test_serve_answers_health_accepts_an_event_and_the_worker_stores_it(
    deployment: Deployment,
) -> None:
    import psycopg

    assert deployment.run(["migrate"]).returncode == 0  # idempotent; the hook Job's job
    base = f"http://127.0.0.1:{deployment.env['PORT']}"
    server = deployment.start()  # ENTRYPOINT + CMD: serve --host 0.0.0.0, PORT from the env
    worker: subprocess.Popen[str] | None = None
    try:
        live = wait_for(f"{base}/health", server)
        assert live.status_code == 200
        assert live.json()["status"] == "ok"
        ready = httpx.get(f"{base}/health/ready", timeout=5)
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"] == {"storage": "ok", "queue": "ok"}
        # The image's HEALTHCHECK, as Docker would run it inside the container.
        (healthcheck,) = final("HEALTHCHECK")
        argv = [copies().get(a, a) for a in exec_form(healthcheck.split(" CMD ", 1)[1])]
        check = subprocess.run(argv, env=deployment.env, cwd=ROOT, timeout=30, capture_output=True)
        assert check.returncode == 0, check.stderr
        # 202 only once the broker confirmed the message.
        message_id = f"image-test-{uuid.uuid4()}"
        accepted = httpx.post(
            f"{base}/api/v1/analytics/track",
            json={"event": "container_image_test", "messageId": message_id},
            headers=auth_header("image-user"),
            timeout=10,
        )
        assert accepted.status_code == 202, accepted.text

        worker = deployment.start(["worker"])
        deadline = time.monotonic() + 30
        stored = 0
        while not stored and time.monotonic() < deadline and worker.poll() is None:
            with psycopg.connect(deployment.database_url) as conn:
                row = conn.execute(
                    "SELECT count(*) FROM events WHERE message_id = %s", (message_id,)
                ).fetchone()
            stored = row[0] if row else 0
            time.sleep(0.2)
        assert stored == 1, "the worker did not store the event"
        code, output = stop(worker)
        assert code == 0, f"worker exit {code} on SIGTERM: {output}"
    finally:
        if worker is not None and worker.poll() is None:
            stop(worker)
        code, output = stop(server)
    # uvicorn shuts down gracefully, then re-raises the SIGTERM it caught (exit 143 in a pod).
    assert code in (0, -signal.SIGTERM), f"serve exit {code} on SIGTERM: {output}"
    assert "Application shutdown complete" in output, output


@pytest.mark.slow
def test_report_runs(deployment: Deployment) -> None:
    assert deployment.run(["migrate"]).returncode == 0
    result = deployment.run(["report"], timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "written to" in result.stdout, result.stdout


def test_healthcheck_script_passes_for_commands_without_http(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "healthcheck", ROOT / "infrastructure/docker/healthcheck.py"
    )
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cmdline = tmp_path / "cmdline"
    for argv, expected in (
        ([f"{IMAGE_VENV}/bin/python", f"{IMAGE_VENV}/bin/mysoulmate", "worker"], "worker"),
        (["/sbin/docker-init", "--", "mysoulmate", "serve", "--host", "0.0.0.0"], "serve"),
        (["python", "-m", "something"], "serve"),
    ):
        cmdline.write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
        assert module.main_command(cmdline) == expected
    # And for `serve` it fails when nothing answers on PORT.
    monkeypatch.setattr(module, "main_command", lambda: "serve")
    monkeypatch.setenv("PORT", str(free_port()))
    assert module.main() == 1
    monkeypatch.setattr(module, "main_command", lambda: "worker")
    assert module.main() == 0
