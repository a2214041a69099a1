"""The analytics domain's ports: the `EventStore` every storage backend implements, the
`MessageQueue` every queue adapter implements, and the row types they exchange.

Adapters (`mysoulmate.storage.*`, `mysoulmate.queue.*`) import this module; the domain never
imports an adapter.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, Self, runtime_checkable

from mysoulmate.analytics.models import (
    AuditEntry,
    AuditPage,
    EventPage,
    Profile,
    QueuedMessage,
    SessionMark,
)

# For annotations only. PerfRow at runtime would load ddsketch and the perf models into every
# cold start that imports the ports (the consumer's, the API's), perf message or not.
if TYPE_CHECKING:
    from mysoulmate.analytics.date_range import DateRange
    from mysoulmate.analytics.perf_sketch import PerfRow

MessageKey = tuple[str, str]  # (userId, messageId)
# Days a perf message id is remembered: longer than SQS (14 days at most) or RabbitMQ keep it.
PERF_LEDGER_DAYS = 15
ProfileUpdate = Callable[[Profile | None], Profile]
ANY_EVENT = ""  # the event name of user-set rollups that count every event


class UserSet(Protocol):
    """A set of users as a backend stores it (a frozenset of ids, or a Roaring bitmap of
    ordinals): all the read side needs is union, intersection and size, which stay exact.
    ``union`` of many sets at once is one call (in C for Roaring), not one per set."""

    def __or__(self, other: Self, /) -> Self: ...
    def __and__(self, other: Self, /) -> Self: ...
    def __len__(self) -> int: ...
    def union(self, *others: Self) -> Self: ...


class CountRow(NamedTuple):
    """Track events stored on one UTC day for one (platform, event name)."""

    day: date
    platform: str
    event: str
    events: int


class SessionRow(NamedTuple):
    """Sessions that started on one UTC day and platform, and how long they lasted in all
    (milliseconds from first to last event, summed)."""

    day: date
    platform: str
    sessions: int
    millis: int


class RevenueRow(NamedTuple):
    """Revenue on one UTC day and platform, in millionths of the currency unit (exact)."""

    day: date
    platform: str
    currency: str
    micros: int


class UsersRow(NamedTuple):
    """Users with at least one track event on one day and platform; ``event`` is an event
    name, or ANY_EVENT for users active with any event."""

    day: date
    platform: str
    event: str
    users: UserSet


class EventPoint(NamedTuple):
    """A track event reduced to what funnels and per-user summaries need."""

    ts: str  # time_key(timestamp): fixed-width UTC text, string order = time order
    event: str
    message_id: str
    session_id: str | None = None  # filled by `user_event_points`, not by funnel reads


class SessionFigures(NamedTuple):
    """One session of a user (`EventStore.user_summary`)."""

    session_id: str | None  # None: events from before session ids, grouped by the 30-min rule
    start: str  # time keys
    last: str
    events: int


class UserSummary(NamedTuple):
    """What `GET /user/{id}` shows besides its events (`analytics.user_summary`)."""

    first_seen: str | None  # time keys, over the user's whole history
    last_seen: str | None
    event_counts: dict[str, int]  # within the range
    sessions: int  # within the range
    recent_sessions: list[SessionFigures]  # newest first, at most the asked number


class LinkResult(NamedTuple):
    """Outcome of `EventStore.link_anonymous`: the user the anonymous id belongs to now
    (None when the link was refused because that user was erased), and how many events
    this call moved from the anonymous visitor to them."""

    user_id: str | None
    moved_events: int = 0


@dataclass
class ProfileResults:
    """Outcome of `EventStore.update_profiles`: each user's merged profile (None: erased at
    or after the messages were received, nothing written), or why it failed."""

    merged: dict[str, Profile | None] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)


class ErasureResult(NamedTuple):
    events: int
    profile: bool


@dataclass
class StoreResult:
    """Outcome of one bulk write: ``failed`` maps a message key to why it was not written;
    every other message is stored (exactly once, whether new or a redelivery)."""

    written: int = 0
    duplicates: int = 0
    failed: dict[MessageKey, str] = field(default_factory=dict)
    # The keys of the messages this write stored for the first time (``written`` of them):
    # what their rollups (and the revenue signal) count, never a redelivery.
    new_keys: set[MessageKey] = field(default_factory=set)
    # Messages not written because their user was erased after they were received (an
    # erasure sticks: what was in flight when it happened never comes back).
    erased: set[MessageKey] = field(default_factory=set)


class PerfStore(Protocol):
    """Client performance telemetry (`perf_sketch`): sketch counters per cell and bucket."""

    def record_perf(self, messages: Sequence[QueuedMessage]) -> StoreResult:
        """Count each ``perf`` message once per (userId, messageId): add
        `perf_sketch.perf_delta` of the messages not recorded before, atomically with
        recording them in a ledger kept for `PERF_LEDGER_DAYS` (longer than any queue keeps a
        message, so a redelivery is always recognized). A message whose user has an erasure
        recorded at or after its ``receivedAt`` is not counted (``StoreResult.erased``); the
        ledger holds no measurement, and `delete_user` removes the user's ledger entries."""
        ...

    def perf_rows(self, metric: str, start: date, end: date, name: str | None) -> list[PerfRow]:
        """The counters of every cell of ``metric`` (and ``name`` unless None) on the days in
        [start, end]; a counter per (cell, bucket), in no particular order."""
        ...


