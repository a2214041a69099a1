"""Refuse JSON bodies nested too deeply before anything parses them.

JSON decoders and encoders recurse (the stdlib's decoder, pydantic's validators, `json.dumps`),
so a text of a few kilobytes nested a thousand levels deep reaches a recursion limit and
becomes a 500. The API middleware feeds every request body through `NestingScanner` as it
arrives, and a body deeper than `MAX_BODY_NESTING` is refused with 400 before a route sees
it; JSON in a query parameter is scanned the same way.
The field-level limit (`analytics.validation.MAX_NESTING`) is smaller and checked later,
iteratively, with the field's name in the error.
"""

from __future__ import annotations

import re

from mysoulmate.core.errors import ApiError

# Generous for any envelope (batch → message → properties) around 32 levels of properties,
# far below every decoder's recursion limit (≥ 200).
MAX_BODY_NESTING = 64
_STRUCTURAL = re.compile(rb'[\[\]{}"\\]')


class NestingTooDeepError(ApiError):
    status_code = 400
    code = "nesting_too_deep"


class NestingScanner:
    """Tracks the nesting depth of a JSON text fed in chunks (strings and escapes aware).

    Only structural bytes are visited (a regex finds them), so a large body of plain text
    costs a scan at C speed, not a Python loop per byte.
    """

    __slots__ = ("_depth", "_in_string", "_limit", "_skip_first")

    def __init__(self, limit: int = MAX_BODY_NESTING) -> None:
        self._limit = limit
        self._depth = 0
        self._in_string = False
        self._skip_first = False  # the previous chunk ended with a backslash inside a string

    def feed(self, chunk: bytes, *, last: bool = False) -> None:
        """Scan the next ``chunk``; ``last``: nothing follows it, so a chunk that does not
        hold enough brackets to pass the limit (counted at C speed, those inside strings
        too) needs no scan: the usual request body."""
        if last and self._depth + chunk.count(b"[") + chunk.count(b"{") <= self._limit:
            return
        escaped_at = 0 if self._skip_first else -1
        self._skip_first = False
        for match in _STRUCTURAL.finditer(chunk):
            at = match.start()
            if at == escaped_at:
                continue
            char = chunk[at]
            if self._in_string:
                if char == 0x5C:  # backslash: the next byte is escaped
                    escaped_at = at + 1
                    if escaped_at == len(chunk):
                        self._skip_first = True
                elif char == 0x22:
                    self._in_string = False
            elif char == 0x22:
                self._in_string = True
            elif char in (0x5B, 0x7B):
                self._depth += 1
                if self._depth > self._limit:
                    raise NestingTooDeepError(max_depth=self._limit)
            elif char in (0x5D, 0x7D):
                self._depth -= 1
