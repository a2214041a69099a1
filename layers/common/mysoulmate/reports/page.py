"""The report as one self-contained HTML file: inline CSS, charts as inline SVG, no script,
no font, image or style sheet from anywhere. A Content-Security-Policy of `default-src 'none'`
says so to the browser too, so a mail client or an S3 link shows exactly what was rendered."""

from __future__ import annotations

from html import escape

from mysoulmate.analytics.period_report_models import PeriodReport
from mysoulmate.reports import tables
from mysoulmate.reports.charts import Chart
from mysoulmate.reports.text import ReportText

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"

CSS = """
:root { --ink: #1f1f29; --muted: #6b6b7b; --line: #e6e3ee; --bg: #f7f6fb; --brand: #6d28d9;
  --up: #047857; --down: #b91c1c; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--ink); line-height: 1.45;
  font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", "Noto Sans CJK JP",
  "Hiragino Sans", "Microsoft YaHei", sans-serif; }
header.top { background: linear-gradient(120deg, #4c1d95, #7c3aed); color: #fff;
  padding: 28px 40px 24px; }
header.top .brand { font-weight: 700; letter-spacing: .08em; text-transform: uppercase;
  font-size: 12px; opacity: .85; }
header.top h1 { margin: 6px 0 4px; font-size: 26px; font-weight: 650; }
header.top p { margin: 2px 0; opacity: .92; }
header.top .partial { display: inline-block; margin-top: 8px; padding: 2px 10px;
  border-radius: 999px; background: #fde68a; color: #713f12; font-size: 13px; }
main { max-width: 1240px; margin: 0 auto; padding: 24px 32px 8px; }
h2 { font-size: 17px; margin: 0 0 10px; font-weight: 650; }
section { margin-bottom: 28px; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(210px, 1fr)); gap: 14px; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 12px; padding: 14px 16px; }
.card .label { color: var(--muted); font-size: 13px; }
.card .value { font-size: 26px; font-weight: 650; margin: 2px 0;
  font-variant-numeric: tabular-nums; }
.card .change { font-size: 13px; }
.card .prev { color: var(--muted); }
.up { color: var(--up); font-weight: 600; }
.down { color: var(--down); font-weight: 600; }
.flat { color: var(--muted); font-weight: 600; }
.charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(560px, 1fr)); gap: 16px; }
figure { margin: 0; background: #fff; border: 1px solid var(--line); border-radius: 12px;
  padding: 16px; overflow-x: auto; }
figure svg { display: block; max-width: 100%; height: auto; margin: 0 auto; }
figure.wide { grid-column: 1 / -1; }
.empty { color: var(--muted); font-style: italic; margin: 8px 0; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(540px, 1fr)); gap: 16px;
  align-items: start; }
.table { background: #fff; border: 1px solid var(--line); border-radius: 12px; padding: 12px 16px;
  overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-size: 14px; }
caption { text-align: left; font-weight: 650; font-size: 16px; padding-bottom: 8px; }
th, td { padding: 6px 8px; border-bottom: 1px solid var(--line); text-align: left;
  white-space: nowrap; }
th { color: var(--muted); font-weight: 600; font-size: 12.5px; white-space: normal; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tbody tr:last-child td { border-bottom: 0; }
code { font: 13px ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; }
footer { max-width: 1240px; margin: 0 auto; padding: 8px 32px 32px; color: var(--muted);
  font-size: 13px; }
@media print { body { background: #fff; } figure, .card, .table { break-inside: avoid; } }
"""


def title(report: PeriodReport, text: ReportText) -> str:
    if report.period == "week":
        year, week, _ = report.from_.isocalendar()
        return text.t("weeklyTitle", week=text.number(week), year=str(year))
    return text.t("dailyTitle", date=text.day_text(report.from_, "long"))


def header(report: PeriodReport, text: ReportText) -> str:
    generated = text.moment(report.generatedAt)
    lines = [
        f'<div class="brand">{escape(text.t("brand"))}</div>',
        f"<h1>{escape(title(report, text))}</h1>",
        "<p>"
        + escape(text.t("periodRange", range=text.date_range(report.from_, report.to)))
        + " · "
        + escape(
            text.t("comparedWith", range=text.date_range(report.previousFrom, report.previousTo))
        )
        + "</p>",
        f'<p class="meta">{escape(text.t("generatedAt", datetime=generated))}</p>',
    ]
    if not report.complete:
        lines.append(f'<p class="partial">{escape(text.t("partial"))}</p>')
    return f'<header class="top">{"".join(lines)}</header>'


def figures(charts: list[Chart], text: ReportText) -> str:
    """Every chart in a fixed order; one without data says so instead of drawing axes."""
    drawn = {chart.name: chart for chart in charts}
    parts = []
    for name, key, empty in (
        ("events-by-day", "charts.eventsByDay", "noData"),
        ("active-users-by-day", "charts.activeUsersByDay", "noData"),
        ("revenue-by-day", "charts.revenueByDay", "noRevenue"),
        ("funnel", "charts.funnel", "noData"),
        ("retention", "charts.retention", "noData"),
    ):
        chart = drawn.get(name)
        body = chart.svg if chart else f'<p class="empty">{escape(text.t(empty))}</p>'
        wide = ' class="wide"' if name == "retention" else ""  # the heat map wants the width
        parts.append(
            f'<figure data-chart="{name}"{wide}><h2>{escape(text.t(key))}</h2>{body}</figure>'
        )
    return f'<section class="charts">{"".join(parts)}</section>'


def render_html(report: PeriodReport, charts: list[Chart], text: ReportText) -> str:
    blocks = [
        tables.top_events(report, text),
        tables.platforms(report, text),
        tables.revenue(report, text),
        tables.funnel(report, text),
        tables.top_views(report, text),
        tables.slow_screens(report, text),
        tables.forwarding(report.forwarding, text),
    ]
    grid = "".join(block for block in blocks if block)
    return (
        "<!doctype html>\n"
        f'<html lang="{escape(text.locale)}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        f'<meta name="generator" content="mysoulmate report {escape(report.key)}">'
        f"<title>{escape(text.t('brand'))} · {escape(title(report, text))}</title>"
        f"<style>{CSS}</style></head><body>"
        f"{header(report, text)}<main>"
        f"{tables.cards(report, text)}"
        f"{figures(charts, text)}"
        f'<section class="grid">{grid}</section>'
        f"<section>{tables.cohorts(report, text)}</section>"
        f"</main><footer>{escape(text.t('footer'))}</footer></body></html>\n"
    )
