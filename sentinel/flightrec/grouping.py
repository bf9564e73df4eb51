"""Grouped min/max over tens of millions of rows, compiled: the analyzer's two big scans.

At 16,384 ranks the analyzer groups ~20M collective entries by (group, seq) and ~30M
entries by (group, rank); polars' general group-by with many aggregations took 10 s of
the 2-core machine's time for these two alone. Both only need a count and min/max per
integer key, which one pass with an open-addressing table does at memory speed.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import numpy.typing as npt
import polars as pl

from sentinel.flightrec import jit
from sentinel.flightrec.jit import compiled

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


@compiled()
def _min_max_by_key(
    keys: npt.NDArray[np.int64], values: tuple[npt.NDArray[np.int64], ...]
) -> tuple[
    npt.NDArray[np.int64],
    npt.NDArray[np.int64],
    npt.NDArray[np.int64],
    npt.NDArray[np.int64],
    npt.NDArray[np.int64],
]:
    """(distinct keys, first row, rows, lo[k, m], hi[k, m]) in first-seen key order."""
    n = keys.shape[0]
    m = len(values)
    bits = 12
    table = np.full(1 << bits, -1, np.int64)
    size = 1 << (bits - 1)
    uniq = np.empty(size, np.int64)
    first = np.empty(size, np.int64)
    count = np.zeros(size, np.int64)
    lo = np.empty((size, m), np.int64)
    hi = np.empty((size, m), np.int64)
    groups = 0
    for i in range(n):
        key = keys[i]
        mask = (1 << bits) - 1
        slot = np.int64((np.uint64(key) * _GOLDEN) >> np.uint64(64 - bits))
        while True:
            g = table[slot]
            if g == -1:
                break
            if uniq[g] == key:
                break
            slot = (slot + 1) & mask
        if g != -1:
            count[g] += 1
            for j in range(m):
                v = values[j][i]
                if v < lo[g, j]:
                    lo[g, j] = v
                if v > hi[g, j]:
                    hi[g, j] = v
            continue
        if groups == size:  # more groups: grow the per-group arrays
            size *= 2
            uniq = _grown(uniq, size)
            first = _grown(first, size)
            count = _grown(count, size)
            lo = _grown2(lo, size)
            hi = _grown2(hi, size)
        g = groups
        groups += 1
        table[slot] = g
        uniq[g] = key
        first[g] = i
        count[g] = 1
        for j in range(m):
            lo[g, j] = values[j][i]
            hi[g, j] = values[j][i]
        if 2 * groups > (1 << bits):  # keep the table at most half full
            bits += 1
            mask = (1 << bits) - 1
            table = np.full(1 << bits, -1, np.int64)
            for h in range(groups):
                s = np.int64((np.uint64(uniq[h]) * _GOLDEN) >> np.uint64(64 - bits))
                while table[s] != -1:
                    s = (s + 1) & mask
                table[s] = h
    return (
        uniq[:groups].copy(),
        first[:groups].copy(),
        count[:groups].copy(),
        lo[:groups].copy(),
        hi[:groups].copy(),
    )


@compiled(inline=True)
def _grown(a: npt.NDArray[np.int64], size: int) -> npt.NDArray[np.int64]:
    out = np.zeros(size, np.int64)
    out[: a.shape[0]] = a
    return out


@compiled(inline=True)
def _grown2(a: npt.NDArray[np.int64], size: int) -> npt.NDArray[np.int64]:
    out = np.empty((size, a.shape[1]), np.int64)
    out[: a.shape[0]] = a
    return out


def _read_only(array: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """polars hands out some columns read-only (zero-copy) and others not; numba needs
    one array type for the whole tuple."""
    view = array.view()  # a view can always be made read-only, whatever owns the data
    view.setflags(write=False)
    return view


class Spread(NamedTuple):
    """Per distinct key: the first row it appears in, its rows, and each value's range."""

    first: npt.NDArray[np.int64]
    rows: npt.NDArray[np.int64]
    lo: npt.NDArray[np.int64]
    hi: npt.NDArray[np.int64]


