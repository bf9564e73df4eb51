"""The parsing pool (`parse.map_chunks`): when it is used, how it starts, and the process
settings of its workers and of the collecting process, which handle a result per chunk of
dumps, over and over.

Light on purpose (no polars, numba or numpy): a caller can start the pool before its own
heavy imports, so that the workers import theirs at the same time."""

from __future__ import annotations

import ctypes
import fcntl
import gc
from concurrent.futures import ProcessPoolExecutor
from contextlib import suppress
from multiprocessing import get_context

# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def pooled(items: int, workers: int) -> bool:
    """Whether `map_chunks` parses this many dumps in worker processes (or in this one)."""
    return workers > 1 and items >= 64


def start_pool(workers: int) -> ProcessPoolExecutor:
    """A parsing pool for one read (`parse.read_dump_set(..., pool=)`, which shuts it
    down), its workers started now and importing what they parse with.

    A worker takes ~0.6 s to start Python and import numpy, polars and numba: started
    before the caller's own heavy imports (once it has listed the dumps), it does that
    while they run, instead of after them. Spawned, not forked: forking a process that
    has started polars' thread pool can deadlock."""
    pool = ProcessPoolExecutor(
        workers, mp_context=get_context("spawn"), initializer=keep_freed_memory
    )
    widen_result_pipe(pool)
    # The executor starts a worker per task submitted while none is idle: one each.
    for _ in range(workers):
        pool.submit(prepare_worker)
    return pool


def prepare_worker() -> None:
    """A parsing worker's first task: its imports (the parser's modules, numba's and
    polars'), whose ~130k objects the cycle collector then leaves alone (it would
    otherwise walk them again at every full collection between chunks)."""
    import sentinel.flightrec.parse  # noqa: F401

    gc.freeze()


def keep_freed_memory() -> None:
    """malloc keeps what it frees for the next chunk: each chunk allocates and frees the
    same tens of MB (a worker's columns, tables and pickled result; the collecting
    process's received bytes), which glibc would otherwise map afresh and hand back every
    time (zeroing new pages was a tenth of a worker's CPU, and a quarter of the receiving
    thread's). Where malloc is not glibc's, nothing changes."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt(_M_MMAP_THRESHOLD, 32 * 1024 * 1024)  # glibc's largest (HEAP_MAX_SIZE / 2)
    mallopt(_M_TRIM_THRESHOLD, 1024 * 1024 * 1024)


def widen_result_pipe(pool: ProcessPoolExecutor) -> None:
    """The results come back through one pipe: at Linux's default 64 KB a chunk's 14 MB
    is hundreds of reads and wake-ups, and at 1 MB (an unprivileged process's limit) its
    receiving costs half the CPU. Best effort: the pipe is the executor's (CPython's
    `_result_queue`); elsewhere it stays as it is."""
    reader = getattr(getattr(pool, "_result_queue", None), "_reader", None)
    set_size = getattr(fcntl, "F_SETPIPE_SZ", None)
    if reader is None or set_size is None:
        return
    with suppress(OSError):
        fcntl.fcntl(reader.fileno(), set_size, 1024 * 1024)
