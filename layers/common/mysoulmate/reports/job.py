"""`write_report`: the report of one period into `<out_dir>/<period.key>/`, once.

What `mysoulmate report`, the CronJob and (with an S3 writer in front) the scheduled function
run. Idempotent per period: a finished period whose three files are there is not computed or
written again unless forced, so a retried or doubled schedule costs one directory listing.
A report of a period that had not ended when it was written is marked partial (its JSON says
`"complete": false`) and is replaced by the next run. Each file is written to a temporary
name and renamed into place, so a reader never sees half a file.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from mysoulmate.analytics.period_report import Period, build_period_report
from mysoulmate.analytics.period_report_models import ForwardingHealth
from mysoulmate.analytics.ports import EventStore
from mysoulmate.core.settings import get_settings
from mysoulmate.reports.render import render_report
from mysoulmate.reports.text import ReportText

HTML, JSON, CSV = "report.html", "report.json", "report.csv"
FILES = (HTML, JSON, CSV)


@dataclass(frozen=True)
class WrittenReport:
    period: Period
    directory: Path
    written: bool = True
    reason: str = "written"  # "written", "forced", "replaced partial" or "exists"

    @property
    def files(self) -> tuple[Path, ...]:
        return tuple(self.directory / name for name in FILES)

    @property
    def message(self) -> str:
        if self.written:
            return f"{self.period.key}: {self.reason} to {self.directory}"
        return f"{self.period.key}: already in {self.directory}; nothing written (force to redo)"


def stored_state(directory: Path) -> str | None:
    """ "complete" or "partial" when all three files are there; None otherwise."""
    if not all((directory / name).is_file() for name in FILES):
        return None
    try:
        complete = json.loads((directory / JSON).read_text(encoding="utf-8")).get("complete")
    except (OSError, ValueError, AttributeError):
        return None  # unreadable: write it again
    return "complete" if complete is True else "partial"


def write_report(
    store: EventStore,
    period: Period,
    out_dir: Path | str,
    *,
    locale: str,
    force: bool = False,
    forwarding: ForwardingHealth | None = None,
    funnel_steps: list[str] | None = None,
    now: datetime | None = None,
) -> WrittenReport:
    """Compute, render and write the report of ``period`` unless it is already there.

    ``funnel_steps`` defaults to the settings' DEFAULT_FUNNEL (the dashboard's funnel);
    ``locale`` must be one of the shipped catalogs (`UnknownLocaleError` before any work)."""
    ReportText(locale)
    directory = Path(out_dir) / period.key
    state = stored_state(directory)
    if state == "complete" and not force:
        return WrittenReport(period, directory, written=False, reason="exists")
    steps = funnel_steps if funnel_steps is not None else get_settings().default_funnel
    report = build_period_report(store, period, funnel_steps=steps, forwarding=forwarding, now=now)
    rendered = render_report(report, locale)
    directory.mkdir(parents=True, exist_ok=True)
    # The JSON last: a directory whose JSON is there has its HTML and CSV too.
    for name, content in ((HTML, rendered.html), (CSV, rendered.csv), (JSON, rendered.json)):
        _write_atomically(directory / name, content)
    reason = {"complete": "forced", "partial": "replaced partial"}.get(state or "", "written")
    return WrittenReport(period, directory, written=True, reason=reason)


def _write_atomically(path: Path, content: str) -> None:
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
