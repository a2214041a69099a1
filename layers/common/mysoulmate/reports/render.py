"""`render_report`: one period report in the three forms it is stored in."""

from __future__ import annotations

from dataclasses import dataclass

from mysoulmate.analytics.period_report_models import PeriodReport
from mysoulmate.reports.charts import draw_charts
from mysoulmate.reports.flat import to_csv
from mysoulmate.reports.page import render_html
from mysoulmate.reports.text import ReportText


@dataclass(frozen=True)
class RenderedReport:
    """``html``: the page people read; ``json``: `PeriodReport` as is; ``csv``: flat rows."""

    html: str
    json: str
    csv: str


def to_json(report: PeriodReport) -> str:
    """The model dumped; a report without forwarding health has no `forwarding` key."""
    exclude = {"forwarding"} if report.forwarding is None else None
    return report.model_dump_json(indent=2, exclude=exclude) + "\n"


def render_report(report: PeriodReport, locale: str) -> RenderedReport:
    """Raises `UnknownLocaleError` (a ValueError) for a locale without a catalog."""
    text = ReportText(locale)
    return RenderedReport(
        html=render_html(report, draw_charts(report, text), text),
        json=to_json(report),
        csv=to_csv(report),
    )
