"""GDPR rights on an in-memory store: what an export holds (JSON and CSV), what an erasure
removes and what it keeps, and the audit trail both leave."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, date, datetime, timedelta
from functools import partial
from typing import Any

import pytest
from mysoulmate.analytics import gdpr
from mysoulmate.analytics.cohorts import build_cohorts
from mysoulmate.analytics.dashboard import build_dashboard
from mysoulmate.analytics.date_range import DateRange
from mysoulmate.analytics.models import QueuedMessage
from mysoulmate.analytics.profiles import merge_identify
from mysoulmate.analytics.report_models import DashboardReport

from tests.support.memory_store import MemoryEventStore
from tests.support.messages import identify, jan, track

JAN_1_3 = DateRange(date(2026, 1, 1), date(2026, 1, 3))
TODAY = date(2026, 1, 10)


SECOND = timedelta(seconds=1)


def ingest(store: MemoryEventStore, messages: list[QueuedMessage]) -> None:
    """What the consumer does: store the events, merge identifies into profiles."""
    assert not store.insert_events(messages).failed
    for message in messages:
        if message.type == "identify":
            store.update_profile(message.userId, partial(merge_identify, message=message))


@pytest.fixture
def store() -> MemoryEventStore:
    store = MemoryEventStore()
    ingest(
        store,
        [
            track("alice", "signup", jan(1, 10), message_id="a-1"),
            track("alice", "purchase", jan(2, 10), message_id="a-2", revenue=5),
            identify("bob", jan(1, 8), message_id="b-0", plan="pro", name="Bob"),
            track("bob", "signup", jan(1, 9), platform="ios", message_id="b-1"),
            track("bob", "purchase", jan(2, 9), platform="ios", message_id="b-2", revenue=9.99),
            track("carol", "signup", jan(2, 11), message_id="c-1"),
        ],
    )
    return store


def dashboard(store: MemoryEventStore) -> DashboardReport:
    return build_dashboard(store, JAN_1_3, None, 10, ["signup", "purchase"])


def export(store: MemoryEventStore, user: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads("".join(gdpr.export_json(store, user)))
    return document


# -- export ------------------------------------------------------------------------------


def test_json_export_holds_the_profile_and_every_event_newest_first(
    store: MemoryEventStore,
) -> None:
    document = export(store, "bob")
    exported_at = datetime.fromisoformat(document.pop("exportedAt"))
    assert abs(datetime.now(UTC) - exported_at) < timedelta(minutes=1)
    assert document == {
        "userId": "bob",
        "profile": {
            "userId": "bob",
            "traits": {"plan": "pro", "name": "Bob"},
            "traitTimes": {"plan": "2026-01-01T08:00:00Z", "name": "2026-01-01T08:00:00Z"},
            "anonymousIds": [],
            "groups": {},
            "groupTraitTimes": {},
            "updatedAt": "2026-01-01T08:00:00Z",
        },
        "events": [
            {
                "messageId": "b-2",
                "type": "track",
                "event": "purchase",
                "properties": {"revenue": 9.99},
                "timestamp": "2026-01-02T09:00:00Z",
                "receivedAt": "2026-01-02T09:00:00Z",
                "anonymousId": None,
                "platform": "ios",
                "context": {},
                "sessionId": None,
            },
            {
                "messageId": "b-1",
                "type": "track",
                "event": "signup",
                "properties": {},
                "timestamp": "2026-01-01T09:00:00Z",
                "receivedAt": "2026-01-01T09:00:00Z",
                "anonymousId": None,
                "platform": "ios",
                "context": {},
                "sessionId": None,
            },
            {  # an identify's traits are exported as its properties
                "messageId": "b-0",
                "type": "identify",
                "event": None,
                "properties": {"plan": "pro", "name": "Bob"},
                "timestamp": "2026-01-01T08:00:00Z",
                "receivedAt": "2026-01-01T08:00:00Z",
                "anonymousId": None,
                "platform": None,
                "context": {},
                "sessionId": None,
            },
        ],
    }


def test_an_export_never_holds_another_users_data(store: MemoryEventStore) -> None:
    document = export(store, "alice")
    assert document["profile"] is None  # alice never identified
    assert [e["messageId"] for e in document["events"]] == ["a-2", "a-1"]


def test_exporting_an_unknown_user_gives_an_empty_document(store: MemoryEventStore) -> None:
    document = export(store, "nobody")
    assert (document["userId"], document["profile"], document["events"]) == ("nobody", None, [])
    rows = list(csv.reader(io.StringIO("".join(gdpr.export_csv(store, "nobody")))))
    assert rows == [list(gdpr.CSV_COLUMNS)]


def test_an_export_spanning_several_pages_holds_every_event_once() -> None:
    store = MemoryEventStore()
    count = gdpr.EXPORT_PAGE * 2 + 1
    start = datetime(2026, 1, 1, tzinfo=UTC)
    ingest(
        store,
        [track("zoe", "tap", start + timedelta(seconds=i // 3)) for i in range(count)],
    )
    events = export(store, "zoe")["events"]
    assert len(events) == len({e["messageId"] for e in events}) == count
    times = [e["timestamp"] for e in events]
    assert times == sorted(times, reverse=True)
    rows = list(csv.reader(io.StringIO("".join(gdpr.export_csv(store, "zoe")))))
    assert len(rows) == 1 + count


def test_csv_export_has_a_profile_row_then_one_row_per_event(store: MemoryEventStore) -> None:
    rows = list(csv.reader(io.StringIO("".join(gdpr.export_csv(store, "bob")))))
    assert rows[0] == [
        "messageId",
        "type",
        "event",
        "timestamp",
        "receivedAt",
        "platform",
        "anonymousId",
        "properties",
        "context",
    ]
    assert rows[1][:4] == ["", "profile", "", "2026-01-01T08:00:00+00:00"]
    assert json.loads(rows[1][7]) == {"plan": "pro", "name": "Bob"}
    assert rows[2] == [
        "b-2",
        "track",
        "purchase",
        "2026-01-02T09:00:00+00:00",
        "2026-01-02T09:00:00+00:00",
        "ios",
        "",
        '{"revenue":9.99}',
        "{}",
    ]
    assert [(row[0], row[1]) for row in rows[3:]] == [("b-1", "track"), ("b-0", "identify")]


def test_csv_export_keeps_commas_quotes_newlines_and_unicode_intact() -> None:
    store = MemoryEventStore()
    tricky = {"note": 'one, "two"\nthree', "city": "Zürich 東京"}
    ingest(store, [track("ann", "note", jan(1), message_id="n-1", **tricky)])
    rows = list(csv.reader(io.StringIO("".join(gdpr.export_csv(store, "ann")))))
    assert len(rows) == 2
    assert json.loads(rows[1][7]) == tricky


# -- erasure -----------------------------------------------------------------------------


def test_erasure_reports_what_it_removed_and_writes_an_audit_entry(
    store: MemoryEventStore,
) -> None:
    report = gdpr.erase(store, "admin-1", "bob")
    assert (report.userId, report.erased, report.eventsDeleted, report.profileDeleted) == (
        "bob",
        True,
        3,  # two tracks and the identify
        True,
    )
    [entry] = store.list_audit(10, None, subject="bob").entries
    assert (entry.id, entry.actor, entry.action, entry.subject, entry.details) == (
        report.auditId,
        "admin-1",
        "delete",
        "bob",
        {"events": 3, "profile": True},
    )


def test_erasure_removes_the_users_events_and_profile_only(store: MemoryEventStore) -> None:
    gdpr.erase(store, "admin-1", "bob")
    assert store.get_profile("bob") is None
    assert store.list_events("bob", 50, None).events == []
    assert store.user_event_points("bob") == []
    assert export(store, "bob")["events"] == []
    starts, until = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 3, tzinfo=UTC)
    assert [u for u, _ in store.funnel_candidates("signup", starts, until, until, None)] == [
        "alice",
        "carol",
    ]
    assert [e.messageId for e in store.list_events("alice", 50, None).events] == ["a-2", "a-1"]


def test_erasure_keeps_anonymous_counts_and_revenue_but_not_the_user(
    store: MemoryEventStore,
) -> None:
    before = dashboard(store)
    assert (before.totalEvents, before.activeUsers) == (5, 3)
    gdpr.erase(store, "admin-1", "bob")
    after = dashboard(store)
    assert after.totalEvents == 5
    assert [d.events for d in after.eventsByDay] == [2, 3, 0]
    assert after.revenue == before.revenue
    assert [(c.currency, c.amount) for c in after.revenue.totals] == [("USD", 14.99)]
    assert after.activeUsers == 2
    assert [d.users for d in after.dailyActiveUsers] == [1, 2, 0]
    assert [(e.event, e.count, e.users) for e in after.topEvents] == [
        ("signup", 3, 2),
        ("purchase", 2, 1),
    ]
    assert [(p.platform, p.events, p.users) for p in after.platformBreakdown] == [
        ("web", 3, 2),
        ("ios", 2, 0),
    ]
    assert [s.users for s in after.funnel.funnel] == [2, 1]


def test_an_erased_user_leaves_the_cohorts(store: MemoryEventStore) -> None:
    def sizes() -> list[int]:
        report = build_cohorts(store, JAN_1_3, "day", 1, TODAY)
        return [c.size for c in report.cohorts]

    assert sizes() == [2, 1, 0]
    gdpr.erase(store, "admin-1", "bob")
    assert sizes() == [1, 1, 0]


def test_erasure_is_idempotent_and_each_request_is_audited(store: MemoryEventStore) -> None:
    gdpr.erase(store, "admin-1", "bob")
    after_first = dashboard(store).model_dump(mode="json")
    again = gdpr.erase(store, "admin-2", "bob")
    assert (again.erased, again.eventsDeleted, again.profileDeleted) == (True, 0, False)
    assert dashboard(store).model_dump(mode="json") == after_first
    entries = store.list_audit(10, None, subject="bob").entries
    assert [(e.actor, e.details) for e in entries] == [
        ("admin-2", {"events": 0, "profile": False}),
        ("admin-1", {"events": 3, "profile": True}),
    ]


def test_erasing_a_user_never_seen_is_recorded_too() -> None:
    store = MemoryEventStore()
    report = gdpr.erase(store, "nobody", "nobody")
    assert (report.eventsDeleted, report.profileDeleted) == (0, False)
    assert [e.id for e in store.list_audit(10, None).entries] == [report.auditId]


def test_an_erased_user_who_returns_is_counted_afresh(store: MemoryEventStore) -> None:
    gdpr.erase(store, "bob", "bob")
    comeback = track("bob", "signup", jan(3, 9), platform="ios", message_id="b-1")
    # Received after the erasure (a message received before it would be dropped).
    ingest(store, [comeback.model_copy(update={"receivedAt": datetime.now(UTC) + SECOND})])
    report = dashboard(store)
    assert report.totalEvents == 6  # the re-sent b-1 is a new event after erasure
    assert [d.users for d in report.dailyActiveUsers] == [1, 2, 1]
    cohorts = build_cohorts(store, JAN_1_3, "day", 1, TODAY)
    assert [c.size for c in cohorts.cohorts] == [1, 1, 1]


# -- the audit trail ---------------------------------------------------------------------


def test_record_writes_who_did_what_to_whom_with_details() -> None:
    store = MemoryEventStore()
    entry = gdpr.record(store, "admin-1", "export", "alice", format="csv")
    assert abs(datetime.now(UTC) - entry.at) < timedelta(minutes=1)
    [stored] = store.list_audit(10, None).entries
    assert stored == entry
    assert (stored.actor, stored.action, stored.subject, stored.details) == (
        "admin-1",
        "export",
        "alice",
        {"format": "csv"},
    )


def test_audit_entries_have_distinct_ids_and_filter_by_subject() -> None:
    store = MemoryEventStore()
    entries = [gdpr.record(store, "admin", "export", f"user-{i % 2}") for i in range(6)]
    assert len({e.id for e in entries}) == 6
    mine = store.list_audit(50, None, subject="user-1").entries
    assert sorted(e.id for e in mine) == sorted(e.id for e in entries[1::2])
    first = store.list_audit(4, None)
    rest = store.list_audit(4, first.next_cursor)
    assert (len(first.entries), len(rest.entries), rest.next_cursor) == (4, 2, None)
    assert {e.id for e in first.entries + rest.entries} == {e.id for e in entries}
