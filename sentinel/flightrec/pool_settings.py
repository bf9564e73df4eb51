"""Process settings for the parsing pool (`parse.map_chunks`): its workers and the
collecting process handle a ~14 MB result per chunk of dumps, over and over."""

from __future__ import annotations

import ctypes
import fcntl
import gc
from concurrent.futures import ProcessPoolExecutor
from contextlib import suppress

# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def prepare_worker() -> None:
    """A parsing worker, once its imports are done: the cycle collector leaves their
    ~130k objects (numba's, polars') alone from now on, which it would otherwise walk
    again at every full collection between chunks; and malloc keeps what it frees."""
    gc.freeze()
    keep_freed_memory()


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
