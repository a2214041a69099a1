"""The report's HTML tables and headline cards: escaped text, CLDR-formatted figures, and the
raw value of each headline in `data-*` attributes (what tests and scrapers read)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from html import escape

from mysoulmate.analytics.perf_models import ScreenChange
from mysoulmate.analytics.period_report_models import (
    AmountChange,
    CountChange,
    ForwardingHealth,
    PeriodReport,
)
from mysoulmate.reports.text import ReportText

NONE = "—"


def table(
    caption: str, headers: Sequence[str], rows: Iterable[Sequence[str]], *, numeric_from: int = 1
) -> str:
    """A table whose columns from ``numeric_from`` on are figures (right-aligned)."""

    def cells(values: Sequence[str], tag: str) -> str:
        return "".join(
            f'<{tag} class="num">{v}</{tag}>' if i >= numeric_from else f"<{tag}>{v}</{tag}>"
            for i, v in enumerate(values)
        )

    body = "".join(f"<tr>{cells(row, 'td')}</tr>" for row in rows)
    if not body:
        return ""
    head = cells([escape(h) for h in headers], "th")
    return (
        f'<div class="table"><table><caption>{escape(caption)}</caption>'
        f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"
    )


def change_cell(text: ReportText, change: float, percent: float | None) -> str:
    label, css = text.change(change, percent)
    return f'<span class="{css}">{escape(label)}</span>'


# -- headline cards ---------------------------------------------------------------------------


def card(
    metric: str,
    label: str,
    figure: CountChange | AmountChange,
    value: str,
    previous: str,
    text: ReportText,
) -> str:
    """One headline: its figure, the change (arrow and percent) and the previous value."""
    change = change_cell(text, figure.change, figure.changePercent)
    before = escape(text.t("previousValue", value=previous))
    return (
        f'<div class="card" data-metric="{escape(metric)}" data-current="{figure.current}" '
        f'data-previous="{figure.previous}">'
        f'<div class="label">{escape(label)}</div><div class="value">{escape(value)}</div>'
        f'<div class="change">{change} <span class="prev">{before}</span></div></div>'
    )


def cards(report: PeriodReport, text: ReportText) -> str:
    totals = report.totals
    counts: list[tuple[str, str, CountChange]] = [
        ("events", "metrics.events", totals.events),
        ("activeUsers", "metrics.activeUsers", totals.activeUsers),
        ("newUsers", "metrics.newUsers", totals.newUsers),
        ("sessions", "metrics.sessions", totals.sessions),
        ("pageViews", "metrics.pageViews", totals.pageViews),
        ("screenViews", "metrics.screenViews", totals.screenViews),
    ]
    html = [
        card(name, text.t(key), f, text.number(f.current), text.number(f.previous), text)
        for name, key, f in counts
    ]
    average = totals.averageSessionSeconds
    html.insert(
        4,
        card(
            "averageSessionSeconds",
            text.t("metrics.averageSession"),
            average,
            text.duration(average.current),
            text.duration(average.previous),
            text,
        ),
    )
    html.extend(
        card(
            f"revenue.{money.currency}",
            text.t("metrics.revenue", currency=money.currency),
            money,
            text.currency(money.current, money.currency),
            text.currency(money.previous, money.currency),
            text,
        )
        for money in totals.revenue
    )
    return f'<section class="cards">{"".join(html)}</section>'


# -- tables -----------------------------------------------------------------------------------


def top_events(report: PeriodReport, text: ReportText) -> str:
    return table(
        text.t("tables.topEvents"),
        ["#", text.t("columns.event"), text.t("columns.count"), text.t("columns.users")],
        (
            [
                text.number(i),
                f"<code>{escape(e.event)}</code>",
                text.number(e.count),
                text.number(e.users),
            ]
            for i, e in enumerate(report.topEvents, 1)
        ),
        numeric_from=2,
    )


def platforms(report: PeriodReport, text: ReportText) -> str:
    total = sum(p.events for p in report.platforms)
    return table(
        text.t("tables.platforms"),
        [
            text.t("columns.platform"),
            text.t("columns.events"),
            text.t("columns.share"),
            text.t("columns.users"),
        ],
        (
            [
                escape(p.platform),
                text.number(p.events),
                text.percent(p.events / total if total else 0.0),
                text.number(p.users),
            ]
            for p in report.platforms
        ),
    )


def revenue(report: PeriodReport, text: ReportText) -> str:
    return table(
        text.t("tables.revenue"),
        [
            text.t("columns.currency"),
            text.t("columns.current"),
            text.t("columns.previous"),
            text.t("columns.change"),
        ],
        (
            [
                escape(r.currency),
                escape(text.currency(r.current, r.currency)),
                escape(text.currency(r.previous, r.currency)),
                change_cell(text, r.change, r.changePercent),
            ]
            for r in report.totals.revenue
        ),
    )


def top_views(report: PeriodReport, text: ReportText) -> str:
    return table(
        text.t("tables.topViews"),
        [text.t("columns.view"), text.t("columns.views"), text.t("columns.users")],
        (
            [
                f"{escape(text.t(f'columns.{v.kind}'))}: <code>{escape(v.name or NONE)}</code>",
                text.number(v.views),
                text.number(v.users),
            ]
            for v in report.topViews
        ),
    )


def slow_screens(report: PeriodReport, text: ReportText) -> str:
    """The slowest screens by p90 render time; a regression since the previous app version
    is marked (slower is worse, so a rise shows as a fall would elsewhere)."""

    def change(screen: ScreenChange) -> str:
        if screen.change is None:
            return NONE
        label = text.percent(screen.change)
        css = "down" if screen.regressed else "flat"
        note = f" {escape(text.t('regressed'))}" if screen.regressed else ""
        return f'<span class="{css}">{escape(label)}{note}</span>'

    return table(
        text.t("tables.slowScreens"),
        [
            text.t("columns.screen"),
            text.t("columns.platform"),
            text.t("columns.appVersion"),
            text.t("columns.p90"),
            text.t("columns.previousVersion"),
            text.t("columns.change"),
        ],
        (
            [
                f"<code>{escape(s.name)}</code>",
                escape(s.platform),
                escape(s.appVersion),
                text.decimal(s.p90),
                escape(s.previousVersion or NONE),
                change(s),
            ]
            for s in report.slowScreens
        ),
        numeric_from=3,
    )


def funnel(report: PeriodReport, text: ReportText) -> str:
    return table(
        text.t("tables.funnel"),
        [
            "#",
            text.t("columns.event"),
            text.t("columns.users"),
            text.t("columns.conversion"),
            text.t("columns.fromPrevious"),
            text.t("columns.dropOff"),
        ],
        (
            [
                text.number(s.step),
                f"<code>{escape(s.event)}</code>",
                text.number(s.users),
                text.percent(s.conversionFromStart),
                text.percent(s.conversionFromPrevious),
                text.number(s.dropOff),
            ]
            for s in report.funnel.funnel
        ),
        numeric_from=2,
    )


def cohorts(report: PeriodReport, text: ReportText) -> str:
    unit = "columns.week" if report.period == "week" else "columns.day"
    offsets = [text.t(unit, n=text.number(k)) for k in range(report.retention.periods)]
    return table(
        text.t("tables.cohorts"),
        [text.t("columns.cohort"), text.t("columns.size"), *offsets],
        (
            [
                escape(text.day_text(c.start)),
                text.number(c.size),
                *(NONE if r is None else text.percent(r, 0) for r in c.retention),
            ]
            for c in report.retention.cohorts
        ),
    )


def forwarding(health: ForwardingHealth | None, text: ReportText) -> str:
    if health is None:
        return ""

    def count(value: int | None) -> str:
        return NONE if value is None else text.number(value)

    def dead_letters(value: int | None) -> str:
        return f'<span class="{"down" if value else "flat"}">{count(value)}</span>'

    return table(
        text.t("tables.forwarding"),
        [
            text.t("columns.provider"),
            text.t("columns.queueDepth"),
            text.t("columns.deadLetters"),
            text.t("columns.oldest"),
        ],
        (
            [
                escape(p.provider),
                count(p.queueDepth),
                dead_letters(p.deadLetters),
                NONE if p.oldestAgeSeconds is None else escape(text.age(p.oldestAgeSeconds)),
            ]
            for p in health.providers
        ),
    )
