"""An in-memory `EventStore`: the analytics domain's rules, tested without a database.

It keeps the semantics the storage backends share (see `storage/sqlite/store.py`): events
stored once per (userId, messageId), rollups fed by `rollup_delta` of the newly stored
messages only, user sets as Python frozensets, keyset paging with the backends' cursor, and
an erasure that removes a user everywhere but from the anonymous counts and revenue.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from datetime import date, datetime

from mysoulmate.analytics.date_range import DateRange
from mysoulmate.analytics.models import (
    ANONYMOUS_PREFIX,
    AuditEntry,
    AuditPage,
    EventPage,
    Profile,
    QueuedMessage,
    SessionMark,
    StoredEvent,
)
from mysoulmate.analytics.perf_sketch import PerfCell, PerfRow, delta_rows
from mysoulmate.analytics.ports import (
    ANY_EVENT,
    CountRow,
    ErasureResult,
    EventPoint,
    LinkResult,
    MessageKey,
    ProfileResults,
    ProfileUpdate,
    RevenueRow,
    SessionRow,
    StorageUnavailableError,
    StoreResult,
    UserSet,
    UsersRow,
    UserSummary,
    time_key,
)
from mysoulmate.analytics.profiles import merge_profiles
from mysoulmate.analytics.rollups import (
    DayKey,
    RevenueKey,
    copies_delta,
    rollup_delta,
    split_session_rows,
    weekly_from_daily,
)
from mysoulmate.analytics.user_summary import summary_from_points
from mysoulmate.storage.paging import decode_cursor, next_page_cursor
from mysoulmate.storage.perf_batch import perf_batch, perf_result
from mysoulmate.storage.profile_updates import update_each


def stored_event(message: QueuedMessage) -> StoredEvent:
    """A message as a backend reads it back (an identify's traits are its properties)."""
    return StoredEvent(
        messageId=message.messageId,
        type=message.type,
        event=message.event,
        properties=dict(message.stored_properties()),
        timestamp=message.timestamp,
        receivedAt=message.receivedAt,
        anonymousId=message.anonymousId,
        platform=message.platform,
        context=dict(message.context),
        sessionId=message.sessionId,
    )


def _point(message: QueuedMessage) -> EventPoint:
    return EventPoint(
        time_key(message.timestamp), message.event or "", message.messageId, message.sessionId
    )


def _user_set(members: Iterable[str]) -> frozenset[str]:
    """A frozen copy: a caller's set operations never reach the store's own sets."""
    return frozenset(members)


def _oldest_first(point: EventPoint) -> tuple[str, str]:
    return point.ts, point.message_id


class MemoryEventStore:
    """Everything in dictionaries; set ``available = False`` to make every call fail."""

    def __init__(self) -> None:
        self.available = True
        self._events: dict[MessageKey, QueuedMessage] = {}
        self._profiles: dict[str, Profile] = {}
        self._counts: Counter[DayKey] = Counter()
        self._revenue: Counter[RevenueKey] = Counter()
        self._users: defaultdict[DayKey, set[str]] = defaultdict(set)
        self._first_seen: dict[str, date] = {}
        self._audit: list[AuditEntry] = []
        self._erasures: dict[str, datetime] = {}
        self._links: dict[str, str] = {}
        self._marks: dict[str, SessionMark] = {}
        self._perf: Counter[tuple[PerfCell, int]] = Counter()
        # Each counted message's receipt; kept forever: a test outlives no TTL.
        self._perf_ledger: dict[MessageKey, datetime] = {}

    # -- writes -------------------------------------------------------------------------

    def insert_events(self, messages: Sequence[QueuedMessage]) -> StoreResult:
        self.ping()
        new: list[QueuedMessage] = []
        erased: set[MessageKey] = set()
        for message in messages:
            if self._erased_since(message.userId, message.receivedAt):
                erased.add(message.key)
            elif message.key not in self._events:
                self._events[message.key] = message.model_copy(deep=True)
                new.append(message)
        delta = rollup_delta(new)
        self._counts.update(delta.counts)
        self._revenue.update(delta.revenue)
        for key, members in delta.users.items():
            self._users[key] |= members
        for user, day in delta.first_seen.items():
            self._first_seen[user] = min(day, self._first_seen.get(user, day))
        for user, mark in delta.session_marks.items():
            held = self._marks.get(user)
            if held is None or mark.last >= held.last:
                self._marks[user] = mark
        return StoreResult(
            written=len(new),
            duplicates=len(messages) - len(new) - len(erased),
            new_keys={m.key for m in new},
            erased=erased,
        )

    def record_perf(self, messages: Sequence[QueuedMessage]) -> StoreResult:
        self.ping()
        batch = perf_batch(messages, "memory")
        new: list[MessageKey] = []
        erased: set[MessageKey] = set()
        for key, message in batch.messages.items():
            if self._erased_since(message.userId, message.receivedAt):
                erased.add(key)
            elif key not in self._perf_ledger:
                self._perf_ledger[key] = message.receivedAt
                new.append(key)
        self._perf.update(batch.delta_of(new))
        return perf_result(messages, new, erased, batch.failed)

    def perf_rows(self, metric: str, start: date, end: date, name: str | None) -> list[PerfRow]:
        self.ping()
        return [
            row
            for row in reversed(delta_rows(self._perf))
            if row.cell.metric == metric
            and start <= row.cell.day <= end
            and (name is None or row.cell.name == name)
        ]

    def _erased_since(self, user_id: str, received_at: datetime) -> bool:
        erased_at = self._erasures.get(user_id)
        return erased_at is not None and received_at <= erased_at

    def update_profiles(
        self, updates: Mapping[str, tuple[ProfileUpdate, datetime]]
    ) -> ProfileResults:
        return update_each(self, updates)

    def update_profile(
        self, user_id: str, update: ProfileUpdate, *, received_at: datetime | None = None
    ) -> Profile | None:
        if received_at is not None and self._erased_since(user_id, received_at):
            return None
        current = self.get_profile(user_id)
        merged = update(current)
        merged.version = (current.version if current else 0) + 1
        self._profiles[user_id] = merged.model_copy(deep=True)
        return merged

    # -- per-user reads -----------------------------------------------------------------

    def get_profile(self, user_id: str) -> Profile | None:
        self.ping()
        profile = self._profiles.get(user_id)
        return profile.model_copy(deep=True) if profile is not None else None

    def _of_user(self, user_id: str) -> list[QueuedMessage]:
        self.ping()
        return [m for (user, _), m in self._events.items() if user == user_id]

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
        rows = [
            (time_key(m.timestamp), m.messageId, m)
            for m in self._of_user(user_id)
            if (start is None or time_key(m.timestamp) >= time_key(start))
            and (end is None or time_key(m.timestamp) <= time_key(end))
            and (event is None or m.event == event)
        ]
        if cursor:
            position = decode_cursor(cursor, {"ts", "id"})
            rows = [row for row in rows if row[:2] < (position["ts"], position["id"])]
        rows.sort(key=lambda row: row[:2], reverse=True)
        rows = rows[: limit + 1]
        return EventPage(
            events=[stored_event(m) for _, _, m in rows[:limit]],
            next_cursor=next_page_cursor(rows, limit, lambda row: {"ts": row[0], "id": row[1]}),
        )

    def user_event_points(self, user_id: str) -> list[EventPoint]:
        return sorted(
            (_point(m) for m in self._of_user(user_id) if m.event is not None), key=_oldest_first
        )

    def user_summary(self, user_id: str, days: DateRange | None, max_sessions: int) -> UserSummary:
        return summary_from_points(self.user_event_points(user_id), days, max_sessions)

    # -- rollups ------------------------------------------------------------------------
    # Backends promise no row order; these come newest key first, so that a report whose
    # order depended on storage order rather than on its own sorting would show it.

    def rollup_count_rows(self, start: date, end: date) -> list[CountRow]:
        self.ping()
        return [
            CountRow(*key, n)
            for key, n in sorted(self._counts.items(), reverse=True)
            if start <= key[0] <= end
        ]

    def rollup_counts(self, start: date, end: date) -> list[CountRow]:
        return split_session_rows(self.rollup_count_rows(start, end))[0]

    def rollup_sessions(self, start: date, end: date) -> list[SessionRow]:
        return split_session_rows(self.rollup_count_rows(start, end))[1]

    def session_marks(
        self, users: Collection[str], identified: Collection[str] = ()
    ) -> dict[str, SessionMark]:
        self.ping()
        return {user: self._marks[user] for user in users if user in self._marks}

    def rollup_revenue(self, start: date, end: date) -> list[RevenueRow]:
        self.ping()
        return [
            RevenueRow(*key, n)
            for key, n in sorted(self._revenue.items(), reverse=True)
            if start <= key[0] <= end
        ]

    def rollup_users(self, start: date, end: date, *, by_event: bool) -> list[UsersRow]:
        self.ping()
        return [
            UsersRow(day, platform, event, _user_set(members))
            for (day, platform, event), members in sorted(self._users.items(), reverse=True)
            if start <= day <= end and (by_event or event == ANY_EVENT)
        ]

    def first_seen_users(self, start: date, end: date) -> dict[date, UserSet]:
        self.ping()
        by_day: defaultdict[date, set[str]] = defaultdict(set)
        for user, day in self._first_seen.items():
            if start <= day <= end:
                by_day[day].add(user)
        return {day: _user_set(users) for day, users in by_day.items()}

    def weekly_active_users(self, start: date, end: date) -> dict[date, UserSet]:
        return weekly_from_daily(self, start, end)

    def empty_user_set(self) -> UserSet:
        return frozenset()

    def funnel_candidates(
        self,
        first_event: str,
        starts_from: datetime,
        starts_to: datetime,
        until: datetime,
        events: frozenset[str] | None,
    ) -> Iterator[tuple[str, list[EventPoint]]]:
        self.ping()
        lowest, start_high, high = time_key(starts_from), time_key(starts_to), time_key(until)
        tracks = [m for m in self._events.values() if m.event is not None]
        users = sorted(
            {
                m.userId
                for m in tracks
                if m.event == first_event and lowest <= time_key(m.timestamp) <= start_high
            }
        )
        for user in users:
            yield (
                user,
                sorted(
                    (
                        _point(m)
                        for m in tracks
                        if m.userId == user
                        and lowest <= time_key(m.timestamp) <= high
                        and (events is None or m.event in events)
                    ),
                    key=_oldest_first,
                ),
            )

    def funnel_step_times(
        self,
        first_event: str,
        starts_from: datetime,
        starts_to: datetime,
        until: datetime,
        events: frozenset[str],
    ) -> Iterator[tuple[str, dict[str, list[str]]]]:
        candidates = self.funnel_candidates(first_event, starts_from, starts_to, until, events)
        for user, points in candidates:
            times: dict[str, list[str]] = {}
            for point in points:
                times.setdefault(point.event, []).append(point.ts)
            yield user, times

    # -- GDPR ---------------------------------------------------------------------------

    def delete_user(self, user_id: str, erased_at: datetime) -> ErasureResult:
        visitors = [ANONYMOUS_PREFIX + a for a, u in self._links.items() if u == user_id]
        events, profile = 0, False
        for person in [user_id, *visitors]:  # a cut-short move's leftovers are the user's
            mine = self._of_user(person)
            # The latest receipt among what it deletes, when later than its time, as the
            # stores do: its redelivery is refused.
            covered = max([erased_at, *(m.receivedAt for m in mine)])
            self._erasures[person] = max(covered, self._erasures.get(person, covered))
            for message in mine:
                del self._events[message.key]
            for members in self._users.values():
                members.discard(person)
            self._first_seen.pop(person, None)
            self._marks.pop(person, None)
            # Entries of messages received after the erasure's time are new data: they stay.
            tombstone = self._erasures[person]
            self._perf_ledger = {
                key: received
                for key, received in self._perf_ledger.items()
                if key[0] != person or received > tombstone
            }
            events += len(mine)
            profile = self._profiles.pop(person, None) is not None or profile
        self._links = {a: u for a, u in self._links.items() if u != user_id}
        return ErasureResult(events=events, profile=profile)

    def erased_users(self, users: Collection[str]) -> dict[str, datetime]:
        return {user: self._erasures[user] for user in users if user in self._erasures}

    def linked_users(self, anonymous_ids: Collection[str]) -> dict[str, str]:
        return {a: self._links[a] for a in anonymous_ids if a in self._links}

    def link_anonymous(self, anonymous_id: str, user_id: str, received_at: datetime) -> LinkResult:
        if anonymous_id not in self._links:
            if self._erased_since(user_id, received_at):
                return LinkResult(None)
            self._links[anonymous_id] = user_id
        user_id = self._links[anonymous_id]
        visitor = ANONYMOUS_PREFIX + anonymous_id
        moved = 0
        for key in [m.key for m in self._of_user(visitor)]:
            message = self._events.pop(key)
            if (user_id, message.messageId) not in self._events:
                self._events[(user_id, message.messageId)] = message.model_copy(
                    update={"userId": user_id}
                )
                moved += 1
            elif message.event is not None:  # the same message: counted once from now on
                dropped = copies_delta(
                    [
                        (
                            message.timestamp.date(),
                            message.platform,
                            message.event,
                            message.properties,
                        )
                    ]
                )
                self._counts.subtract(dropped.counts)
                self._revenue.subtract(dropped.revenue)
                for key in dropped.counts:
                    if self._counts[key] <= 0:  # a count at zero is no row
                        del self._counts[key]
        for members in self._users.values():
            if visitor in members:
                members.discard(visitor)
                members.add(user_id)
        if visitor in self._first_seen:
            day = self._first_seen.pop(visitor)
            self._first_seen[user_id] = min(day, self._first_seen.get(user_id, day))
        merged = merge_profiles(
            user_id, self._profiles.get(user_id), self._profiles.pop(visitor, None)
        )
        if merged is not None:
            self._profiles[user_id] = merged
        return LinkResult(user_id, moved)

    def append_audit(self, entry: AuditEntry) -> None:
        self.ping()
        self._audit.append(entry.model_copy(deep=True))

    def list_audit(self, limit: int, cursor: str | None, subject: str | None = None) -> AuditPage:
        self.ping()
        rows = [
            (time_key(e.at), e.id, e)
            for e in self._audit
            if subject is None or e.subject == subject
        ]
        if cursor:
            position = decode_cursor(cursor, {"at", "id"})
            rows = [row for row in rows if row[:2] < (position["at"], position["id"])]
        rows.sort(key=lambda row: row[:2], reverse=True)
        rows = rows[: limit + 1]
        return AuditPage(
            entries=[e.model_copy(deep=True) for _, _, e in rows[:limit]],
            next_cursor=next_page_cursor(rows, limit, lambda row: {"at": row[0], "id": row[1]}),
        )

    def ping(self) -> None:
        if not self.available:
            raise StorageUnavailableError("memory: marked unavailable")
