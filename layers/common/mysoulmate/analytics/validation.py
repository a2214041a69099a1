"""What an analytics message may hold: one set of rules, shared by the API (request models)
and the consumer (`QueuedMessage`), so that whatever the API accepts every backend can store.

The limits come from the strictest backend:

* PostgreSQL refuses NUL (U+0000) in ``text`` and ``jsonb``; no UTF-8 encoder (PostgreSQL,
  SQLite, DynamoDB) can write a lone surrogate (U+D800 to U+DFFF);
* JSON has no NaN or Infinity (Python's decoder accepts them, jsonb does not);
* decoders and encoders of nested JSON recurse: `MAX_NESTING` keeps every one of them far
  from its recursion limit. The HTTP layer refuses deeper bodies before parsing them.

Every check walks values iteratively (an explicit stack), never by recursion.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Any

from pydantic import AfterValidator
from pydantic_core import PydanticCustomError

MAX_NESTING = 32  # levels of objects and arrays inside properties, traits or context
EARLIEST_TIMESTAMP = datetime(2000, 1, 1, tzinfo=UTC)


class Problem(ValueError):
    """Why a value cannot be stored: a stable ``kind`` and the parameters of its message."""

    def __init__(self, kind: str, message: str, **params: Any) -> None:
        super().__init__(message.format(**params))
        self.kind = kind
        self.template = message
        self.params = params

    def as_pydantic(self) -> PydanticCustomError:
        return PydanticCustomError(self.kind, self.template, self.params)


def check_text(value: str) -> None:
    """Strings anywhere in a message: no NUL, no lone surrogate."""
    if "\x00" in value:
        raise Problem("nul_character", "must not contain the NUL character (U+0000)")
    if value.isascii():
        return
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise Problem(
            "lone_surrogate", "must not contain unpaired UTF-16 surrogates (U+D800 to U+DFFF)"
        ) from None


def check_identifier(value: str) -> None:
    """Ids and event names: text, and no control characters (they end up in keys)."""
    check_text(value)
    if _CONTROL_CHARACTER.search(value):
        raise Problem("control_character", "must not contain control characters")


# C0 and C1 controls and DEL; one regex scan instead of a Python loop per character.
_CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def check_number(value: int | float) -> None:
    """Finite numbers only: JSON has no NaN or Infinity (Python's decoder accepts them,
    PostgreSQL's jsonb does not). Magnitudes are free: every backend keeps properties as JSON
    text or jsonb, not as DynamoDB numbers."""
    if isinstance(value, float) and not math.isfinite(value):
        raise Problem("number_not_finite", "must be a finite number (no NaN or Infinity)")


def check_json(value: Any) -> None:
    """A JSON value as properties, traits or context hold it, walked without recursion."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            if depth > MAX_NESTING:
                raise _too_deep()
            for key, child in item.items():
                check_text(key)
                stack.append((child, depth + 1))
        elif isinstance(item, list):
            if depth > MAX_NESTING:
                raise _too_deep()
            stack.extend((child, depth + 1) for child in item)
        elif isinstance(item, str):
            check_text(item)
        elif isinstance(item, int | float):
            check_number(item)


def _too_deep() -> Problem:
    return Problem(
        "nesting_too_deep",
        "must not nest objects or arrays more than {max_depth} levels deep",
        max_depth=MAX_NESTING,
    )


def check_timestamp(value: datetime, received_at: datetime, max_future_seconds: int) -> None:
    """An event time (after clock-skew correction) inside the window every backend indexes."""
    if value < EARLIEST_TIMESTAMP:
        raise Problem(
            "timestamp_too_old",
            "must not be before {earliest}",
            earliest=EARLIEST_TIMESTAMP.date().isoformat(),
        )
    if (value - received_at).total_seconds() > max_future_seconds:
        raise Problem(
            "timestamp_in_future",
            "must not be more than {limit} seconds in the future",
            limit=max_future_seconds,
        )


def check_revenue(properties: dict[str, Any], max_revenue: int) -> None:
    """A numeric ``revenue`` property within ±max_revenue units (rollup sums stay exact)."""
    amount = properties.get("revenue")
    numeric = isinstance(amount, int | float) and not isinstance(amount, bool)
    if numeric and abs(amount) > max_revenue:  # type: ignore[arg-type]
        raise Problem(
            "revenue_out_of_range",
            "revenue must be between -{max_revenue} and {max_revenue}",
            max_revenue=max_revenue,
        )


def _as_pydantic(check: Any) -> Any:
    def validate(value: Any) -> Any:
        try:
            check(value)
        except Problem as problem:
            raise problem.as_pydantic() from None
        return value

    return AfterValidator(validate)


# Pydantic validators for the message models (`models`, `client_models`).
StorableJson = _as_pydantic(check_json)
StorableText = _as_pydantic(check_text)
StorableIdentifier = _as_pydantic(check_identifier)
