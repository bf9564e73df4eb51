"""The values flight-recorder analysis passes around: a parsed dump, a finding, a verdict."""

from __future__ import annotations

import gc
import shutil
import tempfile
import uuid
import weakref
from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from enum import StrEnum
from io import BytesIO
from pathlib import Path
from typing import Any, Literal

import polars as pl
from pydantic import BaseModel, ConfigDict, Field


@contextmanager
def no_cycle_collection() -> Iterator[None]:
    """Dumps are read into many acyclic objects (a checked dump: tens of thousands of
    containers; a set: each rank's stacks and configs), which the cycle collector would
    scan again and again for nothing as they pile up (a third of a read's time; a fifth of
    the analysis after it, one full collection over 16k ranks' metadata)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class FrParseError(ValueError):
    """A dump file that cannot be read; the message names the file and the problem."""


class VerdictKind(StrEnum):
    healthy = "healthy"
    missing = "missing"
    stuck = "stuck"
    mismatch = "mismatch"
    p2p = "p2p"
    straggler = "straggler"


@dataclass(frozen=True)
class GroupConfig:
    """One process group as a dump's pg_config describes it (ranks None when unknown)."""

    name: str
    desc: str
    ranks: tuple[int, ...] | None


@dataclass
class ParsedDump:
    """One rank's flight-recorder dump, its entries held as columns, never as objects.

    `entries` has one row per recorded operation; its schema is `ENTRY_SCHEMA`.
    `frames` keeps the stack of the last few entries only (by record_id), because a
    verdict quotes one stack and keeping 2,000 stacks per rank would cost gigabytes.
    """

    name: str
    rank: int | None
    version: str
    backend: str
    pg_config: dict[str, GroupConfig]
    entries: pl.DataFrame
    frames: dict[int, tuple[str, ...]] = field(default_factory=dict)

    def ranked_entries(self) -> pl.DataFrame:
        """`entries` with a `rank` column (-1 when the name does not tell the rank)."""
        rank = -1 if self.rank is None else self.rank
        return self.entries.with_columns(rank=pl.lit(rank, pl.Int32))


class SpillDir:
    """A directory for the tables of one read, which the parsing workers write as Arrow
    IPC files instead of sending them back (see `DumpSet.spilled`). It is removed with
    the last set that reads from it (or the read that failed), or at exit; a caller that
    may be killed before either (the service's analysis process) makes it inside a
    directory of its own that its parent removes."""

    def __init__(self, parent: Path | None = None) -> None:
        self.path = Path(tempfile.mkdtemp(prefix="sentinel-fr-spill-", dir=parent))
        self._finalizer = weakref.finalize(self, shutil.rmtree, self.path, ignore_errors=True)

    @classmethod
    def make(cls, parent: Path | None = None) -> SpillDir | None:
        """A new directory, or None where none can be made: the tables then come back
        through the pipe and stay in memory, as they did before spilling."""
        try:
            return cls(parent)
        except OSError:
            return None


Table = Literal["collectives", "p2p"]


@dataclass(frozen=True)
class SpilledTable:
    """Rows of one of a set's tables a parsing worker wrote to a file (Arrow IPC,
    zstd-compressed), and the range of ranks they are of (a chunk's dumps are whole ranks)."""

    table: Table
    path: str
    height: int
    first_rank: int
    last_rank: int


