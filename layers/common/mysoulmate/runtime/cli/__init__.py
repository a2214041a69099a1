"""`mysoulmate`: the laptop and container entry points and the operator's tools, on Typer
(commands, options, help) and Rich (help, progress bars).

`main` is the console script; `app` the Typer application (tests drive it with Typer's
`CliRunner`). The commands live by theme: `server` (serve, worker), `admin` (token,
migrate, seed, openapi, i18n), `data` (export, erase), `report`, `dlq`, `writekey`; what
they share (errors, progress, prompts) is in `output`.
"""

from mysoulmate.runtime.cli.admin import parse_duration
from mysoulmate.runtime.cli.app import app, main

__all__ = ["app", "main", "parse_duration"]
