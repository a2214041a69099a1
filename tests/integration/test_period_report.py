"""The period report against the running app's own answers, on SQLite through the consumer:
its figures are `/api/v1/analytics/dashboard`'s (and `/cohorts`') for the same range, the
page is written once per period, renders in every locale with CLDR formatting, and asks for
nothing from anywhere (no URL to fetch in the HTML)."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, date, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from mysoulmate.analytics.period_report import Period, build_period_report
from mysoulmate.analytics.period_report_models import (
    ForwardingHealth,
    PeriodReport,
    ProviderHealth,
)
from mysoulmate.core.settings import get_settings
from mysoulmate.i18n.formatting import format_currency, format_number
from mysoulmate.i18n.translate import t
from mysoulmate.reports import render_report
from mysoulmate.reports.job import write_report
from mysoulmate.reports.text import UnknownLocaleError
from mysoulmate.runtime.backends import event_store

from tests.support.helpers import auth_header
from tests.support.report_data import REPORT_WEEK, seed_demo

LOCALES = ["en", "fr", "es", "de", "it", "pt", "ja", "zh"]
AFTER = datetime(2026, 11, 30, 6, tzinfo=UTC)  # the Monday after REPORT_WEEK
# A reference the browser would fetch: src/href/xlink:href attributes, CSS url(), @import.
FETCHED = re.compile(
    r"""(?:\b(?:src|href|srcset|action|poster|data)\s*=\s*["']?\s*(?:[a-z][a-z0-9+.-]*:|//))"""
    r"""|(?:url\(\s*["']?\s*(?!#)[^)'"\s])|(?:@import)""",
    re.IGNORECASE,
)


@pytest.fixture
def report_store() -> Any:
    store = event_store()
    assert seed_demo(store, users=160) > 1000
    return store


def dashboard(client: TestClient, period: Period) -> dict[str, Any]:
    response = client.get(
        "/api/v1/analytics/dashboard",
        params={"from": period.first.isoformat(), "to": period.last.isoformat()},
        headers=auth_header("root", "admin"),
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def report_of(period: Period, **options: Any) -> PeriodReport:
    return build_period_report(
        event_store(), period, funnel_steps=get_settings().default_funnel, now=AFTER, **options
    )


@pytest.mark.parametrize("period", [Period.week(REPORT_WEEK), Period.day(date(2026, 11, 27))])
def test_the_reports_figures_are_the_dashboards(
    report_store: Any, client: TestClient, period: Period
) -> None:
    report = report_of(period)
    now, before = dashboard(client, period), dashboard(client, period.previous())
    assert now["totalEvents"] > 0
    assert before["totalEvents"] > 0
    totals = report.totals
    for name, figure in (
        ("totalEvents", totals.events),
        ("activeUsers", totals.activeUsers),
        ("sessions", totals.sessions),
        ("averageSessionSeconds", totals.averageSessionSeconds),
        ("pageViews", totals.pageViews),
        ("screenViews", totals.screenViews),
    ):
        assert (figure.current, figure.previous) == (now[name], before[name]), name
    revenue = {r.currency: (r.current, r.previous) for r in totals.revenue}
    answered = {a["currency"]: a["amount"] for a in now["revenue"]["totals"]}
    answered_before = {a["currency"]: a["amount"] for a in before["revenue"]["totals"]}
    assert revenue == {
        c: (answered.get(c, 0.0), answered_before.get(c, 0.0)) for c in answered | answered_before
    }
    dumped = report.model_dump(mode="json")
    assert dumped["eventsByDay"] == now["eventsByDay"]
    assert dumped["previousEventsByDay"] == before["eventsByDay"]
    assert dumped["activeUsersByDay"] == now["dailyActiveUsers"]
    assert dumped["revenueByDay"] == now["revenue"]["byDay"]
    assert dumped["topEvents"] == now["topEvents"]
    assert dumped["topViews"] == now["topViews"]
    assert dumped["platforms"] == now["platformBreakdown"]
    assert dumped["funnel"] == now["funnel"]
    assert dumped["slowScreens"] == now["slowScreens"]


def test_the_report_names_the_screen_a_new_version_made_slower(report_store: Any) -> None:
    report = report_of(Period.week(REPORT_WEEK))
    screens = {(s.name, s.platform): s for s in report.slowScreens}
    chat = screens[("Chat", "ios")]
    assert (chat.appVersion, chat.previousVersion) == ("2.4.0", "2.3.2")
    assert chat.regressed
    assert chat.change is not None
    assert 0.2 < chat.change < 0.5  # generated a third slower
    assert not screens[("Chat", "android")].regressed
    assert [s for s in report.slowScreens if s.regressed] == [chat]
    assert [s.p90 for s in report.slowScreens] == sorted(
        (s.p90 for s in report.slowScreens), reverse=True
    )
    rendered = render_report(report, "fr")
    assert "Écrans les plus lents" in rendered.html
    assert "régression" in rendered.html
    assert "slowScreens,Chat:ios:2.4.0,regressed,true" in rendered.csv


def test_new_users_and_retention_are_the_cohorts_endpoints(
    report_store: Any, client: TestClient
) -> None:
    week = Period.week(REPORT_WEEK)
    report = report_of(week)
    response = client.get(
        "/api/v1/analytics/cohorts",
        params={
            "from": week.back(7).first.isoformat(),
            "to": week.last.isoformat(),
            "period": "week",
            "periods": 8,
        },
        headers=auth_header("root", "admin"),
    )
    assert response.status_code == 200, response.text
    cohorts = response.json()["cohorts"]
    sizes = [c["size"] for c in cohorts]
    assert (report.totals.newUsers.current, report.totals.newUsers.previous) == tuple(sizes[-2:])[
        ::-1
    ]
    # The endpoint's "today" is the real one; the report's retention is as of its period's
    # end: the periods both know agree.
    for ours, theirs in zip(report.retention.cohorts, cohorts, strict=True):
        assert ours.start.isoformat() == theirs["start"]
        known = [k for k, n in enumerate(ours.active) if n is not None]
        assert [ours.active[k] for k in known] == [theirs["active"][k] for k in known]


class Cards(HTMLParser):
    """The headline cards of the page: metric → (data-current, the text of its value)."""

    def __init__(self) -> None:
        super().__init__()
        self.cards: dict[str, tuple[str, str]] = {}
        self._metric: str | None = None
        self._in_value = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if values.get("data-metric"):
            self._metric = values["data-metric"]
            self.cards[self._metric or ""] = (values.get("data-current") or "", "")
        self._in_value = values.get("class") == "value" and self._metric is not None

    def handle_data(self, data: str) -> None:
        if self._in_value and self._metric:
            current, _ = self.cards[self._metric]
            self.cards[self._metric] = (current, data)
            self._in_value = False


def test_the_pages_numbers_are_the_dashboards(report_store: Any, client: TestClient) -> None:
    week = Period.week(REPORT_WEEK)
    now = dashboard(client, week)
    rendered = render_report(report_of(week), "de")
    parser = Cards()
    parser.feed(rendered.html)
    cards = parser.cards
    for metric, key in (
        ("events", "totalEvents"),
        ("activeUsers", "activeUsers"),
        ("sessions", "sessions"),
        ("pageViews", "pageViews"),
    ):
        assert cards[metric] == (str(now[key]), format_number(now[key], "de")), metric
    for amount in now["revenue"]["totals"]:
        current, shown = cards[f"revenue.{amount['currency']}"]
        assert float(current) == amount["amount"]
        assert shown == format_currency(amount["amount"], amount["currency"], "de")
    rows = list(csv.reader(io.StringIO(rendered.csv)))
    figures = {(s, k, f): v for s, k, f, v in rows[1:]}
    assert figures[("totals", "events", "current")] == str(now["totalEvents"])
    assert figures[("totals", "activeUsers", "current")] == str(now["activeUsers"])
    assert json.loads(rendered.json)["totals"]["events"]["current"] == now["totalEvents"]


def test_writing_is_idempotent_per_period(report_store: Any, tmp_path: Path) -> None:
    week = Period.week(REPORT_WEEK)
    first = write_report(report_store, week, tmp_path, locale="en", now=AFTER)
    assert (first.written, first.directory) == (True, tmp_path / "weekly" / "2026-W48")
    assert sorted(p.name for p in first.directory.iterdir()) == [
        "report.csv",
        "report.html",
        "report.json",
    ]
    stamps = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in first.files}
    again = write_report(report_store, week, tmp_path, locale="fr")
    assert (again.written, again.reason) == (False, "exists")
    assert "nothing written" in again.message
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in first.files} == stamps
    forced = write_report(report_store, week, tmp_path, locale="fr", force=True, now=AFTER)
    assert (forced.written, forced.reason) == (True, "forced")
    assert '<html lang="fr"' in (first.directory / "report.html").read_text(encoding="utf-8")
    assert not [p for p in first.directory.iterdir() if p.name.startswith(".")]  # no leftovers


