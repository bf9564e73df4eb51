"""One job's stored flight-recorder uploads analysed in a process of its own: what runs in
that process (`run_job`, started by `sentinel.incidents.flightrec.analyse_isolated`) and in
its parsing pool (`_load_chunk`).

Apart from the service's modules on purpose: the analysis process and each parsing worker
import what they run, and importing `sentinel.incidents.flightrec` (SQLAlchemy, the
service's models and metrics) took each of them 1-2 s before it could start."""

from __future__ import annotations

import multiprocessing.connection
import os
import resource
from collections.abc import Sequence
from concurrent.futures.process import BrokenProcessPool
from functools import partial
from pathlib import Path
from typing import Any

from sentinel.flightrec.analyze import analyze_dumps, warm_up
from sentinel.flightrec.models import DumpSet, FrParseError, FrVerdict
from sentinel.flightrec.parse import DumpSetBuilder, map_chunks, merge_parts, spill_for
from sentinel.flightrec.unpickler import MAX_PICKLE_BYTES
from sentinel.inflate import InflateError, inflate_gzip

# A dump decompresses to no more than the parser would read (gzip can inflate 1000x).
MAX_DUMP_BYTES = MAX_PICKLE_BYTES


class FrJobFailure(Exception):
    """A job's analysis failed as a whole; `reason` is the metric's label."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _decompress(path: str) -> bytes:
    """The stored upload's bytes as the upload route inflated them (one gzip member),
    refusing more than MAX_DUMP_BYTES."""
    try:
        return inflate_gzip(Path(path).read_bytes(), MAX_DUMP_BYTES)
    except InflateError as exc:
        raise FrParseError(str(exc)) from None


def _load(
    paths: list[tuple[int, str]], workers: int = 1, spill_parent: Path | None = None
) -> tuple[DumpSet, list[str]]:
    """The job's dumps as one set (no DataFrame per rank), and what could not be read,
    parsed in chunks by `workers` processes (in this one if 1, or for a few dumps), which
    leave their collectives in files under `spill_parent` (see `DumpSet.spilled`)."""
    spill = spill_for(len(paths), workers, spill_parent)
    work = partial(_load_chunk, spill=spill.path if spill else None)
    parts, errors = [], []
    for part, failed in map_chunks(work, paths, workers):
        parts.append(part)
        errors += failed
    return merge_parts(parts, spill), errors


def _load_chunk(
    paths: Sequence[tuple[int, str]], spill: Path | None = None
) -> tuple[DumpSet, list[str]]:
    """One chunk's dumps as a set (its collectives written to a file in `spill` where
    one is given), and what could not be read.

    Any failure of one dump (corrupt gzip, a refused pickle, memory refused by the
    worker's limit) leaves that dump out and names it; the others are still read.
    """
    builder = DumpSetBuilder()
    errors: list[str] = []
    for rank, path in paths:
        try:
            builder.add(_decompress(path), f"nccl_trace_rank_{rank}")
        except MemoryError:
            errors.append(f"rank {rank}: over the memory budget")
        except Exception as exc:  # one bad dump must not sink its job
            errors.append(f"rank {rank}: {exc}" if str(exc) else f"rank {rank}: {exc!r}")
    return builder.build().spilled_to(spill), errors


def _analyse_job(
    paths: list[tuple[int, str]],
    rank_map: dict[int, tuple[str, int]],
    workers: int = 1,
    spill_parent: Path | None = None,
) -> tuple[FrVerdict, list[str]]:
    try:
        dumps, errors = _load(paths, workers, spill_parent)
    except BrokenProcessPool:
        raise FrJobFailure(
            "worker_died", "a parsing process died (over the memory budget?)"
        ) from None
    if errors and not dumps.dumps:
        raise FrJobFailure(
            "unreadable_dump", f"none of {len(errors)} dump(s) could be read: {errors[0]}"
        )
    return analyze_dumps(dumps, rank_map), errors


def _vm_bytes() -> int:
    """This process's address space now (VmSize), or 0 where /proc cannot tell."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def run_job(
    conn: multiprocessing.connection.Connection,
    budget: int,
    paths: list[tuple[int, str]],
    rank_map: dict[int, tuple[str, int]],
    workers: int = 1,
    spill_parent: str | None = None,
) -> None:
    """The child: limit the address space to what its imports and warm-up took plus
    `budget` (its parsing processes inherit the limit), then analyse and send back
    ("ok", (verdict, errors)) or (reason, message). The collective tables its parsing
    processes write go under `spill_parent`, which the parent removes."""
    # A process group of its own, so that a timeout kills its parsing processes with it.
    os.setpgid(0, 0)
    try:
        # Before the limit: polars starts its thread pools lazily, and under the limit the
        # first query could not (a panic, or a hang until the time limit).
        warm_up()
        if budget > 0:
            limit = _vm_bytes() + budget
            _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
            if hard != resource.RLIM_INFINITY:
                limit = min(limit, hard)
            resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
        spill = None if spill_parent is None else Path(spill_parent)
        reply: tuple[str, Any] = ("ok", _analyse_job(paths, rank_map, workers, spill))
    except FrJobFailure as failure:
        reply = (failure.reason, str(failure))
    except MemoryError:
        reply = ("memory", f"the analysis needed more than its {budget}-byte memory budget")
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # reported to the parent (a panic in polars' Rust code
        reply = ("error", f"{type(exc).__name__}: {exc}")  # is not an Exception)
    try:
        conn.send(reply)
    except MemoryError:
        conn.send(("memory", "the result did not fit the memory budget"))
    conn.close()
