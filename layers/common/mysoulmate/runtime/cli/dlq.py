"""`mysoulmate dlq list | redrive`: the dead letters of the configured queue backend
(`runtime/dlq.py`): the local queue's, the SQS events DLQ, or RabbitMQ's
``<RABBITMQ_QUEUE>-dlq``."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import typer

from mysoulmate.core.settings import get_settings
from mysoulmate.runtime.cli.output import (
    PROG,
    CliError,
    confirm,
    interruptible,
    positive,
    progress,
    say,
    usage_error,
)

if TYPE_CHECKING:
    from datetime import datetime

    from mysoulmate.runtime.dlq import DeadLetters

commands = typer.Typer()
dlq = typer.Typer(
    help="Messages the consumer gave up on: list them, move them back.", no_args_is_help=True
)
commands.add_typer(dlq, name="dlq")
INTERRUPTED = 130


def _open() -> DeadLetters:
    from mysoulmate.runtime.dlq import DeadLetterConfigError, open_dead_letters

    try:
        return open_dead_letters(get_settings())
    except DeadLetterConfigError as exc:
        raise usage_error(str(exc)) from None


def _when(moment: datetime | None) -> str:
    return moment.isoformat(timespec="seconds") if moment else "?"


@dlq.command(
    "list",
    epilog="Examples:\n\nmysoulmate dlq list\n\nmysoulmate dlq list --limit 10 --json | jq .reason",
)
def list_(
    limit: int = typer.Option("100", "--limit", parser=positive, metavar="N", help="At most."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line."),
) -> None:
    """List dead letters with why each failed (never their payload); they stay where they are."""
    queue = _open()
    try:
        rows = queue.peek(limit)
    finally:
        queue.close()
    if as_json:
        for row in rows:
            record = {
                "id": row.id,
                "sentAt": row.sent_at.isoformat() if row.sent_at else None,
                "deadLetteredAt": (
                    row.dead_lettered_at.isoformat() if row.dead_lettered_at else None
                ),
                "receives": row.receives,
                "reason": row.reason,
            }
            print(json.dumps(record, ensure_ascii=False))
        return
    if not rows:
        print("no dead letters")
        return
    for row in rows:
        receives = "?" if row.receives is None else str(row.receives)
        dead = f"  dead-lettered {_when(row.dead_lettered_at)}" if row.dead_lettered_at else ""
        print(f"{row.id}  sent {_when(row.sent_at)}{dead}  received {receives}x  {row.reason}")
    print(f"{len(rows)} dead letter(s)")


@dlq.command(
    "redrive",
    epilog=(
        "Examples:\n\n"
        "mysoulmate dlq redrive    # asks first\n\n"
        "mysoulmate dlq redrive --limit 100 --yes"
    ),
)
def redrive(
    limit: int = typer.Option(
        "1000000", "--limit", parser=positive, metavar="N", help="Move at most this many."
    ),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> int:
    """Move dead letters back to the events queue, to be consumed again (fix the cause first:
    `dlq list` says why each failed).

    One message at a time, each sent to the events queue and only then removed from the DLQ:
    never lost, at worst delivered twice (storage ignores the duplicate). Ctrl-C stops after
    the current message (exit 130); run it again to move the rest.
    """
    from mysoulmate.runtime.dlq import redrive as move_back

    queue = _open()
    try:
        waiting = queue.depth()
        if waiting == 0:
            print(f"no dead letters in {queue.where}")
            return 0
        count = f"{min(waiting, limit)} " if waiting is not None else ""
        question = f"Move {count}dead letter(s) from {queue.where} back to {queue.target}?"
        if not yes and not confirm(question):
            raise CliError("nothing moved: not confirmed")
        total = min(waiting, limit) if waiting is not None else None
        with interruptible() as interrupt, progress() as bar:
            task = bar.add_task("redriving", total=total)
            outcome = move_back(queue, limit, stop=interrupt, on_moved=lambda: bar.advance(task))
        left = queue.depth()
    finally:
        queue.close()
    remaining = f"; {left} left" if left is not None else ""
    print(f"moved {outcome.moved} message(s) from {queue.where} to {queue.target}{remaining}")
    if outcome.stopped:
        say(f"{PROG}: interrupted ({interrupt.signal_name}); run it again to move the rest")
        return INTERRUPTED
    return 0
