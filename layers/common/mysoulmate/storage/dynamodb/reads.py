"""The read side of DynamoEventStore, as a mixin over the store's table and client:
profiles, a user's events (ByUserTime pages with pinned cursors), the daily rollups read
partition by partition, funnel candidates (day user sets, then each candidate's events) and
audit pages, with the query helpers and key bounds they share.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any, cast

from botocore.exceptions import BotoCoreError, ClientError

from mysoulmate.analytics.models import AuditEntry, AuditPage, EventPage, Profile, StoredEvent
from mysoulmate.analytics.ports import (
    ANY_EVENT,
    CountRow,
    EventPoint,
    RevenueRow,
    SessionRow,
    StorageUnavailableError,
    UserSet,
    UsersRow,
    UserSummary,
    time_key,
)
from mysoulmate.analytics.rollups import split_session_rows, weekly_from_daily
from mysoulmate.storage.dynamodb.keys import (
    AUDIT_PK,
    BY_USER_TIME,
    EVENT_SESSION,
    PROFILE_SK,
    user_pk,
)
from mysoulmate.storage.dynamodb.rollups import days_between, rollup_pk
from mysoulmate.storage.paging import decode_cursor, next_page_cursor

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

    from mysoulmate.analytics.date_range import DateRange

_INDEX_KEYS = ("pk", "sk", "gsi1pk", "gsi1sk")
_CURSOR_KEYS = {*_INDEX_KEYS, "q"}
_AUDIT_CURSOR_KEYS = {"pk", "sk", "q"}


class DynamoReads:
    """Queries of DynamoEventStore that only read; the store sets `_table` and `_client`."""

    _table: str
    _client: DynamoDBClient

    # -- reads --------------------------------------------------------------------------

    def get_profile(self, user_id: str) -> Profile | None:
        try:
            response = self._client.get_item(
                TableName=self._table,
                Key={"pk": {"S": user_pk(user_id)}, "sk": {"S": PROFILE_SK}},
                ConsistentRead=True,
            )
        except (ClientError, BotoCoreError) as exc:
            raise StorageUnavailableError(f"dynamodb: {exc}") from exc
        item = response.get("Item")
        if not item:
            return None
        return Profile.model_validate_json(item["doc"]["S"])

    def list_events(
        self,
        user_id: str,
        limit: int,
        cursor: str | None,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        event: str | None = None,
    ) -> EventPage:
        pk = user_pk(user_id)
        bounds = _sk_bounds(start, end)
        if bounds is None:
            return EventPage(events=[])
        scope = _scope(f"{start}|{end}|{event}")
        query: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": BY_USER_TIME,
            "ProjectionExpression": "pk, sk, gsi1pk, gsi1sk, #doc",
            "ExpressionAttributeNames": {"#doc": "doc"},
            "ScanIndexForward": False,
            **_user_time_condition(pk, bounds),
        }
        if event is not None:
            query["FilterExpression"] = "#event = :event"
            query["ExpressionAttributeNames"] |= {"#event": "event"}
            query["ExpressionAttributeValues"] |= {":event": {"S": event}}
        if cursor:
            position = decode_cursor(
                cursor, _CURSOR_KEYS, pinned={"pk": pk, "gsi1pk": pk, "q": scope}
            )
            query["ExclusiveStartKey"] = {k: {"S": position[k]} for k in _INDEX_KEYS}
        # One extra item tells whether another page exists, so the last page has no cursor
        # (as on the SQL backends); a filter may leave a page short, so keep reading.
        items = self._collect(query, limit + 1, filtered=event is not None)
        events = [StoredEvent.model_validate_json(i["doc"]["S"]) for i in items[:limit]]
        next_cursor = next_page_cursor(
            items, limit, lambda last: {**{k: last[k]["S"] for k in _INDEX_KEYS}, "q": scope}
        )
        return EventPage(events=events, next_cursor=next_cursor)

    def _collect(self, query: dict[str, Any], wanted: int, *, filtered: bool) -> list[Any]:
        """Query pages until ``wanted`` items matched or the range is exhausted."""
        items: list[Any] = []
        while len(items) < wanted:
            need = wanted - len(items)
            # Limit counts items read before the filter: read more when filtering.
            query["Limit"] = min(1_000, max(need * 4, 100)) if filtered else need
            try:
                response = self._client.query(**query)
            except (ClientError, BotoCoreError) as exc:
                raise StorageUnavailableError(f"dynamodb: {exc}") from exc
            items.extend(response["Items"])
            if "LastEvaluatedKey" not in response:
                break
            query["ExclusiveStartKey"] = response["LastEvaluatedKey"]
        return items

    def _query_all(self, *, growing: bool = False, **query: Any) -> Iterator[dict[str, Any]]:
        """Every item a query matches, page after page (``growing``: each page's Limit four
        times the last one's, up to 1,000, for a caller that stops at its first match)."""
        while True:
            try:
                response = self._client.query(**query)
            except (ClientError, BotoCoreError) as exc:
                raise StorageUnavailableError(f"dynamodb: {exc}") from exc
            yield from response["Items"]
            if "LastEvaluatedKey" not in response:
                return
            query["ExclusiveStartKey"] = response["LastEvaluatedKey"]
            if growing:
                query["Limit"] = min(query["Limit"] * 4, 1_000)

    def _points(self, user_id: str, bounds: tuple[str | None, str | None]) -> list[EventPoint]:
        """The user's counted events (track, page, screen) within index bounds, oldest
        first (index order is (time, messageId) because the time prefix is fixed-width)."""
        query = _user_time_condition(user_id and user_pk(user_id), bounds)
        query["ExpressionAttributeNames"] = {"#event": "event", "#sid": EVENT_SESSION}
        points = []
        for item in self._query_all(
            TableName=self._table,
            IndexName=BY_USER_TIME,
            ScanIndexForward=True,
            ProjectionExpression="gsi1sk, #event, #sid",
            FilterExpression="attribute_exists(#event)",  # track, page and screen
            **query,
        ):
            # Split at the first '#' (time keys have none), not at a fixed width: an older
            # row whose time prefix is not fixed-width stays readable.
            ts, _, message_id = item["gsi1sk"]["S"].partition("#")
            session_id = item.get(EVENT_SESSION, {}).get("S")  # None: stored before sessions
            points.append(EventPoint(ts, item["event"]["S"], message_id, session_id))
        return points

    def user_event_points(self, user_id: str) -> list[EventPoint]:
        return self._points(user_id, (None, None))

    def user_summary(self, user_id: str, days: DateRange | None, max_sessions: int) -> UserSummary:
        """From the user's events: this table keeps no per-user summaries (they would add
        write actions to every event's transaction; docs/performance.md). A range reads
        only its own events, and first and last seen are one short read each, so its cost
        follows the range, not the history; all time reads every event. Imported here: the
        consumer, which loads this module at cold start, never reads summaries."""
        from mysoulmate.analytics.user_summary import summary_from_points

        if days is None:
            return summary_from_points(self.user_event_points(user_id), None, max_sessions)
        bounds = _sk_bounds(days.first_moment, days.last_moment)
        points = self._points(user_id, bounds) if bounds is not None else []
        summary = summary_from_points(points, days, max_sessions)
        first, last = self._edge_time(user_id, oldest=True), self._edge_time(user_id, oldest=False)
        return summary._replace(first_seen=first, last_seen=last)

    def _edge_time(self, user_id: str, *, oldest: bool) -> str | None:
        """The time key of the user's oldest or newest counted event (track, page, screen).
        Nearly always the first item read: pages start small and grow only past identifies."""
        items = self._query_all(
            growing=True,
            TableName=self._table,
            IndexName=BY_USER_TIME,
            ScanIndexForward=oldest,
            ProjectionExpression="gsi1sk",
            FilterExpression="attribute_exists(#event)",
            ExpressionAttributeNames={"#event": "event"},
            Limit=4,
            **_user_time_condition(user_pk(user_id), (None, None)),
        )
        first = next(items, None)
        return None if first is None else str(first["gsi1sk"]["S"].partition("#")[0])

    # -- rollups ------------------------------------------------------------------------

    def _day_items(
        self, start: date, end: date, prefix: str, event: str | None = None
    ) -> Iterator[tuple[date, dict[str, Any]]]:
        """Rollup items of each day in [start, end] whose sort key starts with ``prefix``:
        one Query per day (the day's partition), paginated."""
        for day in days_between(start, end):
            query: dict[str, Any] = {
                "TableName": self._table,
                "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
                "ExpressionAttributeValues": {
                    ":pk": {"S": rollup_pk(day)},
                    ":prefix": {"S": prefix},
                },
            }
            if event is not None:
                query["FilterExpression"] = "#event = :event"
                query["ExpressionAttributeNames"] = {"#event": "event"}
                query["ExpressionAttributeValues"][":event"] = {"S": event}
            for item in self._query_all(**query):
                yield day, item

    def rollup_count_rows(self, start: date, end: date) -> list[CountRow]:
        """The daily count items summed over shards, session figures included (they are
        count items under `rollups.SESSION_EVENTS`)."""
        totals: Counter[tuple[date, str, str]] = Counter()
        for day, item in self._day_items(start, end, "COUNT#"):
            key = (day, item["platform"]["S"], item["event"]["S"])
            totals[key] += int(item["events"]["N"])
        return [CountRow(*key, events=n) for key, n in sorted(totals.items()) if n]

    def rollup_counts(self, start: date, end: date) -> list[CountRow]:
        return split_session_rows(self.rollup_count_rows(start, end))[0]

    def rollup_sessions(self, start: date, end: date) -> list[SessionRow]:
        return split_session_rows(self.rollup_count_rows(start, end))[1]

    def rollup_revenue(self, start: date, end: date) -> list[RevenueRow]:
        totals: dict[tuple[date, str, str], int] = {}
        for day, item in self._day_items(start, end, "REVENUE#"):
            key = (day, item["platform"]["S"], item["currency"]["S"])
            totals[key] = totals.get(key, 0) + int(item["micros"]["N"])
        return [RevenueRow(*key, micros=n) for key, n in sorted(totals.items())]

    def rollup_users(self, start: date, end: date, *, by_event: bool) -> list[UsersRow]:
        sets: dict[tuple[date, str, str], set[str]] = {}
        prefixes = ["ACTIVE#", "USERS#"] if by_event else ["ACTIVE#"]
        for prefix in prefixes:
            for day, item in self._day_items(start, end, prefix):
                members = item.get("users", {}).get("SS")
                if members:  # a set emptied by erasures loses its attribute
                    event = item["event"]["S"] if prefix == "USERS#" else ANY_EVENT
                    sets.setdefault((day, item["platform"]["S"], event), set()).update(members)
        return [UsersRow(*key, users=_user_set(users)) for key, users in sorted(sets.items())]

    def first_seen_users(self, start: date, end: date) -> dict[date, UserSet]:
        days: dict[date, set[str]] = {}
        for day, item in self._day_items(start, end, "FIRST#"):
            members = item.get("users", {}).get("SS")
            if members:
                days.setdefault(day, set()).update(members)
        return {day: _user_set(users) for day, users in sorted(days.items())}

    def weekly_active_users(self, start: date, end: date) -> dict[date, UserSet]:
        return weekly_from_daily(self, start, end)

    def empty_user_set(self) -> UserSet:
        return _user_set(())

    def funnel_candidates(
        self,
        first_event: str,
        starts_from: datetime,
        starts_to: datetime,
        until: datetime,
        events: frozenset[str] | None,
    ) -> Iterator[tuple[str, list[EventPoint]]]:
        """No index spans users by time: the day user sets of ``first_event`` name the
        candidates, then each candidate's events (one Query on ByUserTime) decide exactly."""
        first_from, first_to = _utc(starts_from), _utc(starts_to)
        if first_from > first_to:
            return
        candidates = self._funnel_users(first_event, first_from, first_to)
        lo, to_key, until_key = time_key(first_from), time_key(first_to), _utc_key(until)
        bounds = (lo, max(to_key, until_key) + "$")
        for user_id in sorted(candidates):
            points = self._points(user_id, bounds)
            if not any(p.event == first_event and p.ts <= to_key for p in points):
                continue
            yield (
                user_id,
                [p for p in points if p.ts <= until_key and (events is None or p.event in events)],
            )

    def funnel_step_times(
        self,
        first_event: str,
        starts_from: datetime,
        starts_to: datetime,
        until: datetime,
        events: frozenset[str],
    ) -> Iterator[tuple[str, dict[str, list[str]]]]:
        """The candidates of `funnel_candidates` (the day user sets of ``first_event``), each
        read with one ByUserTime Query as there: no index spans users by time, and one keyed
        by (user, event) would cost a write on every event to save reads that the user's own
        partition already makes small. The Query's filter keeps only step events, so only they
        cross the network and get parsed (DynamoDB still reads, and bills, the range)."""
        names = sorted(events)
        first_from, first_to = _utc(starts_from), _utc(starts_to)
        if first_from > first_to or not names:
            return
        candidates = self._funnel_users(first_event, first_from, first_to)
        bounds = (time_key(first_from), _utc_key(until) + "$")
        for user_id in sorted(candidates):
            times: dict[str, list[str]] = {}
            for ts, name in self._named_times(user_id, bounds, names):
                times.setdefault(name, []).append(ts)
            yield user_id, times

    def _funnel_users(self, first_event: str, first_from: datetime, first_to: datetime) -> set[str]:
        """Everyone with a ``first_event`` event on a day of [first_from, first_to]."""
        users: set[str] = set()
        for _, item in self._day_items(
            first_from.date(), first_to.date(), "USERS#", event=first_event
        ):
            users.update(item.get("users", {}).get("SS", []))
        return users

    def _named_times(
        self, user_id: str, bounds: tuple[str, str], names: list[str]
    ) -> Iterator[tuple[str, str]]:
        """(time key, name) of the user's events named in ``names`` within index bounds,
        oldest first."""
        query = _user_time_condition(user_pk(user_id), bounds)
        marks = [f":n{i}" for i in range(len(names))]
        query["ExpressionAttributeNames"] = {"#event": "event"}
        query["ExpressionAttributeValues"].update(
            {mark: {"S": name} for mark, name in zip(marks, names, strict=True)}
        )
        for item in self._query_all(
            TableName=self._table,
            IndexName=BY_USER_TIME,
            ScanIndexForward=True,
            ProjectionExpression="gsi1sk, #event",
            FilterExpression=f"#event IN ({', '.join(marks)})",
            **query,
        ):
            yield item["gsi1sk"]["S"].partition("#")[0], item["event"]["S"]

    # -- audit ----------------------------------------------------------------------------

    def list_audit(self, limit: int, cursor: str | None, subject: str | None = None) -> AuditPage:
        """Newest first from one partition (sk = time#id), optionally filtered by subject."""
        scope = _scope(subject or "")
        query: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": AUDIT_PK}},
            "ScanIndexForward": False,
        }
        if subject is not None:
            query["FilterExpression"] = "subject = :subject"
            query["ExpressionAttributeValues"][":subject"] = {"S": subject}
        if cursor:
            position = decode_cursor(
                cursor, _AUDIT_CURSOR_KEYS, pinned={"pk": AUDIT_PK, "q": scope}
            )
            query["ExclusiveStartKey"] = {k: {"S": position[k]} for k in ("pk", "sk")}
        items = self._collect(query, limit + 1, filtered=subject is not None)
        entries = [AuditEntry.model_validate_json(i["doc"]["S"]) for i in items[:limit]]
        next_cursor = next_page_cursor(
            items, limit, lambda last: {"pk": AUDIT_PK, "sk": last["sk"]["S"], "q": scope}
        )
        return AuditPage(entries=entries, next_cursor=next_cursor)


