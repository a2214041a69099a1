"""`dashboard.FrozenUnions`: a union of frozen Roaring sets is kept by its inputs' identity
and given again for the same inputs; other sets are unioned each time. Every answer is the
plain union."""

from __future__ import annotations

import gc
import weakref
from datetime import date

from mysoulmate.analytics.dashboard import FrozenUnions, unions_of
from pyroaring import BitMap, FrozenBitMap


class Store:
    """What the unions need of a store: its empty set (a mutable Roaring bitmap)."""

    def empty_user_set(self) -> BitMap:
        return BitMap()


STORE = Store()


def test_the_same_frozen_sets_give_the_kept_union() -> None:
    unions = FrozenUnions()
    a, b = FrozenBitMap([1, 2]), FrozenBitMap([2, 3])
    first = unions.of(STORE, [a, b])  # type: ignore[arg-type]
    assert first == BitMap([1, 2, 3])
    assert unions.of(STORE, [a, b]) is first  # type: ignore[arg-type]
    other = unions.of(STORE, [FrozenBitMap([1, 2]), b])  # type: ignore[arg-type]
    assert other == first
    assert other is not first  # equal sets, other objects: unioned again


def test_mutable_sets_are_unioned_each_time() -> None:
    unions = FrozenUnions()
    a, b = BitMap([1]), BitMap([2])
    assert unions.of(STORE, [a, b]) == BitMap([1, 2])  # type: ignore[arg-type]
    a.add(5)
    assert unions.of(STORE, [a, b]) == BitMap([1, 2, 5])  # type: ignore[arg-type]
    mixed = [(date(2026, 1, 1), FrozenBitMap([1])), (date(2026, 1, 2), a)]
    assert unions.over_days(STORE, mixed) == BitMap([1, 5])  # type: ignore[arg-type]


def test_a_range_reuses_its_earlier_days_when_only_the_last_changed() -> None:
    unions = FrozenUnions()
    jan1, jan2 = FrozenBitMap([1]), FrozenBitMap([2, 4])
    days = [
        (date(2026, 1, 1), jan1),
        (date(2026, 1, 2), jan2),
        (date(2026, 1, 3), FrozenBitMap([3])),
    ]
    assert unions.over_days(STORE, days) == BitMap([1, 2, 3, 4])  # type: ignore[arg-type]
    earlier = unions.of(STORE, [jan1, jan2])  # type: ignore[arg-type]
    later = [*days[:2], (date(2026, 1, 3), FrozenBitMap([3, 9]))]
    assert unions.over_days(STORE, later) == BitMap([1, 2, 3, 4, 9])  # type: ignore[arg-type]
    assert unions.of(STORE, [jan1, jan2]) is earlier  # type: ignore[arg-type]


def test_what_is_kept_stays_within_its_budget() -> None:
    unions = FrozenUnions()
    unions.MEMBERS = 20
    for n in range(10):
        sets = [FrozenBitMap(range(n, n + 3)), FrozenBitMap(range(n + 2, n + 5))]
        assert unions.of(STORE, sets) == BitMap(range(n, n + 5))  # type: ignore[arg-type]
        assert unions._members <= 20


def test_each_store_keeps_its_own_unions_and_they_go_with_it() -> None:
    """One store's reads never push out another's kept unions, and a closed store's are freed."""
    first, second = Store(), Store()
    assert unions_of(first) is unions_of(first)  # type: ignore[arg-type]
    assert unions_of(first) is not unions_of(second)  # type: ignore[arg-type]
    kept = weakref.ref(unions_of(second))  # type: ignore[arg-type]
    del second
    gc.collect()
    assert kept() is None
