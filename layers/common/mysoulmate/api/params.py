"""Query parameter types whose documented shape is exactly what the API accepts."""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Any

from fastapi import Query
from pydantic import BeforeValidator
from pydantic_core import PydanticCustomError

_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# 2 to 10 comma-separated names, each with a visible character (a funnel's steps).
STEPS_PATTERN = r"^[^,]*[^,\s][^,]*(,[^,]*[^,\s][^,]*){1,9}$"


def _iso_date(value: Any) -> Any:
    """YYYY-MM-DD only: pydantic would also read `0` as 1970-01-01 (a Unix time)."""
    if isinstance(value, str) and not _ISO_DATE.match(value):
        raise PydanticCustomError("date_parsing", "must be a date such as 2026-01-31")
    return value


IsoDate = Annotated[date, BeforeValidator(_iso_date)]
# The report ranges' bounds (`from` is a keyword in Python, hence the alias).
From = Annotated[
    IsoDate | None, Query(alias="from", description="First UTC day (inclusive), YYYY-MM-DD.")
]
To = Annotated[IsoDate | None, Query(alias="to", description="Last UTC day (inclusive).")]