class EventStore(PerfStore, Protocol):
    def insert_events(self, messages: Sequence[QueuedMessage]) -> StoreResult:
        """Store each message once per (userId, messageId); redeliveries are no-ops.

        A message whose user has an erasure recorded at or after its ``receivedAt`` is not
        stored (``StoreResult.erased``), atomically with the write: an erasure running at
        the same time can never see the message missing and then find it stored."""
        ...

    def update_profile(
        self, user_id: str, update: ProfileUpdate, *, received_at: datetime | None = None
    ) -> Profile | None:
        """Apply ``update`` to the stored profile atomically (retrying on conflicts).

        With ``received_at`` (the earliest receipt of the messages merged by ``update``):
        when the user has an erasure recorded at or after it, nothing is written and None
        is returned, atomically with respect to `delete_user`."""
        ...

    def update_profiles(
        self, updates: Mapping[str, tuple[ProfileUpdate, datetime]]
    ) -> ProfileResults:
        """`update_profile` for several users at once (user → (update, earliest
        ``received_at``)), as few round trips as the backend allows; each user's merge is
        atomic and erasure-checked as in `update_profile`. A user whose update could not be
        written is in ``failed`` with the reason, and nothing of theirs was written."""
        ...

    def get_profile(self, user_id: str) -> Profile | None: ...

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
        """The user's events (track and identify), newest first; ``start``/``end`` bound the
        event time (inclusive), ``event`` keeps only track events of that name."""
        ...

    def user_event_points(self, user_id: str) -> list[EventPoint]:
        """Every track event of the user, oldest first (ts, then messageId), with its
        session id."""
        ...

    def user_summary(self, user_id: str, days: DateRange | None, max_sessions: int) -> UserSummary:
        """First and last seen (whole history), event counts and sessions of the user's
        track events within ``days`` (None: all), the newest
        ``max_sessions`` sessions listed: `user_summary.summary_from_points` of
        `user_event_points`, from summaries where the backend keeps them."""
        ...

    # -- rollups, maintained by insert_events for newly stored track events only ---------
    # insert_events applies `analytics.rollups.rollup_delta(new messages)` atomically with the
    # events it stores, so a redelivered or re-sent message never counts twice.

    def rollup_counts(self, start: date, end: date) -> list[CountRow]:
        """Per-day counts for days in [start, end]; days/keys with no events are absent."""
        ...

    def rollup_revenue(self, start: date, end: date) -> list[RevenueRow]: ...

    def rollup_count_rows(self, start: date, end: date) -> list[CountRow]:
        """The daily count rows as stored, session figures included: one read for a caller
        that needs both (`rollups.split_session_rows` separates them)."""
        ...

    def rollup_sessions(self, start: date, end: date) -> list[SessionRow]:
        """Session figures for days in [start, end] (stored with the daily counts under
        `rollups.SESSION_EVENTS`, which `rollup_counts` leaves out)."""
        ...

    def session_marks(
        self, users: Collection[str], identified: Collection[str] = ()
    ) -> dict[str, SessionMark]:
        """Each person's current session, for those of ``users`` who have one. insert_events
        stores `RollupDelta.session_marks` with the events: a stored mark is replaced only
        by one whose last event is at least as late. ``identified``: the users whose profiles
        the caller merges next (`update_profiles`); a backend may read them in the same
        round trip, as DynamoDB does."""
        ...

    def rollup_users(self, start: date, end: date, *, by_event: bool) -> list[UsersRow]:
        """User sets for days in [start, end]: one row per (day, platform) with ANY_EVENT,
        plus, when ``by_event``, one per (day, platform, event name)."""
        ...

    def first_seen_users(self, start: date, end: date) -> dict[date, UserSet]:
        """Users whose first track event ever falls on a day in [start, end], by that day."""
        ...

    def weekly_active_users(self, start: date, end: date) -> dict[date, UserSet]:
        """Per ISO week (its Monday) in [start, end]: the users with a track event in it, on
        any platform, i.e. the union of its days' any-event `rollup_users` sets
        (`rollups.weekly_from_daily`); one stored set per week where the backend keeps them."""
        ...

    def empty_user_set(self) -> UserSet:
        """The empty set in this backend's representation."""
        ...

    def funnel_candidates(
        self,
        first_event: str,
        starts_from: datetime,
        starts_to: datetime,
        until: datetime,
        events: frozenset[str] | None,
    ) -> Iterator[tuple[str, list[EventPoint]]]:
        """For every user with a ``first_event`` track event in [starts_from, starts_to]:
        (userId, their track events in [starts_from, until], oldest first), only those named
        in ``events`` unless it is None. Each user appears once; user order is unspecified."""
        ...

    def funnel_step_times(
        self,
        first_event: str,
        starts_from: datetime,
        starts_to: datetime,
        until: datetime,
        events: frozenset[str],
    ) -> Iterator[tuple[str, dict[str, list[str]]]]:
        """What an ``ordered`` or ``any`` funnel reads: per user, the time keys of their track
        events named in ``events`` with time in [starts_from, until], by name, each list oldest
        first (equal times repeated). Every user with a ``first_event`` event in
        [starts_from, starts_to] is there; others may be too (the engine skips users without
        a start), and a name the user has no such event of may be absent. Each user appears
        once; user order is unspecified. SQL backends read the step events alone, in one pass
        in user order over an index on (event, user_id, ts); no other event is read."""
        ...

    # -- identity -----------------------------------------------------------------------

    def linked_users(self, anonymous_ids: Collection[str]) -> dict[str, str]:
        """anonymousId → the user it is linked to, for the linked ones."""
        ...

    def link_anonymous(self, anonymous_id: str, user_id: str, received_at: datetime) -> LinkResult:
        """Link the anonymous visitor ``anon:<anonymous_id>`` to ``user_id`` (the first
        link of an anonymous id wins: a later one names the earlier user) and move what is
        stored under the visitor to that user, atomically with the link:

        - its events (a messageId the user already has is dropped, not doubled);
        - user sets and first-seen records: the user is counted wherever the visitor was,
          the visitor nowhere, so the two count as one person; event counts and revenue
          do not change;
        - its profile: traits merged into the user's by time (`profiles.merge_profiles`).

        Idempotent: a repeated call moves only what was stored under the visitor since.
        When the user has an erasure recorded at or after ``received_at``, nothing is
        linked or moved (``LinkResult(None)``): an erased user's history never returns."""
        ...

    # -- GDPR ---------------------------------------------------------------------------

    def delete_user(self, user_id: str, erased_at: datetime) -> ErasureResult:
        """Erase the user's events and profile and remove them from every user set and
        first-seen record, and forget the anonymous ids linked to them (their history was
        merged into the user's, so it goes too); anonymous counts and revenue stay.
        Idempotent.

        Records a tombstone (the latest ``erased_at`` wins): messages received up to that
        time are never stored afterwards, by `insert_events` or `update_profile`."""
        ...

    def erased_users(self, users: Collection[str]) -> dict[str, datetime]:
        """The latest erasure time of each of ``users`` who was ever erased (tombstones)."""
        ...

    def append_audit(self, entry: AuditEntry) -> None: ...

    def list_audit(self, limit: int, cursor: str | None, subject: str | None = None) -> AuditPage:
        """Audit entries newest first, optionally only those about ``subject``."""
        ...

    def ping(self) -> None:
        """Raise if the backend cannot serve requests."""
        ...


