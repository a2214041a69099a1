"""Per-user reads, GDPR erasure and the audit log: same answers on every backend."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import pytest
from mysoulmate.analytics import gdpr
from mysoulmate.analytics.cohorts import build_cohorts
from mysoulmate.analytics.date_range import DateRange
from mysoulmate.analytics.models import Profile
from mysoulmate.analytics.ports import EventStore
from mysoulmate.analytics.reporting import dashboard_report, funnel_report
from mysoulmate.analytics.user_analytics import user_analytics
from mysoulmate.core.errors import InvalidRequestError

from tests.support.contract import day, track
from tests.support.dataset import january

JAN_1_4 = DateRange(date(2026, 1, 1), date(2026, 1, 4))
TODAY = date(2026, 1, 10)
WEEK = timedelta(days=7)


def ingest_january(store: EventStore) -> None:
    for batch in january():
        store.insert_events(batch)
    store.update_profile("bob", lambda _: Profile(userId="bob", traits={"plan": "pro"}))


def test_user_summary_counts_sessions_and_first_last_seen(store: EventStore) -> None:
    ingest_january(store)
    alice = user_analytics(store, "alice", 50, None, None, None)
    assert alice.eventCounts == {
        "companion_created": 1,
        "message_sent": 3,
        "purchase": 1,
        "signup": 1,
    }
    # 10:00 and 11:00 are an hour apart (two sessions); 12:00-12:20 is one; Jan 3 one more.
    assert alice.sessions == 4
    assert alice.profile.firstSeen == day(1, 10)
    assert alice.profile.lastSeen == day(3, 8)
    assert [e.event for e in alice.events] == [
        "purchase",
        "message_sent",
        "message_sent",
        "message_sent",
        "companion_created",
        "signup",
    ]


def test_user_filters_bound_counts_and_list(store: EventStore) -> None:
    ingest_january(store)
    jan2 = DateRange(date(2026, 1, 2), date(2026, 1, 2))
    alice = user_analytics(store, "alice", 50, None, jan2, None)
    assert (alice.eventCounts, alice.sessions, len(alice.events)) == ({"message_sent": 3}, 1, 3)
    purchases = user_analytics(store, "alice", 50, None, None, "purchase")
    assert [e.event for e in purchases.events] == ["purchase"]
    bob = user_analytics(store, "bob", 50, None, None, None)
    assert bob.profile.traits == {"plan": "pro"}
    # bob's identify is an event of his too (type identify), listed but not counted.
    assert [e.type for e in bob.events].count("identify") == 1
    assert sum(bob.eventCounts.values()) == 3


def test_pages_cover_every_event_once_and_tampered_cursors_are_refused(
    store: EventStore,
) -> None:
    store.insert_events([track("zoe", "tap", day(1, 0, i)) for i in range(7)])
    seen: list[str] = []
    cursor = None
    while True:
        page = user_analytics(store, "zoe", 3, cursor, None, None)
        seen += [e.messageId for e in page.events]
        cursor = page.nextCursor
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 7
    first = user_analytics(store, "zoe", 3, None, None, None)
    assert first.nextCursor is not None
    with pytest.raises(InvalidRequestError):
        user_analytics(store, "zoe", 3, first.nextCursor[:-2] + "xx", None, None)
    with pytest.raises(InvalidRequestError):
        user_analytics(store, "zoe", 3, "not-a-cursor", None, None)


def test_cohorts_by_day_and_week(store: EventStore) -> None:
    ingest_january(store)
    daily = build_cohorts(store, DateRange(date(2026, 1, 1), date(2026, 1, 3)), "day", 3, TODAY)
    assert [(c.start, c.size, c.active) for c in daily.cohorts] == [
        (date(2026, 1, 1), 2, [2, 2, 2]),
        (date(2026, 1, 2), 1, [1, 0, 0]),
        (date(2026, 1, 3), 1, [1, 0, 0]),
    ]
    assert daily.cohorts[1].retention == [1.0, 0.0, 0.0]
    weekly = build_cohorts(store, DateRange(date(2026, 1, 1), date(2026, 1, 1)), "week", 3, TODAY)
    # 2026-01-01 is a Thursday: its ISO week starts on Monday 2025-12-29.
    assert [(c.start, c.size, c.active) for c in weekly.cohorts] == [
        (date(2025, 12, 29), 4, [4, 0, None])
    ]


def test_first_seen_moves_earlier_when_an_older_event_arrives_late(store: EventStore) -> None:
    ingest_january(store)
    store.insert_events([track("dave", "signup", datetime(2025, 12, 31, tzinfo=UTC))])
    daily = build_cohorts(store, DateRange(date(2025, 12, 31), date(2026, 1, 3)), "day", 4, TODAY)
    sizes = {c.start: c.size for c in daily.cohorts}
    assert sizes == {
        date(2025, 12, 31): 1,
        date(2026, 1, 1): 2,
        date(2026, 1, 2): 1,
        date(2026, 1, 3): 0,
    }
    assert daily.cohorts[0].active == [1, 0, 0, 1]


def test_erasure_removes_the_user_everywhere_but_keeps_anonymous_counts(
    store: EventStore,
) -> None:
    ingest_january(store)
    before = dashboard_report(store, JAN_1_4, None, 10)
    report = gdpr.erase(store, "admin-1", "bob")
    assert (report.eventsDeleted, report.profileDeleted) == (4, True)  # 3 track + 1 identify

    assert store.get_profile("bob") is None
    assert store.list_events("bob", 50, None).events == []
    assert store.user_event_points("bob") == []
    exported = json.loads("".join(gdpr.export_json(store, "bob")))
    assert (exported["profile"], exported["events"]) == (None, [])

    after = dashboard_report(store, JAN_1_4, None, 10)
    assert after.totalEvents == before.totalEvents  # anonymous counts stay
    assert after.activeUsers == before.activeUsers - 1
    assert [d.users for d in after.dailyActiveUsers] == [1, 2, 2, 0]
    ios = next(p for p in after.platformBreakdown if p.platform == "ios")
    assert (ios.events, ios.users) == (3, 0)
    funnel = funnel_report(store, ["signup", "message_sent"], JAN_1_4, WEEK, "ordered")
    assert funnel.usersEntered == 1
    cohort = build_cohorts(store, DateRange(date(2026, 1, 1), date(2026, 1, 1)), "day", 1, TODAY)
    assert cohort.cohorts[0].size == 1

    again = gdpr.erase(store, "admin-1", "bob")
    assert (again.eventsDeleted, again.profileDeleted) == (0, False)


def test_an_erased_user_who_returns_is_counted_afresh(store: EventStore) -> None:
    ingest_january(store)
    gdpr.erase(store, "bob", "bob")
    comeback = track("bob", "signup", day(4), platform="ios")
    # Received after the erasure (a message received before it would be dropped).
    later = datetime.now(UTC) + timedelta(seconds=1)
    store.insert_events([comeback.model_copy(update={"receivedAt": later})])
    after = dashboard_report(store, JAN_1_4, None, 10)
    assert [d.users for d in after.dailyActiveUsers] == [1, 2, 2, 1]
    assert after.activeUsers == 4  # alice, carol, dave and the returning bob


def test_export_streams_profile_and_every_event(store: EventStore) -> None:
    ingest_january(store)
    store.insert_events([track("bob", "tap", day(5, 0, 0, i)) for i in range(1, 40)])
    document = json.loads("".join(gdpr.export_json(store, "bob")))
    assert document["userId"] == "bob"
    assert document["profile"]["traits"] == {"plan": "pro"}
    assert len(document["events"]) == 4 + 39
    assert len({e["messageId"] for e in document["events"]}) == 43
    rows = "".join(gdpr.export_csv(store, "bob")).splitlines()
    assert rows[0].split(",")[:3] == ["messageId", "type", "event"]
    assert rows[1].split(",")[1] == "profile"
    assert len(rows) == 1 + 1 + 43


def test_audit_log_is_newest_first_filterable_and_paginated(store: EventStore) -> None:
    for i in range(5):
        gdpr.record(store, "admin-1", "export", f"user-{i % 2}", format="json")
    gdpr.erase(store, "user-0", "user-0")
    page = store.list_audit(4, None)
    assert len(page.entries) == 4
    assert page.next_cursor is not None
    assert page.entries[0].action == "delete"
    assert page.entries[0].actor == "user-0"
    assert page.entries[0].details == {"events": 0, "profile": False}
    rest = store.list_audit(4, page.next_cursor)
    assert len(rest.entries) == 2
    assert rest.next_cursor is None
    everything = page.entries + rest.entries
    assert [e.at for e in everything] == sorted((e.at for e in everything), reverse=True)
    assert len({e.id for e in everything}) == 6
    mine = store.list_audit(50, None, subject="user-1")
    assert [e.subject for e in mine.entries] == ["user-1", "user-1"]
