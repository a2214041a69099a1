"""`time_key`: the fixed-width UTC text every SQL backend sorts and compares times by."""

from __future__ import annotations

from datetime import UTC, datetime

from mysoulmate.analytics.ports import time_key


def test_keys_have_one_width_and_sort_as_their_times() -> None:
    moments = [
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(999, 12, 31, 23, 59, 59, tzinfo=UTC),
        datetime(2026, 12, 7, 16, 45, 1, tzinfo=UTC),
        datetime(2026, 12, 7, 16, 45, 1, 7, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    ]
    keys = [time_key(moment) for moment in moments]
    assert keys[1] == "0999-12-31T23:59:59.000000Z"
    assert keys[3] == "2026-12-07T16:45:01.000007Z"
    assert {len(key) for key in keys} == {len("2026-01-31T12:00:00.000000Z")}
    assert sorted(keys) == keys
