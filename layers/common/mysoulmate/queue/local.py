"""A durable queue in one SQLite file that behaves like SQS, for the laptop shape.

Semantics copied from SQS: a received message is hidden for the visibility timeout and
comes back if not deleted; each receive counts; a message received more than
``max_receive_count`` times moves to the dead-letter table instead of being delivered.
A message is durable once ``send`` returns (WAL with synchronous=FULL), so killing the
process between accept and consume loses nothing.
"""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mysoulmate.analytics.ports import QueueError
from mysoulmate.observability import get_logger
from mysoulmate.observability.signals import count as count_signal
from mysoulmate.queue.limits import MAX_MESSAGE_BYTES
from mysoulmate.storage.sqlite.connection import open_sqlite, write_transaction

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id            TEXT PRIMARY KEY,
    body          TEXT NOT NULL,
    sent_at       REAL NOT NULL,
    visible_at    REAL NOT NULL,
    receive_count INTEGER NOT NULL DEFAULT 0,
    receipt       TEXT,
    last_error    TEXT
);
CREATE INDEX IF NOT EXISTS messages_visible ON messages (visible_at, sent_at);
-- Deletes, releases and failures name a message by its receipt: without this index each
-- one scanned the whole queue (200 us per message at a depth of 5,000).
CREATE INDEX IF NOT EXISTS messages_receipt ON messages (receipt);
CREATE TABLE IF NOT EXISTS dead_letters (
    id            TEXT PRIMARY KEY,
    body          TEXT NOT NULL,
    sent_at       REAL NOT NULL,
    receive_count INTEGER NOT NULL,
    moved_at      REAL NOT NULL,
    reason        TEXT
);
"""
# Columns added after the first release: (table, column, declaration).
_ADDED_COLUMNS = (("messages", "last_error", "TEXT"), ("dead_letters", "reason", "TEXT"))
# What a receive reads of each message due, and the first ones due (the index's order).
_DUE = "SELECT id, body, receive_count, sent_at, coalesce(last_error, ?) FROM messages"
_FIRST_DUE = " WHERE visible_at <= ? ORDER BY visible_at, sent_at LIMIT ?"
_LENGTHS = "SELECT id, length(body) FROM messages"  # a byte-budgeted receive reads these first
NO_REASON = "no failure was recorded (the consumer may have stopped mid-batch)"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message the consumer gave up on, and why (never its payload in logs)."""

    id: str
    body: str
    receive_count: int
    sent_at: float
    moved_at: float
    reason: str


@dataclass(frozen=True, slots=True)
class ReceivedMessage:
    id: str
    receipt: str
    body: str
    receive_count: int
    sent_at: float


@dataclass(slots=True)
class _Waiting:
    """One producer's rows, waiting for the commit that stores them."""

    rows: list[tuple[str, str, float, float]]
    done: bool = False
    error: QueueError | None = None


