"""When the DynamoDB adapter tries a write again: the attempt budget, the backoff, and which
errors (and which transaction cancellation reasons) are worth another attempt."""

from __future__ import annotations

import random

from botocore.exceptions import ClientError

MAX_WRITE_ATTEMPTS = 8
BACKOFF_BASE_SECONDS = 0.05
BACKOFF_CAP_SECONDS = 2.0
# Worth another attempt after a backoff: throttling, contention, transient server errors.
RETRYABLE_CODES = {
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
    "TransactionConflictException",
    "TransactionInProgressException",
    "InternalServerError",
}
RETRYABLE_REASONS = {"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"}


def backoff_delay(attempt: int) -> float:
    """Exponential backoff with full jitter (AWS Architecture Blog's recommendation)."""
    return random.uniform(0, min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2**attempt))


def cancellation_reasons(exc: ClientError) -> list[str]:
    """The per-action codes of a cancelled transaction ("None" for the actions that passed)."""
    return [r.get("Code", "None") for r in exc.response.get("CancellationReasons", [])]


def is_retryable(exc: ClientError) -> bool:
    code = exc.response["Error"]["Code"]
    return code in RETRYABLE_CODES or (
        code == "TransactionCanceledException"
        and any(r in RETRYABLE_REASONS for r in cancellation_reasons(exc))
    )
