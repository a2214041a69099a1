"""The report's figures as CSV, one row per figure: ``section,key,field,value``.

Flat on purpose: a spreadsheet filters it and a script reads it without knowing the JSON's
shape. Values are machine-formatted (ISO dates, `.` decimals, empty for null), not localized.
Sections: `period`, `totals`, `eventsByDay`, `previousEventsByDay`, `activeUsersByDay`,
`previousActiveUsersByDay`, `revenueByDay`, `topEvents`, `topViews`, `platforms`, `funnel`,
`retention`, `forwarding`, `slowScreens` (docs/reports.md lists each one's keys and fields).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import date, datetime

from mysoulmate.analytics.period_report_models import AmountChange, CountChange, PeriodReport

HEADER = ("section", "key", "field", "value")
Row = tuple[str, str, str, str]
Value = str | int | float | bool | date | None


def cell(value: Value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, date | datetime):
        return value.isoformat()
    return str(value)


def _change(key: str, figure: CountChange | AmountChange) -> Iterator[Row]:
    for field in ("current", "previous", "change", "changePercent"):
        yield "totals", key, field, cell(getattr(figure, field))


def rows(report: PeriodReport) -> Iterator[Row]:
    for field, value in (
        ("kind", report.period),
        ("key", report.key),
        ("from", report.from_),
        ("to", report.to),
        ("previousFrom", report.previousFrom),
        ("previousTo", report.previousTo),
        ("generatedAt", report.generatedAt),
        ("complete", report.complete),
    ):
        yield "period", field, "value", cell(value)
    totals = report.totals
    for name in ("events", "activeUsers", "newUsers", "sessions"):
        yield from _change(name, getattr(totals, name))
    yield from _change("averageSessionSeconds", totals.averageSessionSeconds)
    yield from _change("pageViews", totals.pageViews)
    yield from _change("screenViews", totals.screenViews)
    for money in totals.revenue:
        yield from _change(f"revenue.{money.currency}", money)
    for section, days in (
        ("eventsByDay", report.eventsByDay),
        ("previousEventsByDay", report.previousEventsByDay),
    ):
        for day in days:
            yield section, cell(day.date), "events", cell(day.events)
    for section, users in (
        ("activeUsersByDay", report.activeUsersByDay),
        ("previousActiveUsersByDay", report.previousActiveUsersByDay),
    ):
        for active in users:
            yield section, cell(active.date), "users", cell(active.users)
    for revenue in report.revenueByDay:
        for amount in revenue.amounts:
            yield "revenueByDay", cell(revenue.date), amount.currency, cell(amount.amount)
    for rank, event in enumerate(report.topEvents, 1):
        yield "topEvents", event.event, "rank", cell(rank)
        yield "topEvents", event.event, "count", cell(event.count)
        yield "topEvents", event.event, "users", cell(event.users)
    for view in report.topViews:
        key = f"{view.kind}:{view.name or ''}"
        yield "topViews", key, "views", cell(view.views)
        yield "topViews", key, "users", cell(view.users)
    for screen in report.slowScreens:
        key = f"{screen.name}:{screen.platform}:{screen.appVersion}"
        for field in ("p90", "count", "previousVersion", "previousP90", "change", "regressed"):
            yield "slowScreens", key, field, cell(getattr(screen, field))
    for platform in report.platforms:
        yield "platforms", platform.platform, "events", cell(platform.events)
        yield "platforms", platform.platform, "users", cell(platform.users)
    for step in report.funnel.funnel:
        for field in ("event", "users", "conversionFromStart", "conversionFromPrevious", "dropOff"):
            yield "funnel", cell(step.step), field, cell(getattr(step, field))
    for cohort in report.retention.cohorts:
        key = cell(cohort.start)
        yield "retention", key, "size", cell(cohort.size)
        for k, (members, share) in enumerate(zip(cohort.active, cohort.retention, strict=True)):
            yield "retention", key, f"active.{k}", cell(members)
            yield "retention", key, f"retention.{k}", cell(share)
    if report.forwarding is not None:
        for provider in report.forwarding.providers:
            for field in ("queueDepth", "deadLetters", "oldestAgeSeconds"):
                yield "forwarding", provider.provider, field, cell(getattr(provider, field))


def to_csv(report: PeriodReport) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(HEADER)
    writer.writerows(rows(report))
    return out.getvalue()
