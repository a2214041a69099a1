"""A stored report as one Slack message (Block Kit): the period, its headline figures with
their change, and a button to the page. Same words and CLDR formatting as the page."""

from __future__ import annotations

from typing import Any

from mysoulmate.analytics.period_report_models import AmountChange, CountChange, PeriodReport
from mysoulmate.reports.page import title
from mysoulmate.reports.text import ReportText

# Slack's limits: a section holds at most 10 fields of at most 2,000 characters.
MAX_FIELDS = 10


def _figure(text: ReportText, label: str, shown: str, change: CountChange | AmountChange) -> str:
    arrow, _ = text.change(change.change, change.changePercent)
    return f"*{label}*\n{shown}  {arrow}"


def summary_message(report: PeriodReport, link: str | None, locale: str) -> dict[str, Any]:
    """The Block Kit payload: ``text`` (the notification's plain text) and ``blocks``; the
    button to the page only when there is a ``link`` a reader can open."""
    text = ReportText(locale)
    heading = title(report, text)
    totals = report.totals
    fields = [
        _figure(text, text.t("metrics.events"), text.number(totals.events.current), totals.events),
        _figure(
            text,
            text.t("metrics.activeUsers"),
            text.number(totals.activeUsers.current),
            totals.activeUsers,
        ),
        _figure(
            text, text.t("metrics.newUsers"), text.number(totals.newUsers.current), totals.newUsers
        ),
        _figure(
            text, text.t("metrics.sessions"), text.number(totals.sessions.current), totals.sessions
        ),
    ]
    for revenue in totals.revenue:
        fields.append(
            _figure(
                text,
                text.t("metrics.revenue", currency=revenue.currency),
                text.currency(revenue.current, revenue.currency),
                revenue,
            )
        )
    period = text.t("periodRange", range=text.date_range(report.from_, report.to))
    context = [period]
    if not report.complete:
        context.append(text.t("partial"))
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": heading[:150], "emoji": True}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(context)}]},
        {
            "type": "section",
            "fields": [{"type": "mrkdwn", "text": f[:2000]} for f in fields[:MAX_FIELDS]],
        },
    ]
    if link:
        button = {
            "type": "button",
            "text": {"type": "plain_text", "text": text.t("slack.open")},
            "url": link,
            "style": "primary",
        }
        blocks.append({"type": "actions", "elements": [button]})
    return {"text": f"{text.t('brand')}: {heading}", "blocks": blocks}
