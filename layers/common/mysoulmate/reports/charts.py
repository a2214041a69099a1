"""The report's charts: Vega-Lite specifications built with altair, drawn to SVG by
vl-convert (Vega itself, embedded: no browser, no network), inlined into the page.

Labels are formatted here with Babel (CLDR), never by Vega's own locale tables: dates and
percentages on the charts read exactly as in the tables below them. altair and vl_convert are
imported on first use: only a process that renders a report pays for them.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mysoulmate.analytics.period_report_models import PeriodReport
from mysoulmate.reports.text import ReportText

if TYPE_CHECKING:
    import altair as alt

WIDTH, HEIGHT = 520, 220
# Vega lays text out with the widths of the font it finds here (vl-convert: Liberation Sans);
# Arial, which the reader's browser most likely has, is metric-compatible with it, so labels
# measured here fit there. CJK text falls back to the system's fonts on both sides.
FONT = "Arial, 'Liberation Sans', Helvetica, 'Noto Sans CJK JP', 'Microsoft YaHei', sans-serif"
CURRENT, PREVIOUS = "#6d28d9", "#c4b5fd"  # the brand's violet, and its light tint
_ID = re.compile(r'\bid="([^"]+)"')
_XMLNS = re.compile(r'\s+xmlns(?::\w+)?="[^"]*"')
_serial = itertools.count(1)


@dataclass(frozen=True)
class Chart:
    """One drawn chart: ``name`` is stable (`events-by-day`, …), ``svg`` ready to inline."""

    name: str
    title: str
    svg: str


def draw_charts(report: PeriodReport, text: ReportText) -> list[Chart]:
    """Every chart the report has data for, in page order."""
    specs: list[tuple[str, str, alt.TopLevelMixin | None]] = [
        ("events-by-day", text.t("charts.eventsByDay"), events_chart(report, text)),
        ("active-users-by-day", text.t("charts.activeUsersByDay"), users_chart(report, text)),
        ("revenue-by-day", text.t("charts.revenueByDay"), revenue_chart(report, text)),
        ("funnel", text.t("charts.funnel"), funnel_chart(report, text)),
        ("retention", text.t("charts.retention"), retention_chart(report, text)),
    ]
    return [
        Chart(name, title, to_svg(spec, text, title))
        for name, title, spec in specs
        if spec is not None
    ]


def to_svg(chart: alt.TopLevelMixin, text: ReportText, title: str) -> str:
    """Vega-Lite → SVG, made safe to inline several times in one HTML page."""
    import vl_convert

    svg = vl_convert.vegalite_to_svg(
        chart.to_dict(),
        format_locale=text.vega_format_locale(),
        allowed_base_urls=[],  # the data is inline: Vega may fetch nothing
    )
    return inline_svg(svg, title)


def inline_svg(svg: str, title: str) -> str:
    """Namespaces are implied in HTML, and each chart's ids (clip paths, gradients) get a
    prefix of their own so that two charts never point at each other's."""
    prefix = f"c{next(_serial)}-"
    for ident in set(_ID.findall(svg)):
        svg = svg.replace(f'id="{ident}"', f'id="{prefix}{ident}"')
        svg = svg.replace(f"url(#{ident})", f"url(#{prefix}{ident})")
        svg = svg.replace(f'href="#{ident}"', f'href="#{prefix}{ident}"')
    svg = _XMLNS.sub("", svg, count=2)
    label = title.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")
    return svg.replace("<svg", f'<svg role="img" aria-label="{label}"', 1)


# -- the specifications -----------------------------------------------------------------------


def _base(rows: list[dict[str, Any]]) -> alt.Chart:
    import altair as alt

    chart: alt.Chart = alt.Chart(alt.InlineData(values=rows)).properties(width=WIDTH, height=HEIGHT)
    return chart


def _configure(chart: alt.TopLevelMixin) -> alt.TopLevelMixin:
    configured: alt.TopLevelMixin = (
        chart.configure(font=FONT, background="#ffffff", padding=8)
        .configure_view(stroke=None)
        .configure_axis(labelFontSize=11, titleFontSize=11, gridColor="#eeeeee")
        .configure_legend(orient="bottom", title=None, labelFontSize=11)
    )
    return configured


def _series(text: ReportText) -> tuple[str, str]:
    return text.t("thisPeriod"), text.t("previousPeriod")


def _day_rows(
    text: ReportText, current: list[tuple[Any, int]], previous: list[tuple[Any, int]]
) -> list[dict[str, Any]]:
    """Day i of the previous period is drawn beside day i of this one (same weekday)."""
    this, before = _series(text)
    rows = []
    for index, ((day, value), (_, old)) in enumerate(zip(current, previous, strict=True)):
        label = text.day_label(day)
        rows.append({"day": label, "order": index, "series": this, "value": value})
        rows.append({"day": label, "order": index, "series": before, "value": old})
    return rows


def _series_color(text: ReportText) -> alt.Color:
    import altair as alt

    this, before = _series(text)
    return alt.Color(
        "series:N", scale=alt.Scale(domain=[this, before], range=[CURRENT, PREVIOUS]), title=None
    )


def events_chart(report: PeriodReport, text: ReportText) -> alt.TopLevelMixin:
    import altair as alt

    rows = _day_rows(
        text,
        [(d.date, d.events) for d in report.eventsByDay],
        [(d.date, d.events) for d in report.previousEventsByDay],
    )
    days = [r["day"] for r in rows[::2]]
    chart = (
        _base(rows)
        .mark_bar(cornerRadiusTopLeft=2, cornerRadiusTopRight=2)
        .encode(
            x=alt.X("day:N", sort=days, title=None, axis=alt.Axis(labelAngle=0)),
            xOffset=alt.XOffset("series:N", sort=list(_series(text))),
            y=alt.Y("value:Q", title=text.t("axes.events"), axis=alt.Axis(format=",d")),
            color=_series_color(text),
        )
    )
    return _configure(chart)


