"""CloudFormation custom resource that brings the Aurora database to this release's schema.

Create and Update run the migrations (idempotent); Delete leaves the database alone. Whatever
happens, CloudFormation gets an answer: an exception becomes FAILED with the reason, and a
watchdog answers FAILED shortly before the function's own timeout, so a stuck migration can
never leave the stack waiting. `cfnresponse` only exists for inline code, hence urllib.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request
from typing import Any

logger = logging.getLogger("mysoulmate.migrate")
logger.setLevel(logging.INFO)

# Answer FAILED this long before Lambda would kill the function mid-migration.
TIMEOUT_MARGIN_SECONDS = 10.0
# How long to keep retrying while the database, its proxy or the endpoints are not reachable
# yet (right after creation an RDS Proxy target takes a minute or two to become available).
CONNECT_RETRY_SECONDS = 180.0
RETRY_DELAY_SECONDS = 5.0
# Each PUT to the response URL, and how many attempts.
RESPONSE_TIMEOUT_SECONDS = 10.0
RESPONSE_ATTEMPTS = 4
# CloudFormation rejects response bodies above 4096 bytes; the reason is the variable part.
MAX_REASON_CHARS = 1500


class _Responder:
    """Sends the one response CloudFormation waits for; later attempts are ignored."""

    def __init__(self, event: dict[str, Any], context: Any) -> None:
        self.event = event
        self.log_stream = getattr(context, "log_stream_name", "")
        self._lock = threading.Lock()
        self._sent = False

    def send(
        self,
        status: str,
        physical_id: str,
        reason: str = "",
        data: dict[str, str] | None = None,
    ) -> bool:
        with self._lock:
            if self._sent:
                return False
            self._sent = True
        if not reason:
            reason = f"See CloudWatch log stream {self.log_stream}"
        body: dict[str, Any] = {
            "Status": status,
            "Reason": reason[:MAX_REASON_CHARS],
            "PhysicalResourceId": physical_id,
            "StackId": self.event["StackId"],
            "RequestId": self.event["RequestId"],
            "LogicalResourceId": self.event["LogicalResourceId"],
            "NoEcho": False,
            "Data": data or {},
        }
        payload = json.dumps(body).encode()
        for attempt in range(1, RESPONSE_ATTEMPTS + 1):
            # The URL is pre-signed without a content type: send none, as cfnresponse does.
            request = urllib.request.Request(  # noqa: S310 - CloudFormation's https URL
                self.event["ResponseURL"],
                data=payload,
                method="PUT",
                headers={"Content-Type": "", "Content-Length": str(len(payload))},
            )
            try:
                with urllib.request.urlopen(  # noqa: S310 - CloudFormation's https URL
                    request, timeout=RESPONSE_TIMEOUT_SECONDS
                ) as response:
                    logger.info("answered %s (HTTP %s)", status, response.status)
                    return True
            except (urllib.error.URLError, OSError) as exc:
                logger.warning("answering %s failed (attempt %d): %s", status, attempt, exc)
                if attempt < RESPONSE_ATTEMPTS:
                    time.sleep(min(2.0**attempt, 8.0))
        logger.error("could not deliver the %s response to CloudFormation", status)
        return True


def _physical_id(event: dict[str, Any]) -> str:
    """Stable across updates: a new id would make CloudFormation delete the old resource."""
    existing = event.get("PhysicalResourceId")
    if existing:
        return str(existing)
    stack_name = str(event["StackId"]).split("/")[1] if "/" in event["StackId"] else "stack"
    return f"{stack_name}-{event['LogicalResourceId']}"


def _retryable(exc: BaseException) -> bool:
    """Connection-level failures that waiting can cure (psycopg's OperationalError covers
    refused, timed-out and reset connections; botocore's the Secrets Manager endpoint)."""
    try:
        import psycopg

        if isinstance(exc, psycopg.OperationalError):
            return True
    except ImportError:
        pass
    try:
        from botocore.exceptions import ConnectionError as BotoConnectionError

        if isinstance(exc, BotoConnectionError):
            return True
    except ImportError:
        pass
    return False


def _describe(exc: BaseException) -> str:
    """The error's first line: libpq and botocore messages never contain the password."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def _newer_revision(info: str) -> str | None:
    """The database's revision when this release does not know it, else None.

    That happens when a deploy is rolled back after its migration ran: CloudFormation then
    sends Update with the old properties, possibly to the old code, which cannot downgrade.
    Migrations are forward-only, so the answer is SUCCESS (the schema stays); failing would
    leave the stack in UPDATE_ROLLBACK_FAILED.
    """
    from mysoulmate.storage.postgres.connection import REVISIONS
    from mysoulmate.storage.postgres.migrate import current_revision

    current = current_revision(info)
    if current is None or current in REVISIONS:
        return None
    logger.warning(
        "database at revision %s, which this release (head %s) does not know: left as is",
        current,
        REVISIONS[-1],
    )
    return current


def _run_migrations(deadline: float) -> str:
    """Migrate to head, retrying connection failures until the retry window or the deadline
    closes. Imports happen here so that a broken package or bad settings become FAILED."""
    from mysoulmate.core.settings import get_settings
    from mysoulmate.storage.postgres.connection import conninfo
    from mysoulmate.storage.postgres.migrate import migrate

    give_up = min(time.monotonic() + CONNECT_RETRY_SECONDS, deadline)
    attempt = 0
    while True:
        attempt += 1
        try:
            info = conninfo(get_settings())
            newer = _newer_revision(info)
            if newer is not None:
                return newer
            return migrate(info)
        except Exception as exc:
            if not _retryable(exc) or time.monotonic() + RETRY_DELAY_SECONDS >= give_up:
                raise
            logger.warning("database not reachable yet (attempt %d): %s", attempt, _describe(exc))
            time.sleep(RETRY_DELAY_SECONDS)


def handler(event: dict[str, Any], context: Any) -> None:
    request_type = event.get("RequestType")
    logger.info(
        "%s %s (request %s)", request_type, event.get("LogicalResourceId"), event.get("RequestId")
    )
    responder = _Responder(event, context)
    physical_id = _physical_id(event)

    remaining = context.get_remaining_time_in_millis() / 1000.0
    budget = max(remaining - TIMEOUT_MARGIN_SECONDS, 0.0)
    deadline = time.monotonic() + budget
    watchdog = threading.Timer(
        budget,
        responder.send,
        args=("FAILED", physical_id),
        kwargs={"reason": f"Migration did not finish within {budget:.0f} s; see the log stream"},
    )
    watchdog.daemon = True
    watchdog.start()
    try:
        if request_type == "Delete":
            # The data outlives the stack's migrations: never drop anything here.
            responder.send("SUCCESS", physical_id, reason="Nothing to do on delete")
        elif request_type in ("Create", "Update"):
            revision = _run_migrations(deadline)
            logger.info("database at revision %s", revision)
            responder.send(
                "SUCCESS",
                physical_id,
                reason=f"Database at schema revision {revision}",
                data={"Revision": str(revision)},
            )
        else:
            responder.send("FAILED", physical_id, reason=f"Unknown RequestType {request_type!r}")
    except BaseException as exc:  # every failure must reach CloudFormation
        logger.exception("migration failed")
        responder.send("FAILED", physical_id, reason=f"Migration failed: {_describe(exc)}")
        if not isinstance(exc, Exception):
            raise
    finally:
        watchdog.cancel()
