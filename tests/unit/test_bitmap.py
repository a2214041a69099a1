"""The user-set format of the SQL backends (`storage.bitmap`): Roaring in its portable
serialization, and the conversion from the dense bitmaps stored before it."""

from __future__ import annotations

import functools
import operator
import struct

from hypothesis import given
from hypothesis import strategies as st
from mysoulmate.storage import bitmap

# The two cookies that open Roaring's portable format (RoaringFormatSpec): without and with
# run containers. pyroaring's other formats (frozen, 64-bit) start otherwise.
NO_RUNS_COOKIE = 12346
RUNS_COOKIE = 12347

ordinals = st.sets(st.integers(min_value=0, max_value=2**20), max_size=300)


def dense(members: set[int], offset: int = 0) -> bytes:
    """The legacy layout: bit n of a little-endian integer = ordinal offset + n."""
    bits = sum(1 << (m - offset) for m in members)
    return bits.to_bytes((bits.bit_length() + 7) // 8, "little")


def is_portable(data: bytes) -> bool:
    return (
        struct.unpack("<I", data[:4])[0] == NO_RUNS_COOKIE
        or struct.unpack("<H", data[:2])[0] == RUNS_COOKIE
    )


@given(ordinals)
def test_a_set_survives_its_stored_bytes(members: set[int]) -> None:
    data = bitmap.encode(bitmap.of(members))
    assert is_portable(data)
    assert set(bitmap.decode(data)) == members


def test_consecutive_ordinals_are_stored_as_runs_in_a_few_bytes() -> None:
    data = bitmap.encode(bitmap.of(range(100_000)))
    assert is_portable(data)
    assert len(data) < 64
    assert len(bitmap.decode(data)) == 100_000


def test_nothing_stored_is_the_empty_set() -> None:
    assert len(bitmap.decode(None)) == 0
    assert len(bitmap.decode(b"")) == 0
    assert len(bitmap.union_all([])) == 0


@given(st.lists(ordinals, max_size=6))
def test_one_union_of_many_is_the_pairwise_union(sets: list[set[int]]) -> None:
    union = bitmap.union_all([bitmap.of(s) for s in sets])
    assert set(union) == functools.reduce(operator.or_, sets, set())


@given(ordinals, st.integers(min_value=0, max_value=8))
def test_a_dense_bitmap_converts_to_the_same_members(members: set[int], chunk: int) -> None:
    offset = chunk << 16
    shifted = {m + offset for m in members}
    assert set(bitmap.from_dense(dense(shifted, offset), offset)) == shifted