class StorageUnavailableError(RuntimeError):
    """The storage backend could not be reached or refused the operation."""


@runtime_checkable
class FunnelSeeks(Protocol):
    """A store that finds a user's first event of a name at or after a time with one index
    seek (the SQL stores), so an ``ordered`` or ``any`` funnel of distinct step names reads
    one event per start and step (`analytics.funnel_next`) instead of every step event."""

    def funnel_next_times(
        self, steps: Sequence[str], chained: bool, starts_from: datetime, starts_to: datetime
    ) -> Iterator[tuple[str, datetime, list[datetime | None]]]:
        """Per start (a ``steps[0]`` track event with time in [starts_from, starts_to], one
        per user and time): the user, the start's time and, for each later step k, the time
        of the user's first track event named ``steps[k]`` at or after step k-1's time
        (``chained``) or at or after the start's (not chained); None from the first step with
        none on. A step name no event can carry ends the list there. Aware datetimes; each
        user's starts together (users in any order)."""
        ...


def time_key(moment: Any) -> str:
    """Fixed-width UTC text whose string order is time order (sort keys, SQL ordering).
    `isoformat`, not `strftime`: a third of the cost, and four-digit years below 1000 too
    (glibc's ``%Y`` writes "999")."""
    return str(moment.replace(tzinfo=None).isoformat(timespec="microseconds")) + "Z"


