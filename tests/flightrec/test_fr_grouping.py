"""The compiled grouped min/max agrees with polars' group_by on any integers."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sentinel.flightrec import jit
from sentinel.flightrec.grouping import collective_spread, merge_spreads, min_max_by_key

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


_OPS = ["all_reduce", "broadcast", "all_to_all", "scatter", "gather"]
_SIGS = ["[[8]] ['f32']", "[[4]] ['f32']", "[[8]] ['bf16']"]


@settings(max_examples=150, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.integers(0, 3),  # group
            st.integers(0, 4) | st.none(),  # seq
            st.integers(0, len(_OPS) - 1),
            st.integers(0, len(_SIGS) - 1),
            st.integers(0, len(_SIGS) - 1),
            st.integers(0, 2),  # state
            st.integers(0, 3),  # which part (set of ranks) holds the row
        ),
        max_size=120,
    )
)
def test_merged_spreads_of_parts_are_the_spread_of_the_whole(
    rows: list[tuple[int, int | None, int, int, int, int, int]],
) -> None:
    """Summarised part by part (as each parsing worker does its chunk) and merged, the
    collectives give the same verdict per (group, seq) as summarised all at once."""
    table = pl.DataFrame(
        [(str(g), s, _OPS[o], _SIGS[i], _SIGS[u], st_, part) for g, s, o, i, u, st_, part in rows],
        schema={
            "pg": pl.Categorical,
            "seq": pl.Int64,
            "op": pl.Categorical,
            "in_sig": pl.Categorical,
            "out_sig": pl.Categorical,
            "state": pl.Int8,
            "part": pl.Int32,
        },
        orient="row",
    )
    parts = [table.filter(pl.col("part") == p).drop("part") for p in range(4)]
    merged = merge_spreads(
        pl.concat(
            [
                collective_spread(t).with_columns(part=pl.lit(p, pl.Int32))
                for p, t in enumerate(parts)
            ]
        )
    )
    whole = merge_spreads(collective_spread(table.drop("part")))

    def by_key(spread: pl.DataFrame) -> dict[tuple[str, int], tuple[bool, int, int]]:
        rows = spread.with_columns(pl.col("pg").cast(pl.String)).iter_rows()
        return {(g, s): (d, lo, hi) for g, s, d, lo, hi in rows}

    want = {}
    for (group, seq), rows_of in table.filter(pl.col("seq").is_not_null()).group_by("pg", "seq"):
        compared = rows_of.select(
            "op",
            pl.when(pl.col("op").is_in(["all_to_all", "scatter"]))
            .then(None)
            .otherwise("in_sig")
            .alias("in"),
            pl.when(pl.col("op").is_in(["all_to_all", "gather"]))
            .then(None)
            .otherwise("out_sig")
            .alias("out"),
        ).unique()
        want[(str(group), int(seq))] = (
            compared.height > 1,
            int(rows_of["state"].min()),  # type: ignore[arg-type]
            int(rows_of["state"].max()),  # type: ignore[arg-type]
        )
    assert by_key(merged) == want
    assert by_key(whole) == want
