"""Scanned dumps' entries to tables: one dump's frame, or a chunk's collectives and p2p."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from sentinel.flightrec.models import (
    COLLECTIVE_COLUMNS,
    ENTRY_SCHEMA,
    P2P_COLUMNS,
    ParsedDump,
)


@dataclass
class Scanned:
    """One dump read by the fast path: its metadata, and its entries still as arrays.

    Entries become a DataFrame in `assemble`, for one dump or for a worker's whole
    chunk at once: building a polars frame costs about as much as scanning the dump.
    """

    meta: ParsedDump  # with empty `entries`
    ints: npt.NDArray[np.int64]  # the TABLE_INTS columns of scan.EntryColumns.ints, by row
    nulls: npt.NDArray[np.bool_]  # by row: seq, p2p seq, t_created, t_started, t_completed,
    # duration
    durations: npt.NDArray[np.float64]
    is_p2p: npt.NDArray[np.bool_]
    state: npt.NDArray[np.int8]
    # (distinct values, each row's code) for the dictionary-encoded columns
    pg: tuple[list[str], npt.NDArray[np.uint32]]
    pg_desc: tuple[list[str], npt.NDArray[np.uint32]]
    op: tuple[list[str], npt.NDArray[np.uint32]]  # one value per distinct profiling name
    peer: list[int | None]  # ditto
    in_sig: tuple[list[str], npt.NDArray[np.uint32]]
    out_sig: tuple[list[str], npt.NDArray[np.uint32]]


def assemble(items: Sequence[Scanned], rank: bool = False) -> pl.DataFrame:
    """One DataFrame (ENTRY_SCHEMA, and a `rank` column if asked) for scanned dumps."""
    source = _ChunkColumns(items)
    return pl.DataFrame(
        [source.column(c, None) for c in (*ENTRY_SCHEMA, "rank") if rank or c != "rank"]
    )


def split_tables(items: Sequence[Scanned]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The scanned dumps' (collectives, p2p) tables as `DumpSet.split` makes them, built
    straight from the columns: no table of every entry and column to filter twice."""
    source = _ChunkColumns(items)
    p2p_rows = np.flatnonzero(source.is_p2p)
    coll_rows = np.flatnonzero(~source.is_p2p)
    return (
        pl.DataFrame([source.column(c, coll_rows) for c in COLLECTIVE_COLUMNS]),
        pl.DataFrame([source.column(c, p2p_rows) for c in P2P_COLUMNS]),
    )


class _ChunkColumns:
    """The entries of scanned dumps as whole numpy columns, from which tables take rows."""

    def __init__(self, items: Sequence[Scanned]) -> None:
        self.items = items
        # By column (ints[k] is column k), each contiguous: polars then copies nothing twice.
        self.ints = np.concatenate([item.ints for item in items], axis=1)
        self.nulls = np.concatenate([item.nulls for item in items], axis=1)
        self.is_p2p = np.concatenate([item.is_p2p for item in items])

    def durations(self) -> npt.NDArray[np.float64]:
        return np.concatenate([item.durations for item in self.items])

    def column(self, name: str, rows: npt.NDArray[np.int64] | None) -> pl.Series:
        """Column `name` (of RANKED_SCHEMA) for `rows` (None: all of them)."""

        def take(values: npt.NDArray[Any]) -> npt.NDArray[Any]:
            return values if rows is None else values[rows]

        def nullable(
            values: npt.NDArray[Any], null: npt.NDArray[np.bool_], dtype: Any
        ) -> pl.Series:
            series = pl.Series(name, take(values), dtype=dtype)
            null = take(null)
            return series.scatter(np.flatnonzero(null), None) if null.any() else series

        ints, nulls, items = self.ints, self.nulls, self.items
        if name in ("pg", "pg_desc", "op", "in_sig", "out_sig"):
            values: list[str] = []
            codes = []
            for item in items:
                distinct, at = getattr(item, name)
                codes.append(at + np.uint32(len(values)))  # into the concatenated values
                values.extend(distinct)
            # [] gathers without the lazy plan that .gather builds
            return pl.Series(name, values, dtype=pl.Categorical)[take(np.concatenate(codes))]
        if name == "record_id":
            return pl.Series(name, take(ints[_INT_ROW[0]]), dtype=pl.Int64)
        if name in _NULLABLE_INTS:
            value, null = _NULLABLE_INTS[name]
            return nullable(ints[_INT_ROW[value]], nulls[null], pl.Int64)
        if name == "is_p2p":
            return pl.Series(name, take(self.is_p2p), dtype=pl.Boolean)
        if name == "state":
            return pl.Series(name, take(np.concatenate([i.state for i in items])), dtype=pl.Int8)
        if name == "wait":
            # models.WAIT, the same arithmetic (a wrapping int64 difference times 1e-6),
            # without a frame of the three timings for it (a fifth of the tables' time)
            gap = (ints[_INT_ROW[9]] - ints[_INT_ROW[8]]) * 1e-6
            wait = np.where(nulls[5], gap, self.durations())
            return nullable(wait, nulls[5] & (nulls[3] | nulls[4]), pl.Float64)
        if name == "duration_ms":
            return nullable(self.durations(), nulls[5], pl.Float64)
        if name == "peer":
            peer_values = [-1 if p is None else p for item in items for p in item.peer]
            op_offsets = np.cumsum([0, *(len(item.peer) for item in items)])[:-1]
            peer_rows = np.concatenate(
                [
                    item.op[1].astype(np.int64) + off
                    for item, off in zip(items, op_offsets, strict=True)
                ]
            )
            peers = np.array(peer_values, np.int32)[peer_rows]
            return nullable(peers, peers == -1, pl.Int32)
        assert name == "rank", name
        ranks = [-1 if item.meta.rank is None else item.meta.rank for item in items]
        counts = [len(item.is_p2p) for item in items]
        return pl.Series(name, take(np.repeat(np.array(ranks, np.int32), counts)))


# The columns of scan.EntryColumns.ints that the tables read (record_id, seq, p2p seq,
# t_created, t_started, t_completed): a Scanned keeps only these.
TABLE_INTS = [0, 3, 4, 7, 8, 9]
_INT_ROW = {column: row for row, column in enumerate(TABLE_INTS)}
# Nullable int columns: (column of scan.EntryColumns.ints, row of nulls)
_NULLABLE_INTS = {
    "seq": (3, 0),
    "p2p_seq": (4, 1),
    "t_created": (7, 2),
    "t_started": (8, 3),
    "t_completed": (9, 4),
}