def _user_set(users: Iterable[str]) -> UserSet:
    """This backend's UserSet is a frozenset of user ids (typeshed's frozenset operators
    are too general for mypy to match the port's Self-typed protocol)."""
    return cast("UserSet", frozenset(users))


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _utc_key(moment: datetime) -> str:
    return time_key(_utc(moment))


def _scope(text: str) -> str:
    """Pins a cursor to the query it came from (another filter's cursor is a 4xx)."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _sk_bounds(
    start: datetime | None, end: datetime | None
) -> tuple[str | None, str | None] | None:
    """ByUserTime sort-key bounds for event times in [start, end]: gsi1sk is
    `<time>#<messageId>` and '$' sorts right after '#'. None when the range is empty."""
    lo = _utc_key(start) if start is not None else None
    hi = _utc_key(end) + "$" if end is not None else None
    if lo is not None and hi is not None and lo > hi:
        return None
    return lo, hi


def _user_time_condition(pk: str, bounds: tuple[str | None, str | None]) -> dict[str, Any]:
    lo, hi = bounds
    values: dict[str, Any] = {":pk": {"S": pk}}
    condition = "gsi1pk = :pk"
    if lo is not None and hi is not None:
        condition += " AND gsi1sk BETWEEN :lo AND :hi"
    elif lo is not None:
        condition += " AND gsi1sk >= :lo"
    elif hi is not None:
        condition += " AND gsi1sk <= :hi"
    if lo is not None:
        values[":lo"] = {"S": lo}
    if hi is not None:
        values[":hi"] = {"S": hi}
    return {"KeyConditionExpression": condition, "ExpressionAttributeValues": values}