@dataclass
class DumpSet:
    """Many ranks' dumps read for one analysis: each rank's metadata, and the entries of
    all of them in two tables (collectives, point-to-point), each with a `rank` column.

    At 16k ranks the entries are 30M rows: one table each (filled by the parsing
    workers chunk by chunk) instead of 16k small frames to concatenate and then split.
    The tables (2.1 GB at 16k ranks) may be partly in files (`spilled`): a parsing
    worker writes its chunk's tables once, and the collecting process reads only the
    rows the rules ask for, instead of receiving, copying and holding all of them.
    Readers go through `scan` and `count`, which see both parts.
    """

    dumps: list[ParsedDump]  # metadata only: their own `entries` are empty
    collectives: pl.DataFrame  # COLLECTIVE_COLUMNS: the rows held in memory
    p2p: pl.DataFrame  # P2P_COLUMNS: ditto
    # One row per (group, rank) that recorded anything: pg, rank, pg_desc, top (highest
    # collective seq), oldest (earliest t_created). A rank's rows never span two
    # workers' chunks, so each worker computes its own; None: the analyzer will.
    members: pl.DataFrame | None = None
    # grouping.collective_spread of the collectives (each worker's chunk summarised where
    # it was parsed, the parts concatenated with a `part` column to tell them apart);
    # None: the analyzer computes it.
    spread: pl.DataFrame | None = None
    # More rows of either table, in files, and the directory that holds them, kept alive
    # as long as this set (None where it crossed from another process).
    spilled: tuple[SpilledTable, ...] = ()
    spill_dir: SpillDir | None = field(default=None, repr=False, compare=False)

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled with its tables as Arrow IPC: a parsing worker's chunk crosses to the
        collecting process this way, and polars pickles a frame about 4x slower than it
        writes the same frame as IPC (0.27 vs 0.07 ms per 2,000-entry dump)."""
        tables = (self.collectives, self.p2p, self.members, self.spread)
        return (_unpickle_dump_set, (self.dumps, *(_ipc(t) for t in tables), self.spilled))

    def count(self, table: Table) -> int:
        """The rows of `table`, in memory and spilled."""
        held: pl.DataFrame = getattr(self, table)
        return held.height + sum(t.height for t in self.spilled if t.table == table)

    def scan(self, table: Table, ranks: Collection[int] | None = None) -> pl.LazyFrame:
        """Every row of `table`, in memory and spilled, as one lazy frame; with `ranks`,
        only the files that may hold rows of those ranks are read (their rows are not
        filtered here)."""
        held: pl.DataFrame = getattr(self, table)
        spilled = [
            t.path
            for t in self.spilled
            if t.table == table
            and (ranks is None or any(t.first_rank <= r <= t.last_rank for r in ranks))
        ]
        if not spilled:
            return held.lazy()
        files = pl.scan_ipc(spilled)
        return pl.concat([held.lazy(), files]) if held.height else files

    def spilled_to(self, directory: Path | None) -> DumpSet:
        """This set with its tables written to new files in `directory` (None: as it is);
        a table that cannot be written stays as it is (a full disk only costs the
        collecting process the memory)."""
        if directory is None:
            return self
        out = self
        tables: tuple[Table, ...] = ("collectives", "p2p")
        for table in tables:
            held: pl.DataFrame = getattr(out, table)
            if held.is_empty():
                continue
            path = directory / f"{uuid.uuid4().hex}.arrow"
            try:
                # zstd: a chunk's 13 MB become 0.5 MB for ~3 ms more of a worker's CPU.
                # Uncompressed, the 2.1 GB of page cache a 16k-rank read wrote was memory
                # new to the machine each time (on a VM that hands freed memory back, ~4
                # CPU-s of the workers' system time), and ~0.4 s to free at the end.
                held.write_ipc(path, compression="zstd")
            except OSError:
                path.unlink(missing_ok=True)
                continue
            ranks = held["rank"].to_numpy()
            spilled = SpilledTable(table, str(path), len(ranks), int(ranks.min()), int(ranks.max()))
            spills = (*out.spilled, spilled)
            if table == "collectives":
                out = replace(out, collectives=held.clear(), spilled=spills)
            else:
                out = replace(out, p2p=held.clear(), spilled=spills)
        return out

    @classmethod
    def of(cls, dumps: Iterable[ParsedDump]) -> DumpSet:
        parsed = list(dumps)
        tables = [d.ranked_entries() for d in parsed]
        entries = pl.concat(tables) if tables else pl.DataFrame(schema=RANKED_SCHEMA)
        empty = entries.clear().drop("rank")
        return cls.split([replace(d, entries=empty) for d in parsed], entries)

    @classmethod
    def split(cls, dumps: list[ParsedDump], entries: pl.DataFrame) -> DumpSet:
        """The set from ranked entries: each table keeps only the columns the analysis
        reads (a third less memory at 16k ranks)."""
        return cls(
            dumps=dumps,
            collectives=entries.filter(~pl.col("is_p2p"))
            .with_columns(WAIT)
            .select(COLLECTIVE_COLUMNS),
            p2p=entries.filter(pl.col("is_p2p")).select(P2P_COLUMNS),
        )


def _ipc(table: pl.DataFrame | None) -> bytes | None:
    if table is None:
        return None
    out = BytesIO()
    table.write_ipc(out, compression="uncompressed")
    return out.getvalue()


def _unpickle_dump_set(
    dumps: list[ParsedDump],
    collectives: bytes,
    p2p: bytes,
    members: bytes | None,
    spread: bytes | None,
    spilled: tuple[SpilledTable, ...] = (),
) -> DumpSet:
    return DumpSet(
        dumps=dumps,
        collectives=pl.read_ipc(collectives),
        p2p=pl.read_ipc(p2p),
        members=None if members is None else pl.read_ipc(members),
        spread=None if spread is None else pl.read_ipc(spread),
        spilled=spilled,
    )


# State order: a rank whose entry is in an earlier state than its peers' is behind them.
STATE_CODES: dict[str, int] = {"scheduled": 0, "started": 1, "completed": 2}
STATE_NAMES: dict[int, str] = {code: name for name, code in STATE_CODES.items()}

ENTRY_SCHEMA: dict[str, pl.DataType] = {
    "record_id": pl.Int64(),
    "pg": pl.Categorical(),
    "pg_desc": pl.Categorical(),
    "seq": pl.Int64(),
    "p2p_seq": pl.Int64(),
    "is_p2p": pl.Boolean(),
    "op": pl.Categorical(),
    "peer": pl.Int32(),  # p2p only: the other side, as a rank within the group
    "in_sig": pl.Categorical(),
    "out_sig": pl.Categorical(),
    "state": pl.Int8(),
    "t_created": pl.Int64(),
    "t_started": pl.Int64(),
    "t_completed": pl.Int64(),
    "duration_ms": pl.Float64(),
}
# Entries of many ranks in one table.
RANKED_SCHEMA: dict[str, pl.DataType] = {**ENTRY_SCHEMA, "rank": pl.Int32()}
# What a DumpSet keeps of them: of the timings, only the time spent inside each collective
# (`WAIT`, the straggler rule's one use of them): a quarter less to ship and hold.
COLLECTIVE_COLUMNS = (
    "record_id", "pg", "pg_desc", "seq", "op", "in_sig", "out_sig", "state",
    "t_created", "wait", "rank",
)  # fmt: skip
# Milliseconds inside the collective: duration_ms (CUDA events) where recorded, else the
# time between the watchdog seeing it start and complete; null where neither is known.
# Times 1e-6 (what polars made of / 1e6 as well): tables.py computes it the same way in numpy.
WAIT = pl.coalesce(
    pl.col("duration_ms"), (pl.col("t_completed") - pl.col("t_started")) * 1e-6
).alias("wait")
P2P_COLUMNS = ("pg", "pg_desc", "p2p_seq", "op", "peer", "state", "t_created", "rank")


class FrFinding(BaseModel):
    """The first disagreement found in one process group (or one p2p pair)."""

    model_config = ConfigDict(frozen=True)

    kind: VerdictKind
    group: str
    group_desc: str = ""
    seq: int
    op: str
    culprit_ranks: list[int]
    waiting_ranks: list[int] = Field(default_factory=list)
    evidence: list[str] = Field(default_factory=list)
    role: str = "origin"  # "origin" or "cascade" once cascades are resolved


class RankLocation(BaseModel):
    rank: int
    host: str
    gpu: int


class FrVerdict(BaseModel):
    """What the dumps say: the origin of the failure and who merely waited on it."""

    kind: VerdictKind
    group: str | None = None
    group_desc: str | None = None
    seq: int | None = None
    op: str | None = None
    culprit_ranks: list[int] = Field(default_factory=list)
    victim_ranks: list[int] = Field(default_factory=list)
    culprit_locations: list[RankLocation] = Field(default_factory=list)
    victim_locations: list[RankLocation] = Field(default_factory=list)
    evidence: list[str] = Field(default_factory=list)
    findings: list[FrFinding] = Field(default_factory=list)
    ranks_analysed: int = 0
    entries_analysed: int = 0

    @property
    def healthy(self) -> bool:
        return self.kind is VerdictKind.healthy
