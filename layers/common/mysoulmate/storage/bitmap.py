"""Exact user sets for the SQL backends: a bitmap over dense per-user ordinals.

A day's active users cost (number of users)/8 bytes however many events they sent, and
unions and intersections are single big-integer operations, so dashboard and cohort queries
cost in proportion to days and users, never to events.
"""

from __future__ import annotations

from collections.abc import Iterable


class Bitmap:
    __slots__ = ("bits",)

    def __init__(self, bits: int = 0) -> None:
        self.bits = bits

    @classmethod
    def of(cls, ordinals: Iterable[int]) -> Bitmap:
        bits = 0
        for ordinal in ordinals:
            bits |= 1 << ordinal
        return cls(bits)

    @classmethod
    def from_bytes(cls, data: bytes | None) -> Bitmap:
        return cls(int.from_bytes(data, "little") if data else 0)

    def to_bytes(self) -> bytes:
        return self.bits.to_bytes((self.bits.bit_length() + 7) // 8, "little")

    def without(self, ordinal: int) -> Bitmap:
        return Bitmap(self.bits & ~(1 << ordinal))

    def __contains__(self, ordinal: object) -> bool:
        return isinstance(ordinal, int) and bool(self.bits >> ordinal & 1)

    def __or__(self, other: Bitmap) -> Bitmap:
        return Bitmap(self.bits | other.bits)

    def __and__(self, other: Bitmap) -> Bitmap:
        return Bitmap(self.bits & other.bits)

    def __len__(self) -> int:
        return self.bits.bit_count()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Bitmap) and other.bits == self.bits

    def __hash__(self) -> int:
        return hash(self.bits)

    def __repr__(self) -> str:
        return f"Bitmap(<{len(self)} users>)"