def test_a_partial_period_is_replaced_by_the_next_run(report_store: Any, tmp_path: Path) -> None:
    week = Period.week(REPORT_WEEK)
    during = datetime(2026, 11, 26, 12, tzinfo=UTC)
    partial = write_report(report_store, week, tmp_path, locale="en", now=during)
    assert json.loads((partial.directory / "report.json").read_text())["complete"] is False
    final = write_report(report_store, week, tmp_path, locale="en", now=AFTER)
    assert (final.written, final.reason) == (True, "replaced partial")
    assert write_report(report_store, week, tmp_path, locale="en").written is False


def test_an_unknown_locale_fails_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(UnknownLocaleError, match="xx"):
        write_report(event_store(), Period.week(REPORT_WEEK), tmp_path / "out", locale="xx")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("locale", LOCALES)
def test_every_locale_renders(report_store: Any, locale: str) -> None:
    health = ForwardingHealth(
        providers=[
            ProviderHealth(provider="mixpanel", queueDepth=1234, deadLetters=0),
            ProviderHealth(provider="ga4", queueDepth=0, deadLetters=3, oldestAgeSeconds=7300),
        ]
    )
    report = report_of(Period.week(REPORT_WEEK), forwarding=health)
    html = render_report(report, locale).html
    assert f'<html lang="{locale}"' in html
    assert not re.findall(r"report\.[a-zA-Z]+\.?[a-zA-Z]*", html), "a key was not translated"
    for key in ("report.brand", "report.metrics.activeUsers", "report.tables.forwarding"):
        assert t(key, locale) in html
    assert format_number(report.totals.events.current, locale) in html
    assert format_number(1234, locale) in html
    assert html.count("<svg") == 5
    assert html.count('data-chart="') == 5


def test_the_page_asks_for_nothing_from_anywhere(report_store: Any) -> None:
    html = render_report(report_of(Period.week(REPORT_WEEK)), "en").html
    assert not FETCHED.findall(html)
    assert "http://" not in html
    assert "https://" not in html
    assert "<script" not in html
    assert "<link" not in html
    assert "default-src 'none'" in html
    # The pattern does catch what it must (so that the assertions above can fail).
    for bad in (
        '<img src="https://cdn.example/x.png">',
        "<link href=//fonts.example/css>",
        "<style>body{background:url('http://x/y.png')}</style>",
        '<image xlink:href="data:image/png;base64,AAAA"/>',
        "<style>@import 'x.css';</style>",
    ):
        assert FETCHED.search(bad), bad
    assert not FETCHED.search('<path clip-path="url(#c1-clip3)"/>')
