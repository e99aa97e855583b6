"""Byte-range sets against a plain bitmap model (hypothesis)."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from storefs.cache.extents import Extents

N = 200
ops = st.lists(st.one_of(
    st.tuples(st.just("add"), st.integers(0, N), st.integers(0, N)),
    st.tuples(st.just("trunc"), st.integers(0, N), st.just(0)),
), max_size=40)


@settings(max_examples=300, deadline=None)
@given(ops, st.integers(0, N), st.integers(0, N))
def test_extents_match_a_bitmap(operations: list[tuple[str, int, int]], a: int, b: int) -> None:
    ext = Extents()
    bits = [False] * (N + 1)
    for op, x, y in operations:
        if op == "add":
            lo, hi = min(x, y), max(x, y)
            ext.add(lo, hi)
            for i in range(lo, hi):
                bits[i] = True
        else:
            ext.truncate(x)
            for i in range(x, N + 1):
                bits[i] = False
    ranges = list(ext)
    # disjoint, sorted, non-empty, and not touching (adjacent ranges merge)
    for (_, e1), (s2, _) in itertools.pairwise(ranges):
        assert e1 < s2
    assert all(s < e for s, e in ranges)
    covered = [False] * (N + 1)
    for s, e in ranges:
        for i in range(s, e):
            covered[i] = True
    assert covered == bits
    assert ext.total() == sum(bits)
    lo, hi = min(a, b), max(a, b)
    assert ext.contains(lo, hi) == (hi == lo or all(bits[lo:hi]))
    assert ext.overlaps(lo, hi) == any(bits[lo:hi])
    pieces = list(ext.pieces(lo, hi))
    pos = lo
    for p_start, p_end, inside in pieces:
        assert p_start == pos and p_end > p_start
        assert all(bits[i] == inside for i in range(p_start, p_end))
        pos = p_end
    assert pos == hi
    first = next(iter(ranges), (1, 1))
    assert ext.prefix_end() == (first[1] if first[0] == 0 else 0)