def min_max_by_key(table: pl.DataFrame, key: pl.Expr, values: list[pl.Expr]) -> Spread:
    """Count and min/max of integer `values` per integer `key` (no nulls in either)."""
    columns = table.select(
        key.cast(pl.Int64).alias("k"),
        *(v.cast(pl.Int64).alias(f"v{i}") for i, v in enumerate(values)),
    ).rechunk()  # one buffer per column: to_numpy then copies nothing
    if not jit.AVAILABLE:
        return _min_max_by_key_polars(columns)
    keys = columns.get_column("k").to_numpy()
    arrays = tuple(_read_only(columns.get_column(c).to_numpy()) for c in columns.columns[1:])
    _keys, first, count, lo, hi = _min_max_by_key(keys, arrays)
    return Spread(first, count, lo, hi)


def _min_max_by_key_polars(columns: pl.DataFrame) -> Spread:
    """The same Spread by polars' group-by, where numba is not installed (slower at scale:
    see the module's docstring); keys in first-seen order, as the compiled pass has them."""
    values = columns.columns[1:]
    grouped = (
        columns.with_row_index("row")
        .group_by("k", maintain_order=True)
        .agg(
            pl.col("row").first().cast(pl.Int64).alias("first"),
            pl.len().cast(pl.Int64).alias("rows"),
            *(pl.col(v).min().alias(f"lo_{v}") for v in values),
            *(pl.col(v).max().alias(f"hi_{v}") for v in values),
        )
    )

    def matrix(prefix: str) -> npt.NDArray[np.int64]:
        out = np.empty((grouped.height, len(values)), np.int64)
        for j, v in enumerate(values):
            out[:, j] = grouped.get_column(f"{prefix}_{v}").to_numpy()
        return out

    return Spread(
        grouped.get_column("first").to_numpy(),
        grouped.get_column("rows").to_numpy(),
        matrix("lo"),
        matrix("hi"),
    )


def per_group_and_rank(collectives: pl.DataFrame, p2p: pl.DataFrame) -> pl.DataFrame:
    """One row per (group, rank) that recorded anything: its highest collective seq
    (null if only p2p), its oldest entry, and the group's description."""
    # ranks are >= -1 (-1: unknown), so rank + 1 fits the low 32 bits
    member = pl.col("pg").to_physical().cast(pl.Int64) * (1 << 32) + pl.col("rank") + 1
    low, high = -(2**63), 2**63 - 1

    def per(table: pl.DataFrame, top: pl.Expr) -> pl.DataFrame:
        spread = min_max_by_key(
            table, member, [top.fill_null(low), pl.col("t_created").fill_null(high)]
        )
        return table.select("pg", "rank", "pg_desc")[spread.first].with_columns(
            top=pl.Series(spread.hi[:, 0]).replace(low, None),
            oldest=pl.Series(spread.lo[:, 1]).replace(high, None),
        )

    both = pl.concat([per(collectives, pl.col("seq")), per(p2p, pl.lit(low, pl.Int64))])
    return both.group_by("pg", "rank").agg(
        pl.col("top").max(), pl.col("oldest").min(), pl.col("pg_desc").first()
    )


# Collectives whose per-rank sizes legitimately differ (all-to-all-v splits, the root of
# a scatter/gather holds the whole tensor), so only their op and dtypes are compared.
INPUT_SIZES_MAY_DIFFER = frozenset({"all_to_all", "alltoall", "alltoall_base", "scatter"})
OUTPUT_SIZES_MAY_DIFFER = frozenset({"all_to_all", "alltoall", "alltoall_base", "gather"})

# Sequence numbers below 2**40 (a million collectives a second for twelve days) keep
# the group in the key's upper bits.
_SEQ_SPAN = 1 << 40
_KEY = pl.col("pg").to_physical().cast(pl.Int64) * _SEQ_SPAN + pl.col("seq")

SPREAD_SCHEMA: dict[str, pl.DataType] = {
    "pg": pl.Categorical(),
    "seq": pl.Int64(),
    "op": pl.Categorical(),
    "in_sig": pl.Categorical(),
    "out_sig": pl.Categorical(),
    "differs": pl.Boolean(),
    "st_lo": pl.Int8(),
    "st_hi": pl.Int8(),
}


def collective_key(table: pl.DataFrame) -> pl.Expr:
    """One integer per (group, seq) of `table`'s rows (no null seq)."""
    seqs = table["seq"]
    if seqs.is_empty() or ((seqs.min() or 0) >= 0 and (seqs.max() or 0) < _SEQ_SPAN):  # type: ignore[operator]
        return _KEY
    # Out-of-range numbers (a hostile or broken dump) still get a distinct key, slower.
    return pl.struct("pg", "seq").rank("dense").cast(pl.Int64)


