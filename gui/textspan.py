"""Python string offsets (code points) to Qt text positions (UTF-16 code units), which differ after an emoji."""
from __future__ import annotations

from bisect import bisect_right


class Utf16Positions:
    """Maps code-point offsets of one text to UTF-16 positions, O(log n) per lookup after O(n) set-up."""

    def __init__(self, text: str):
        self._astral = [i for i, ch in enumerate(text) if ord(ch) > 0xFFFF]

    def __call__(self, offset: int) -> int:
        return offset + bisect_right(self._astral, offset - 1)
