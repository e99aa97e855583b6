"""Sets of byte ranges: which parts of a dirty file's spool hold valid or modified bytes."""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator


class Extents:
    """Disjoint, sorted half-open ranges ``[start, end)``; adjacent ranges are merged.

    Writes are mostly sequential, so a set usually holds one or a few ranges and every
    operation is a bisect plus a small splice.
    """

    __slots__ = ("_ends", "_starts")

    def __init__(self, ranges: Iterable[tuple[int, int]] = ()) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []
        for start, end in ranges:
            self.add(start, end)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter(zip(self._starts, self._ends, strict=True))

    def __len__(self) -> int:
        return len(self._starts)

    def __bool__(self) -> bool:
        return bool(self._starts)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Extents) and list(self) == list(other)

    def __repr__(self) -> str:
        return f"Extents({list(self)!r})"

    def copy(self) -> Extents:
        new = Extents()
        new._starts = list(self._starts)
        new._ends = list(self._ends)
        return new

    def total(self) -> int:
        return sum(e - s for s, e in self)

    def add(self, start: int, end: int) -> None:
        if end <= start:
            return
        # first range that ends at or after start (touching ranges merge)
        i = bisect.bisect_left(self._ends, start)
        # first range that starts after end
        j = bisect.bisect_right(self._starts, end)
        if i < j:
            start = min(start, self._starts[i])
            end = max(end, self._ends[j - 1])
        self._starts[i:j] = [start]
        self._ends[i:j] = [end]

    def truncate(self, size: int) -> None:
        """Drop everything at or beyond ``size``."""
        i = bisect.bisect_right(self._ends, size)  # first range ending beyond size
        if i < len(self._starts) and self._starts[i] < size:
            self._ends[i] = size
            i += 1
        del self._starts[i:]
        del self._ends[i:]

    def clear(self) -> None:
        self._starts.clear()
        self._ends.clear()

    def contains(self, start: int, end: int) -> bool:
        """Whether ``[start, end)`` lies inside one range."""
        if end <= start:
            return True
        i = bisect.bisect_right(self._starts, start) - 1
        return i >= 0 and self._ends[i] >= end

    def overlaps(self, start: int, end: int) -> bool:
        if end <= start:
            return False
        i = bisect.bisect_right(self._ends, start)
        return i < len(self._starts) and self._starts[i] < end

    def prefix_end(self) -> int:
        """End of the range that starts at 0 (0 if there is none)."""
        return self._ends[0] if self._starts and self._starts[0] == 0 else 0

    def pieces(self, start: int, end: int) -> Iterator[tuple[int, int, bool]]:
        """Split ``[start, end)`` into ``(a, b, inside)`` runs, in order."""
        pos = start
        i = bisect.bisect_right(self._ends, start)
        while pos < end:
            if i < len(self._starts) and self._starts[i] <= pos:
                b = min(end, self._ends[i])
                yield pos, b, True
                pos = b
                i += 1
            else:
                b = min(end, self._starts[i]) if i < len(self._starts) else end
                yield pos, b, False
                pos = b