def users_chart(report: PeriodReport, text: ReportText) -> alt.TopLevelMixin:
    import altair as alt

    rows = _day_rows(
        text,
        [(d.date, d.users) for d in report.activeUsersByDay],
        [(d.date, d.users) for d in report.previousActiveUsersByDay],
    )
    days = [r["day"] for r in rows[::2]]
    this, before = _series(text)
    chart = (
        _base(rows)
        .mark_line(point=alt.OverlayMarkDef(size=50, filled=True), strokeWidth=2.5)
        .encode(
            x=alt.X("day:N", sort=days, title=None, axis=alt.Axis(labelAngle=0)),
            y=alt.Y("value:Q", title=text.t("axes.users"), axis=alt.Axis(format=",d")),
            color=_series_color(text),
            strokeDash=alt.StrokeDash(
                "series:N",
                scale=alt.Scale(domain=[this, before], range=[[1, 0], [5, 4]]),
                title=None,
            ),
        )
    )
    return _configure(chart)


def revenue_chart(report: PeriodReport, text: ReportText) -> alt.TopLevelMixin | None:
    """One row per currency, each on its own scale (yen and dollars never share an axis)."""
    import altair as alt

    currencies = sorted({a.currency for day in report.revenueByDay for a in day.amounts})
    if not currencies:
        return None
    days = [text.day_label(day.date) for day in report.revenueByDay]
    rows: list[dict[str, Any]] = []
    for day, label in zip(report.revenueByDay, days, strict=True):
        amounts = {a.currency: a.amount for a in day.amounts}
        rows.extend(
            {"day": label, "currency": c, "amount": amounts.get(c, 0.0)} for c in currencies
        )
    height = max(90, HEIGHT // len(currencies))
    chart = (
        alt.Chart(alt.InlineData(values=rows))
        .mark_bar(color="#0f766e", cornerRadiusTopLeft=2, cornerRadiusTopRight=2)
        .encode(
            x=alt.X("day:N", sort=days, title=None, axis=alt.Axis(labelAngle=0)),
            y=alt.Y("amount:Q", title=None, axis=alt.Axis(format=",~f", tickCount=4)),
        )
        .properties(width=WIDTH, height=height)
        .facet(
            row=alt.Row(
                "currency:N",
                sort=currencies,
                title=None,
                header=alt.Header(labelAngle=0, labelAlign="left", labelFontWeight="bold"),
            )
        )
        .resolve_scale(y="independent")
    )
    return _configure(chart)


def funnel_chart(report: PeriodReport, text: ReportText) -> alt.TopLevelMixin | None:
    import altair as alt

    steps = report.funnel.funnel
    if not steps:
        return None
    order = [f"{s.step}. {s.event}" for s in steps]
    rows: list[dict[str, Any]] = [
        {
            "step": name,
            "users": s.users,
            "label": f"{text.number(s.users)} · {text.percent(s.conversionFromStart)}",
        }
        for s, name in zip(steps, order, strict=True)
    ]
    base = _base(rows).encode(
        y=alt.Y("step:N", sort=order, title=None, axis=alt.Axis(labelLimit=180)),
        x=alt.X("users:Q", title=text.t("axes.users"), axis=alt.Axis(format=",d")),
    )
    bars = base.mark_bar(color=CURRENT, cornerRadiusEnd=3)
    labels = base.mark_text(align="left", dx=4, fontSize=11, color="#333333").encode(text="label:N")
    return _configure(alt.layer(bars, labels).properties(width=WIDTH - 80))


def retention_chart(report: PeriodReport, text: ReportText) -> alt.TopLevelMixin | None:
    import altair as alt

    cohorts = report.retention.cohorts
    if not cohorts:
        return None
    rows = []
    labels = []
    for cohort in cohorts:
        label = f"{text.short_day(cohort.start)} ({text.number(cohort.size)})"
        labels.append(label)
        for k, share in enumerate(cohort.retention):
            if share is None:
                continue
            rows.append(
                {
                    "cohort": label,
                    "k": str(k),
                    "retention": share,
                    "label": text.percent(share, 0),
                }
            )
    offsets = [str(k) for k in range(report.retention.periods)]
    after = text.t("axes.weeksAfter" if report.period == "week" else "axes.daysAfter")
    base = _base(rows).encode(
        x=alt.X("k:O", sort=offsets, title=after, axis=alt.Axis(labelAngle=0, orient="top")),
        y=alt.Y("cohort:O", sort=labels, title=text.t("axes.cohort")),
    )
    heat = base.mark_rect(stroke="#ffffff", strokeWidth=1).encode(
        color=alt.Color(
            "retention:Q",
            scale=alt.Scale(domain=[0, 1], scheme="purples"),
            legend=alt.Legend(format=".0%", title=text.t("axes.retention"), orient="right"),
        )
    )
    cells = base.mark_text(fontSize=11).encode(
        text="label:N",
        color=alt.condition(alt.datum.retention > 0.5, alt.value("#ffffff"), alt.value("#1f1f1f")),
    )
    height = max(120, 26 * len(labels))
    return _configure(alt.layer(heat, cells).properties(width=WIDTH - 120, height=height))