class LocalQueue:
    def __init__(
        self,
        path: Path,
        *,
        visibility_timeout: float = 30,
        max_receive_count: int = 5,
        dead_letter_signal: str = "EventsDeadLettered",
        signal_labels: dict[str, str] | None = None,
    ) -> None:
        # A file locked by another process fails a send within 2 s (503, the client retries)
        # instead of holding the request for SQLite's usual 30.
        self._conn = open_sqlite(path, synchronous="FULL", busy_timeout_seconds=2.0)
        self._lock = threading.Lock()
        # Group commit: senders that arrive while a commit is on disk wait and share the next
        # one (each is answered only after the commit holding its rows), so N concurrent
        # requests cost about one fsync instead of N queued one behind the other.
        self._group = threading.Condition()
        self._waiting: list[_Waiting] = []
        self._committing = False
        self.commits = 0  # durable commits of sent messages (group commit's measure)
        self.visibility_timeout = visibility_timeout
        self.max_receive_count = max_receive_count
        # A provider's forward queue counts its dead letters under its own signal.
        self._dead_letter_signal = dead_letter_signal
        self._signal_labels = signal_labels or {}
        with self._lock:
            self._conn.executescript(_SCHEMA)
            for table, column, declaration in _ADDED_COLUMNS:
                present = {row[1] for row in self._conn.execute(f"PRAGMA table_info({table})")}
                if column not in present:
                    self._conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")

    # -- producer -----------------------------------------------------------------------

    def send(self, body: str) -> None:
        self.send_batch([body])

    def send_batch(self, bodies: Sequence[str]) -> None:
        for body in bodies:
            if len(body.encode()) > MAX_MESSAGE_BYTES:
                raise QueueError(f"message exceeds the {MAX_MESSAGE_BYTES}-byte limit")
        now = time.time()
        mine = _Waiting([(str(uuid.uuid4()), body, now, now) for body in bodies])
        with self._group:
            self._waiting.append(mine)
            while not mine.done and self._committing:
                self._group.wait()
            if mine.done:  # a leader committed it with its own group
                if mine.error is not None:
                    raise mine.error
                return
            group, self._waiting, self._committing = self._waiting, [], True
        # Unless the commit completes, nobody of the group may be told their rows are stored.
        error: QueueError | None = QueueError("local queue: the commit did not complete")
        try:
            with write_transaction(self._conn, self._lock):
                self._conn.executemany(
                    "INSERT INTO messages (id, body, sent_at, visible_at) VALUES (?,?,?,?)",
                    [row for waiting in group for row in waiting.rows],
                )
            self.commits += 1
            error = None
        except sqlite3.Error as exc:
            error = QueueError(f"local queue: {exc}")
        finally:
            with self._group:
                for waiting in group:
                    waiting.done, waiting.error = True, error
                self._committing = False
                self._group.notify_all()
        if error is not None:
            raise error

    def ping(self) -> None:
        try:
            with self._lock:
                self._conn.execute("SELECT 1 FROM messages LIMIT 1").fetchall()
        except sqlite3.Error as exc:
            raise QueueError(f"local queue: {exc}") from exc

    # -- consumer -----------------------------------------------------------------------

    def receive(
        self,
        max_messages: int,
        visibility_timeout: float | None = None,
        max_bytes: int | None = None,
    ) -> list[ReceivedMessage]:
        """Take up to ``max_messages`` visible messages and hide them for the timeout; with
        ``max_bytes``, no more than that many characters of bodies (at least one message).

        A message due that was already received ``max_receive_count`` times moves to the
        dead-letter table instead of being delivered, as SQS does on the receive that would
        exceed the count. Only the messages due are read, in the order they became visible
        (for a message never received yet, the order it was sent): the index on
        (visible_at, sent_at) gives them without looking at the rest of the queue, so a
        receive costs its batch, not the queue's depth (49 ms at a depth of 100,000 when
        it sorted every visible message).
        """
        timeout = self.visibility_timeout if visibility_timeout is None else visibility_timeout
        now = time.time()
        received: list[ReceivedMessage] = []
        dying: list[tuple[str, str, float, int, float, str]] = []
        taken = 0  # characters of bodies read
        with write_transaction(self._conn, self._lock):
            while len(received) < max_messages:
                wanted = max_messages - len(received)
                if max_bytes is None:
                    due = (NO_REASON, now, wanted)
                    rows = self._conn.execute(_DUE + _FIRST_DUE, due).fetchall()
                else:
                    rows = self._due_within(now, wanted, max_bytes - taken, not received)
                taken += sum(len(row[1]) for row in rows)
                expired = [row for row in rows if row[2] >= self.max_receive_count]
                for message_id, body, count, sent_at, _ in rows:
                    if count >= self.max_receive_count:
                        continue
                    receipt = uuid.uuid4().hex
                    self._conn.execute(
                        "UPDATE messages SET visible_at = ?, receive_count = ?, receipt = ? "
                        "WHERE id = ?",
                        (now + timeout, count + 1, receipt, message_id),
                    )
                    received.append(ReceivedMessage(message_id, receipt, body, count + 1, sent_at))
                if expired:  # rare: out of the queue, so the next read goes past them
                    self._conn.executemany(
                        "DELETE FROM messages WHERE id = ?", [(row[0],) for row in expired]
                    )
                    dying += [(i, b, sent, count, now, why) for i, b, count, sent, why in expired]
                if not expired or len(rows) < wanted:
                    break
            dead_lettered = 0
            if dying:
                before = self._conn.total_changes
                self._conn.executemany(
                    "INSERT OR IGNORE INTO dead_letters VALUES (?,?,?,?,?,?)", dying
                )
                dead_lettered = self._conn.total_changes - before
        if dead_lettered > 0:
            count_signal(self._dead_letter_signal, dead_lettered, **self._signal_labels)
            logger = get_logger()
            for message_id, _, _, receives, _, reason in dying:
                # The id and the reason only: a payload may hold personal data.
                logger.error(
                    "message dead-lettered",
                    extra={"queueMessageId": message_id, "receives": receives, "reason": reason},
                )
        return received

    def _due_within(
        self, now: float, wanted: int, budget: int, first: bool
    ) -> list[tuple[str, str, int, float, str]]:
        """The messages due, as `receive` reads them, whose bodies fit ``budget`` characters
        (one at least when ``first``): their lengths first, so what does not fit is never
        read into memory (caller holds the write transaction)."""
        heads = self._conn.execute(_LENGTHS + _FIRST_DUE, (now, wanted)).fetchall()
        chosen: list[str] = []
        for message_id, length in heads:
            if length > budget and not (first and not chosen):
                break
            chosen.append(message_id)
            budget -= length
        if not chosen:
            return []
        marks = ",".join("?" * len(chosen))
        rows = self._conn.execute(
            f"{_DUE} WHERE id IN ({marks})",
            (NO_REASON, *chosen),
        ).fetchall()
        order = {message_id: index for index, message_id in enumerate(chosen)}
        return sorted(rows, key=lambda row: order[row[0]])

    def record_failures(self, reasons: dict[str, str]) -> None:
        """Remember why the messages of these receipts could not be stored: the reason a
        dead letter keeps if they never succeed (``mysoulmate dlq list`` shows it)."""
        if not reasons:
            return
        with write_transaction(self._conn, self._lock):
            self._conn.executemany(
                "UPDATE messages SET last_error = ? WHERE receipt = ?",
                [(reason[:1000], receipt) for receipt, reason in reasons.items()],
            )

    def release(self, receipts: Sequence[str], delay: float) -> None:
        """Give messages back unhandled, visible again after ``delay`` seconds, with this
        receive not counted: a provider outage must not dead-letter what waits for it
        (SQS: ChangeMessageVisibility, where the receive count does not matter as much
        because the forwarder's queue has a long retention and redrive)."""
        if not receipts:
            return
        visible_at = time.time() + delay
        with write_transaction(self._conn, self._lock):
            self._conn.executemany(
                "UPDATE messages SET visible_at = ?, receive_count = max(receive_count - 1, 0) "
                "WHERE receipt = ?",
                [(visible_at, r) for r in receipts],
            )

    def delete(self, receipts: Sequence[str]) -> None:
        """Delete messages by receipt; a stale receipt (message received again since) is
        ignored, as in SQS after the visibility timeout expired."""
        if not receipts:
            return
        with write_transaction(self._conn, self._lock):
            self._conn.executemany(
                "DELETE FROM messages WHERE receipt = ?", [(r,) for r in receipts]
            )

    def depth(self) -> tuple[int, int]:
        """(messages waiting or in flight, messages in the dead-letter table)."""
        with self._lock:
            waiting = self._conn.execute("SELECT count(*) FROM messages").fetchone()[0]
            dead = self._conn.execute("SELECT count(*) FROM dead_letters").fetchone()[0]
        return int(waiting), int(dead)

    def oldest_sent_at(self) -> float | None:
        """When the oldest message waiting or in flight was sent (epoch seconds), if any."""
        with self._lock:
            oldest = self._conn.execute("SELECT min(sent_at) FROM messages").fetchone()[0]
        return None if oldest is None else float(oldest)

    def dead_letters(self, limit: int | None = None) -> list[DeadLetter]:
        """Dead letters, oldest move first."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, body, receive_count, sent_at, moved_at, coalesce(reason, ?) "
                "FROM dead_letters ORDER BY moved_at, id LIMIT ?",
                (NO_REASON, -1 if limit is None else limit),
            ).fetchall()
        return [DeadLetter(*row) for row in rows]

    def redrive(self, letter_id: str) -> bool:
        """Move one dead letter back into the queue as a fresh message (visible now, not
        received yet), keeping its id. One transaction: the message is in exactly one of
        the two tables whenever the process stops. False when it is no longer a dead letter
        (redriven or removed since it was listed)."""
        now = time.time()
        try:
            with write_transaction(self._conn, self._lock):
                moved = self._conn.execute(
                    "INSERT INTO messages (id, body, sent_at, visible_at) "
                    "SELECT id, body, ?, ? FROM dead_letters WHERE id = ?",
                    (now, now, letter_id),
                ).rowcount
                self._conn.execute("DELETE FROM dead_letters WHERE id = ?", (letter_id,))
        except sqlite3.Error as exc:
            raise QueueError(f"local queue: {exc}") from exc
        return moved > 0

    def close(self) -> None:
        with self._lock:
            self._conn.close()
