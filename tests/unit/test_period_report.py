"""The period report's rules without a database: day and ISO-week arithmetic (week 53, year
boundaries), changes and percentages (no division by zero), and figures that are the
dashboard's own, on a small data set computed by hand (in memory).

The data set, weeks 2026-W49 (Nov 30 - Dec 6) and 2026-W50 (Dec 7 - 13), platform web:

    Nov 20  frank song_played                            (first seen in W47)
    Nov 30  alice signup                                 W49
    Dec 1   alice song_played                            W49
    Dec 2   bob(ios) signup                              W49
    Dec 7   carol signup, carol purchase 1200 JPY        W50
    Dec 8   alice purchase 10.10 USD                     W50
    Dec 9   bob(ios) song_played                         W50
    Dec 10  frank song_played                            W50
    Dec 13  dave song_played at 23:59:59                 W50
    Dec 14  erin song_played                             (W51: after)
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from mysoulmate.analytics.dashboard import build_dashboard
from mysoulmate.analytics.period_report import (
    Period,
    amount_change,
    build_period_report,
    change_percent,
    count_change,
)
from mysoulmate.analytics.period_report_models import (
    ForwardingHealth,
    PeriodReport,
    ProviderHealth,
)
from mysoulmate.reports.flat import HEADER, to_csv

from tests.support.memory_store import MemoryEventStore
from tests.support.messages import track

FUNNEL = ["signup", "song_played", "purchase"]
NOW = datetime(2026, 12, 14, 6, tzinfo=UTC)


def at(month: int, day: int, hour: int = 12, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, second, tzinfo=UTC)


@pytest.fixture
def store() -> MemoryEventStore:
    store = MemoryEventStore()
    result = store.insert_events(
        [
            track("frank", "song_played", at(11, 20)),
            track("alice", "signup", at(11, 30)),
            track("alice", "song_played", at(12, 1)),
            track("bob", "signup", at(12, 2), platform="ios"),
            track("carol", "signup", at(12, 7, 9)),
            track("carol", "purchase", at(12, 7, 10), revenue=1200, currency="JPY"),
            track("alice", "purchase", at(12, 8), revenue=10.1),
            track("bob", "song_played", at(12, 9), platform="ios"),
            track("frank", "song_played", at(12, 10)),
            track("dave", "song_played", at(12, 13, 23, 59, 59)),
            track("erin", "song_played", at(12, 14)),
        ]
    )
    assert result.written == 11
    return store


# -- periods ----------------------------------------------------------------------------------


def test_a_week_is_its_iso_week_whichever_day_names_it() -> None:
    weeks = {Period.week(date(2026, 12, 7) + timedelta(days=n)) for n in range(7)}
    assert weeks == {Period("week", date(2026, 12, 7))}
    week = weeks.pop()
    assert (week.first, week.last, week.key) == (
        date(2026, 12, 7),
        date(2026, 12, 13),
        "weekly/2026-W50",
    )
    assert Period.week(date(2026, 12, 6)).key == "weekly/2026-W49"
    assert Period.week(date(2026, 12, 14)) == week.next()


@pytest.mark.parametrize(
    ("day", "key", "first", "last"),
    [
        # 2026 has 53 ISO weeks (it starts on a Thursday): its last one ends in 2027.
        (date(2026, 12, 31), "weekly/2026-W53", date(2026, 12, 28), date(2027, 1, 3)),
        (date(2027, 1, 3), "weekly/2026-W53", date(2026, 12, 28), date(2027, 1, 3)),
        (date(2027, 1, 4), "weekly/2027-W01", date(2027, 1, 4), date(2027, 1, 10)),
        # 2020-W53 holds 1-3 January 2021; 2019-12-30 is already 2020-W01.
        (date(2021, 1, 1), "weekly/2020-W53", date(2020, 12, 28), date(2021, 1, 3)),
        (date(2019, 12, 31), "weekly/2020-W01", date(2019, 12, 30), date(2020, 1, 5)),
    ],
)
def test_iso_weeks_across_year_boundaries(day: date, key: str, first: date, last: date) -> None:
    week = Period.week(day)
    assert (week.key, week.first, week.last) == (key, first, last)
    assert Period.from_key(key) == week


def test_previous_and_next_cross_years_and_week_53() -> None:
    assert Period.week(date(2027, 1, 4)).previous().key == "weekly/2026-W53"
    assert Period.week(date(2026, 12, 28)).previous().key == "weekly/2026-W52"
    assert Period.week(date(2026, 12, 28)).next().key == "weekly/2027-W01"
    assert Period.week(date(2021, 1, 4)).previous().iso_week == (2020, 53)
    assert Period.day(date(2027, 1, 1)).previous() == Period.day(date(2026, 12, 31))
    assert Period.day(date(2028, 3, 1)).previous().key == "daily/2028-02-29"
    assert Period.day(date(2026, 12, 31)).next().key == "daily/2027-01-01"
    assert Period.week(date(2026, 12, 9)).back(8).key == "weekly/2026-W42"


def test_a_day_period() -> None:
    day = Period.day(date(2026, 12, 6))
    assert (day.first, day.last, day.key, str(day)) == (
        date(2026, 12, 6),
        date(2026, 12, 6),
        "daily/2026-12-06",
        "daily/2026-12-06",
    )
    assert day.span.days == 1
    assert Period.week(date(2026, 12, 6)).span.days == 7
    # A datetime names its UTC day.
    assert Period.day(datetime(2026, 12, 6, 23, 30, tzinfo=UTC)) == day
    assert Period.of("day", date(2026, 12, 6)) == day


def test_what_a_scheduled_run_reports() -> None:
    monday = date(2026, 12, 14)
    assert Period.last_complete("day", monday) == Period.day(date(2026, 12, 13))
    assert Period.last_complete("week", monday).key == "weekly/2026-W50"
    assert Period.last_complete("week", date(2026, 12, 20)).key == "weekly/2026-W50"
    assert Period.last_complete("week", date(2027, 1, 4)).key == "weekly/2026-W53"


@pytest.mark.parametrize(
    "key", ["weekly/2026-W54", "daily/2026-02-30", "monthly/2026-12", "daily/2026-12-6", ""]
)
def test_keys_that_are_not_periods(key: str) -> None:
    with pytest.raises(ValueError, match=r"not a report key|day is out of range|week"):
        Period.from_key(key)


def test_a_week_starts_on_monday_and_a_period_is_a_day_or_a_week() -> None:
    with pytest.raises(ValueError, match="Monday"):
        Period("week", date(2026, 12, 8))
    with pytest.raises(ValueError, match="day or a week"):
        Period("month", date(2026, 12, 1))  # type: ignore[arg-type]


# -- changes ----------------------------------------------------------------------------------


def test_changes_and_percentages() -> None:
    assert count_change(150, 120).model_dump() == {
        "current": 150,
        "previous": 120,
        "change": 30,
        "changePercent": 25.0,
    }
    assert count_change(2, 3).changePercent == -33.33
    assert count_change(0, 7).changePercent == -100.0
    assert count_change(5, 5).changePercent == 0.0


def test_no_division_by_zero_without_a_previous_value() -> None:
    assert count_change(9, 0).model_dump() == {
        "current": 9,
        "previous": 0,
        "change": 9,
        "changePercent": None,
    }
    assert count_change(0, 0).changePercent is None
    assert amount_change(0.0, 0.0).changePercent is None
    assert change_percent(Decimal(1), Decimal(0)) is None


def test_amount_changes_are_exact_decimals() -> None:
    change = amount_change(0.3, 0.1)
    assert (change.change, change.changePercent) == (0.2, 200.0)  # not 0.19999999999999998
    refund = amount_change(-5.0, 10.0)
    assert (refund.change, refund.changePercent) == (-15.0, -150.0)
    assert amount_change(10.0, -5.0).changePercent == 300.0  # relative to |previous|


# -- the report -------------------------------------------------------------------------------


def test_weekly_figures_are_the_dashboards(store: MemoryEventStore) -> None:
    week = Period.week(date(2026, 12, 10))
    report = build_period_report(store, week, funnel_steps=FUNNEL, now=NOW)
    dashboard = build_dashboard(store, week.span, None, 10, FUNNEL)
    before = build_dashboard(store, week.previous().span, None, 10, FUNNEL)
    assert (report.key, report.from_, report.to) == ("weekly/2026-W50", week.first, week.last)
    assert (report.previousFrom, report.previousTo) == (date(2026, 11, 30), date(2026, 12, 6))
    assert report.complete
    totals = report.totals
    assert (totals.events.current, totals.events.previous) == (6, 3)
    assert (totals.events.change, totals.events.changePercent) == (3, 100.0)
    assert (totals.activeUsers.current, totals.activeUsers.previous) == (5, 2)
    assert totals.activeUsers.changePercent == 150.0
    # New: carol and dave this week (frank was first seen in W47); alice and bob before.
    assert (totals.newUsers.current, totals.newUsers.previous) == (2, 2)
    assert [(r.currency, r.current, r.previous, r.changePercent) for r in totals.revenue] == [
        ("JPY", 1200.0, 0.0, None),
        ("USD", 10.1, 0.0, None),
    ]
    assert report.eventsByDay == dashboard.eventsByDay
    assert report.previousEventsByDay == before.eventsByDay
    assert report.activeUsersByDay == dashboard.dailyActiveUsers
    assert report.previousActiveUsersByDay == before.dailyActiveUsers
    assert report.revenueByDay == dashboard.revenue.byDay
    assert report.topEvents == dashboard.topEvents
    assert report.platforms == dashboard.platformBreakdown
    assert report.funnel == dashboard.funnel
    assert [s.users for s in report.funnel.funnel] == [1, 0, 0]  # carol signed up, bought
    assert (totals.sessions.current, totals.pageViews.current) == (
        dashboard.sessions,
        dashboard.pageViews,
    )
    assert report.forwarding is None


def test_the_retention_table_ends_with_the_reports_period(store: MemoryEventStore) -> None:
    report = build_period_report(
        store, Period.week(date(2026, 12, 13)), funnel_steps=FUNNEL, now=NOW
    )
    cohorts = report.retention
    assert (cohorts.period, cohorts.periods, len(cohorts.cohorts)) == ("week", 8, 8)
    assert (cohorts.cohorts[0].start, cohorts.cohorts[-1].start) == (
        date(2026, 10, 19),
        date(2026, 12, 7),
    )
    by_start = {c.start: c for c in cohorts.cohorts}
    assert by_start[date(2026, 11, 16)].active[:4] == [1, 0, 0, 1]  # frank: W47, then W50
    assert by_start[date(2026, 11, 30)].active[:3] == [2, 2, None]  # alice and bob came back
    assert by_start[date(2026, 12, 7)].size == 2


def test_a_daily_report_compares_with_the_day_before(store: MemoryEventStore) -> None:
    report = build_period_report(store, Period.day(date(2026, 12, 7)), funnel_steps=FUNNEL)
    assert report.key == "daily/2026-12-07"
    assert (report.previousFrom, report.previousTo) == (date(2026, 12, 6), date(2026, 12, 6))
    assert (report.totals.events.current, report.totals.events.previous) == (2, 0)
    assert report.totals.events.changePercent is None
    assert len(report.eventsByDay) == len(report.previousEventsByDay) == 1
    assert (report.retention.period, len(report.retention.cohorts)) == ("day", 7)
    assert report.totals.newUsers.current == 1


def test_an_empty_store_reports_zeros_not_errors() -> None:
    report = build_period_report(
        MemoryEventStore(), Period.week(date(2026, 12, 7)), funnel_steps=FUNNEL, now=NOW
    )
    totals = report.totals
    for figure in (totals.events, totals.activeUsers, totals.newUsers, totals.sessions):
        assert (figure.current, figure.previous, figure.changePercent) == (0, 0, None)
    assert totals.averageSessionSeconds.current == 0.0
    assert totals.revenue == []
    assert report.topEvents == []
    assert all(c.size == 0 for c in report.retention.cohorts)


def test_a_period_not_over_is_partial(store: MemoryEventStore) -> None:
    week = Period.week(date(2026, 12, 7))
    during = datetime(2026, 12, 13, 23, 0, tzinfo=UTC)
    assert not build_period_report(store, week, funnel_steps=FUNNEL, now=during).complete
    assert build_period_report(store, week, funnel_steps=FUNNEL, now=NOW).complete


def test_json_round_trips_with_forwarding_health(store: MemoryEventStore) -> None:
    health = ForwardingHealth(
        providers=[ProviderHealth(provider="mixpanel", queueDepth=3, deadLetters=0)],
        checkedAt=NOW,
    )
    report = build_period_report(
        store, Period.week(date(2026, 12, 7)), funnel_steps=FUNNEL, forwarding=health, now=NOW
    )
    dumped = report.model_dump_json()
    assert '"from":"2026-12-07"' in dumped
    assert PeriodReport.model_validate_json(dumped) == report


def test_the_csv_is_one_row_per_figure(store: MemoryEventStore) -> None:
    health = ForwardingHealth(providers=[ProviderHealth(provider="ga4", deadLetters=2)])
    report = build_period_report(
        store, Period.week(date(2026, 12, 7)), funnel_steps=FUNNEL, forwarding=health, now=NOW
    )
    rows = list(csv.reader(io.StringIO(to_csv(report))))
    assert tuple(rows[0]) == HEADER
    assert all(len(row) == 4 for row in rows)
    figures = {(s, k, f): v for s, k, f, v in rows[1:]}
    assert len(figures) == len(rows) - 1  # (section, key, field) is unique
    assert figures[("period", "key", "value")] == "weekly/2026-W50"
    assert figures[("totals", "events", "current")] == "6"
    assert figures[("totals", "revenue.USD", "changePercent")] == ""  # null: no base
    assert figures[("eventsByDay", "2026-12-07", "events")] == "2"
    assert figures[("revenueByDay", "2026-12-07", "JPY")] == "1200.0"
    assert figures[("topEvents", "song_played", "rank")] == "1"
    assert figures[("funnel", "1", "event")] == "signup"
    assert figures[("retention", "2026-11-30", "active.1")] == "2"
    assert figures[("retention", "2026-12-07", "active.1")] == ""  # the future
    assert figures[("forwarding", "ga4", "deadLetters")] == "2"
    assert figures[("forwarding", "ga4", "queueDepth")] == ""