class QueueError(RuntimeError):
    """A message could not be made durable in the queue; the caller must not accept it."""


class MessageQueue(Protocol):
    """The producer side of the queue, shared by SQS and the local durable queue."""

    def send(self, body: str) -> None:
        """Return only once the message is durably queued."""
        ...

    def send_batch(self, bodies: Sequence[str]) -> None:
        """Queue many messages; raise QueueError naming any that could not be queued."""
        ...

    def ping(self) -> None:
        """Raise QueueError if the queue cannot take messages."""
        ...


class Source(NamedTuple):
    """Where events come from (an app, a website, a backend) and the kind of its write key.

    Only the key's SHA-256 is stored; ``key_hint`` (its first characters) lets people tell
    keys apart in listings without the key itself ever being kept."""

    id: str
    name: str
    kind: str  # "client" (public, ships in apps) or "server" (secret)
    key_hint: str
    created_at: datetime
    revoked_at: datetime | None = None


class SourceStore(Protocol):
    """Write keys per source, stored hashed (`analytics.write_keys`)."""

    def create_source(self, source: Source, key_hash: str) -> None:
        """Store a new source; its id and key hash are new and unique."""
        ...

    def find_source(self, key_hash: str) -> Source | None:
        """The source whose key hashes to ``key_hash``, revoked or not; None if none."""
        ...

    def list_sources(self) -> list[Source]:
        """Every source, revoked ones included, oldest first."""
        ...

    def revoke_source(self, source_id: str, revoked_at: datetime) -> Source | None:
        """Mark the source revoked (the first revocation time stays); None if unknown."""
        ...
