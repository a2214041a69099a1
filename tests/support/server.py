"""Run the real server (`mysoulmate serve` or `make run`) as a child process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    def __init__(self, command: Sequence[str], env: dict[str, str], port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self._command = list(command)
        self._env = env
        self._proc: subprocess.Popen[bytes] | None = None
        # The server logs a line per request to stderr: into a file, never a pipe nobody
        # reads (a full pipe would block the server mid-request).
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed with the object

    def start(self, ready_within: float = 60) -> ServerProcess:
        self._proc = subprocess.Popen(
            self._command,
            env=self._env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
            start_new_session=True,  # `make run` spawns a child: signal the whole group
        )
        deadline = time.monotonic() + ready_within
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"server exited with {self._proc.returncode}: {self.log()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"server did not answer on {self.url} within {ready_within}s")

    def log(self) -> str:
        """What the server wrote to stderr so far."""
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks, no flushing; what a crash or OOM kill looks like."""
        if self._proc is not None and self._proc.poll() is None:
            os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait(timeout=30)

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            os.killpg(self._proc.pid, signal.SIGTERM)
            try:
                self._proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


def server_env(data_dir: Path, **overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "COV_"))}
    env.update(
        {
            "DATA_DIR": str(data_dir),
            "STAGE": "test",
            "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
            # These tests flood one user on purpose; the limits have tests of their own.
            "RATE_LIMIT_INGEST_PER_SECOND": "0",
            "RATE_LIMIT_READ_PER_SECOND": "0",
        }
    )
    env.update(overrides)
    return env


def mysoulmate_serve(data_dir: Path, **overrides: str) -> ServerProcess:
    port = free_port()
    return ServerProcess(
        [str(BIN / "mysoulmate"), "serve", "--port", str(port)],
        server_env(data_dir, **overrides),
        port,
    )
