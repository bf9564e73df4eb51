"""numba, set up once for the flight-recorder kernels (`scan`, `prescan`, `grouping`).

numba is the `fast` extra (`sentinel-gpu[server,fast]`), a third of the server's install:
without it `compiled` leaves a function as plain Python and AVAILABLE is False, so that the
parser takes the restricted unpickler (`unpickler.load_plain`) for every dump and grouping
takes polars' group-by. The verdicts are the same; only the time differs.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar, cast

# numba caches compiled code beside the module, or else in the user's cache folder, and
# fails at the first call when neither is writable (an installed package run by a
# system user); a temporary folder then still saves every later process the compile.
if "NUMBA_CACHE_DIR" not in os.environ and not os.access(Path(__file__).parent, os.W_OK):
    os.environ["NUMBA_CACHE_DIR"] = str(Path(tempfile.gettempdir()) / "sentinel-numba-cache")


def _numba() -> ModuleType | None:
    try:
        import numba  # reads NUMBA_CACHE_DIR when first imported
    except ImportError:  # the `fast` extra is not installed
        return None
    return numba


nb = _numba()
AVAILABLE = nb is not None

F = TypeVar("F", bound=Callable[..., Any])


def compiled(*, inline: bool = False) -> Callable[[F], F]:
    """numba's njit, cached on disk. Helpers are inlined into their callers: a compiled
    call with array arguments reference-counts each array, which costs more than a
    helper's body. Bounds are checked by the code itself (numba's own check costs 30%).
    Without numba the function stays Python (callers that would be too slow so check
    AVAILABLE and take another path)."""

    def wrap(fn: F) -> F:
        if nb is None:
            return fn
        jitted = nb.njit(
            fn, cache=True, nogil=True, boundscheck=False, inline="always" if inline else "never"
        )
        return cast("F", jitted)

    return wrap


@contextmanager
def announce_compiles(
    starting: Callable[[], None], done: Callable[[float], None]
) -> Iterator[None]:
    """Tell the user when numba compiles inside the block (its disk cache is cold: the first
    run after an install or upgrade), which takes tens of seconds: `starting` at the first
    compile, `done` with the seconds taken once the block ends. Silent on a warm cache."""
    if nb is None:
        yield
        return
    from numba.core import event

    began: list[float] = []

    class Listener(event.Listener):
        def on_start(self, ev: Any) -> None:
            if not began:
                began.append(time.monotonic())
                starting()

        def on_end(self, ev: Any) -> None:
            pass

    with event.install_listener("numba:compile", Listener()):
        yield
    if began:
        done(time.monotonic() - began[0])
