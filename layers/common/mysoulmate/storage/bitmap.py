"""Exact user sets for the SQL backends: Roaring bitmaps (`pyroaring`) over per-user ordinals.

A set is stored in Roaring's portable serialization, the format every Roaring library reads
(CRoaring, Java, Go), so the bytes outlive this code. A set costs about 2 bytes per member
while sparse and at most (ordinal range)/8 bytes when dense, and unions, intersections and
sizes run in C, so dashboard and cohort queries cost in proportion to days and keys, and
barely to users; never to events.

The backends' earlier format, a dense little-endian bitmap (bit n = ordinal n), is read only
to convert stored sets (`from_dense`: SQLite schema 5, PostgreSQL migration 0010).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from pyroaring import BitMap, FrozenBitMap

# pyroaring's BitMap holds 32-bit values: ordinals are handed out densely from 0 or 1, so
# this is four billion people ever seen.
MAX_ORDINAL = 2**32 - 1

UserBitmap = BitMap

# The set bits of each byte value, for `from_dense`.
_BITS_OF_BYTE = [tuple(bit for bit in range(8) if value >> bit & 1) for value in range(256)]


def decode(data: bytes | None) -> BitMap:
    """A stored set (None or empty bytes: the empty set)."""
    return BitMap.deserialize(data) if data else BitMap()


def decode_frozen(data: bytes | None) -> FrozenBitMap:
    """A stored set that nobody may change, so read caches can hand the same one out."""
    return FrozenBitMap.deserialize(data) if data else FrozenBitMap()


def encode(users: BitMap) -> bytes:
    """The portable serialization, runs compressed (new users get consecutive ordinals)."""
    users.run_optimize()
    return users.serialize()


def of(ordinals: Iterable[int]) -> BitMap:
    return BitMap(ordinals)


def union_all(sets: Sequence[BitMap]) -> BitMap:
    """One union of many sets (in C), cheaper than OR-ing them pairwise; a single set is
    returned as it is, not copied."""
    if len(sets) == 1:
        return sets[0]
    return BitMap.union(*sets) if sets else BitMap()


def union_frozen(sets: Sequence[FrozenBitMap]) -> FrozenBitMap:
    """`union_all` of frozen sets, frozen."""
    if len(sets) == 1:
        return sets[0]
    return FrozenBitMap.union(*sets) if sets else FrozenBitMap()


def from_dense(data: bytes, offset: int = 0) -> BitMap:
    """A legacy dense bitmap (bit n of the little-endian bytes = ordinal ``offset + n``)."""
    return BitMap(
        offset + index * 8 + bit
        for index, value in enumerate(data)
        if value
        for bit in _BITS_OF_BYTE[value]
    )
