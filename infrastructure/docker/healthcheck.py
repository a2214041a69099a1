"""The image's HEALTHCHECK: `GET /health` of `mysoulmate serve`, with the standard library only
(the image has no curl).

One image runs several commands (`serve`, `worker`, `migrate`, `report`), and Docker applies
the same HEALTHCHECK to all of them. Only `serve` has an HTTP port, so for the other commands
the check passes while their process runs (their exit status is what tells). Kubernetes
ignores HEALTHCHECK: the Helm chart's probes do this job there.
"""

from __future__ import annotations

import os
import sys
import urllib.request
from pathlib import Path


def main_command(cmdline: Path = Path("/proc/1/cmdline")) -> str:
    """The subcommand of the container's main process (PID 1): `mysoulmate serve …` → serve."""
    try:
        argv = cmdline.read_bytes().split(b"\0")
    except OSError:
        return "serve"  # not on Linux: assume the default command
    words = [Path(arg.decode(errors="replace")).name for arg in argv if arg]
    for index, word in enumerate(words):
        if word == "mysoulmate" and index + 1 < len(words):
            return words[index + 1]
    return "serve"


def main() -> int:
    if main_command() != "serve":
        return 0
    url = f"http://127.0.0.1:{os.environ.get('PORT', '8080')}/health"
    try:
        with urllib.request.urlopen(url, timeout=4) as response:
            return 0 if response.status == 200 else 1
    except OSError as exc:
        print(f"unhealthy: {url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
