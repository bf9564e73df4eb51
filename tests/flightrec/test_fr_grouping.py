"""The compiled grouped min/max agrees with polars' group_by on any integers."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sentinel.flightrec import jit
from sentinel.flightrec.grouping import min_max_by_key

_I64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(
        st.tuples(st.integers(-3, 3) | _I64, _I64, st.integers(-5, 5)), min_size=0, max_size=300
    )
)
def test_min_max_by_key_matches_polars(rows: list[tuple[int, int, int]]) -> None:
    table = pl.DataFrame(rows, schema={"k": pl.Int64, "a": pl.Int64, "b": pl.Int64}, orient="row")
    spread = min_max_by_key(table, pl.col("k"), [pl.col("a"), pl.col("b")])

    got = {
        int(table["k"][int(first)]): (int(n), *map(int, lo), *map(int, hi))
        for first, n, lo, hi in zip(spread.first, spread.rows, spread.lo, spread.hi, strict=True)
    }
    want = {
        k: (n, a_lo, b_lo, a_hi, b_hi)
        for k, n, a_lo, b_lo, a_hi, b_hi in table.group_by("k")
        .agg(
            pl.len(),
            pl.col("a").min().alias("a_lo"),
            pl.col("b").min().alias("b_lo"),
            pl.col("a").max().alias("a_hi"),
            pl.col("b").max().alias("b_hi"),
        )
        .iter_rows()
    }
    assert got == want
    # the first row of each key is the first time it appears
    firsts = [int(f) for f in spread.first]
    assert firsts == sorted(firsts)
    assert all(table["k"][f] not in table["k"][:f].to_list() for f in firsts)


def test_many_keys_grow_the_table() -> None:
    n = 200_000
    table = pl.DataFrame(
        {"k": pl.int_range(n, eager=True) % 70_001, "v": pl.int_range(n, eager=True)}
    )
    spread = min_max_by_key(table, pl.col("k"), [pl.col("v")])
    assert len(spread.first) == 70_001
    assert int(spread.rows.sum()) == n
    assert int(spread.hi[:, 0].max()) == n - 1


@settings(max_examples=100, deadline=None)
@given(
    rows=st.lists(
        st.tuples(st.integers(-3, 3) | _I64, _I64, st.integers(-5, 5)), min_size=0, max_size=200
    )
)
def test_the_fallback_without_numba_gives_the_same_spread(rows: list[tuple[int, int, int]]) -> None:
    """Where the `fast` extra is not installed, polars' group-by gives the same arrays, in the
    same (first-seen) key order."""
    table = pl.DataFrame(rows, schema={"k": pl.Int64, "a": pl.Int64, "b": pl.Int64}, orient="row")
    values = [pl.col("a"), pl.col("b")]
    compiled = min_max_by_key(table, pl.col("k"), values)
    with pytest.MonkeyPatch.context() as m:
        m.setattr(jit, "AVAILABLE", False)
        fallback = min_max_by_key(table, pl.col("k"), values)
    for got, want in zip(fallback, compiled, strict=True):
        assert got.dtype == np.int64
        assert got.shape == want.shape
        assert (got == want).all()