def _compared(column: str, may_differ: frozenset[str]) -> pl.Expr:
    """A signature as the comparison sees it: null where the op's sizes may differ."""
    skip = pl.col("op").is_in(list(may_differ))
    return pl.when(skip).then(None).otherwise(pl.col(column)).alias(column)


def collective_spread(collectives: pl.DataFrame) -> pl.DataFrame:
    """Per (group, seq) of some ranks' collectives (SPREAD_SCHEMA): one row's op and the
    signatures compared, whether its rows differ in any of them, and the range of states.

    Each parsing worker summarises its own chunk (a tenth of its rows at 16k ranks) while
    the others still parse; `merge_spreads` then combines the chunks' summaries, so the
    collecting process never groups the 20M collective rows itself.
    """
    table = collectives
    if table["seq"].null_count():
        table = table.filter(pl.col("seq").is_not_null())
    if table.is_empty():
        return pl.DataFrame(schema=SPREAD_SCHEMA)
    compared = [
        pl.col("op"),
        _compared("in_sig", INPUT_SIZES_MAY_DIFFER),
        _compared("out_sig", OUTPUT_SIZES_MAY_DIFFER),
    ]
    spread = min_max_by_key(
        table,
        collective_key(table),
        [*(c.to_physical().cast(pl.Int64).fill_null(-1) for c in compared), pl.col("state")],
    )
    lo, hi = spread.lo, spread.hi
    return (
        table[spread.first]
        .select("pg", "seq", *compared)
        .with_columns(
            differs=pl.Series((lo[:, :3] != hi[:, :3]).any(axis=1)),
            st_lo=pl.Series(lo[:, 3], dtype=pl.Int8),
            st_hi=pl.Series(hi[:, 3], dtype=pl.Int8),
        )
    )


def merge_spreads(spreads: pl.DataFrame) -> pl.DataFrame:
    """One row per (group, seq) from the spreads of disjoint sets of ranks (a `part`
    column tells them apart; without it, one set): pg, seq, `differs` (its ranks called
    different ops or signatures), st_lo and st_hi.

    Within one spread a category's code stands for its text, so two parts' rows for a
    collective differ exactly where a part says so or their codes differ. Only groups
    that span parts are merged: most groups (tp, pp) live within one host's ranks, and
    hashing their 1.4M (group, seq) rows at 16k ranks for nothing took most of a second.
    """
    kept = ["pg", "seq", "differs", "st_lo", "st_hi"]
    if "part" not in spreads.columns or spreads.is_empty():
        return spreads.select(kept)
    per_group = min_max_by_key(spreads, pl.col("pg").to_physical(), [pl.col("part")])
    spanning = spreads.select("pg")[per_group.first].filter(
        pl.Series(per_group.lo[:, 0] != per_group.hi[:, 0])
    )
    shared = pl.col("pg").is_in(spanning["pg"].implode())
    alone, merged = spreads.filter(~shared).select(kept), spreads.filter(shared)
    if merged.is_empty():
        return alone
    compared = ("op", "in_sig", "out_sig")
    spread = min_max_by_key(
        merged,
        collective_key(merged),
        [
            *(pl.col(c).to_physical().cast(pl.Int64).fill_null(-1) for c in compared),
            pl.col("differs"),
            pl.col("st_lo"),
            pl.col("st_hi"),
        ],
    )
    lo, hi = spread.lo, spread.hi
    combined = merged.select("pg", "seq")[spread.first].with_columns(
        differs=pl.Series((lo[:, :3] != hi[:, :3]).any(axis=1) | (hi[:, 3] == 1)),
        st_lo=pl.Series(lo[:, 4], dtype=pl.Int8),
        st_hi=pl.Series(hi[:, 5], dtype=pl.Int8),
    )
    return pl.concat([alone, combined])


def warm_up() -> None:
    """Merge two tiny spreads: loads what `merge_spreads` runs from numba's disk cache
    (numba itself: a third of a second), so that a process can do it while it would
    otherwise wait."""
    row = {"pg": "0", "seq": 1, "op": "", "in_sig": "", "out_sig": "", "differs": False}
    tiny = pl.DataFrame([row, row], schema_overrides=SPREAD_SCHEMA).with_columns(
        st_lo=pl.lit(0, pl.Int8), st_hi=pl.lit(0, pl.Int8), part=pl.Series([0, 1], dtype=pl.Int32)
    )
    merge_spreads(tiny)
