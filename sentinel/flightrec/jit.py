"""numba, set up once for the flight-recorder kernels (`scan`, `grouping`)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

# numba caches compiled code beside the module, or else in the user's cache folder, and
# fails at the first call when neither is writable (an installed package run by a
# system user); a temporary folder then still saves every later process the compile.
if "NUMBA_CACHE_DIR" not in os.environ and not os.access(Path(__file__).parent, os.W_OK):
    os.environ["NUMBA_CACHE_DIR"] = str(Path(tempfile.gettempdir()) / "sentinel-numba-cache")

import numba as nb  # reads NUMBA_CACHE_DIR when first imported

F = TypeVar("F", bound=Callable[..., Any])


def compiled(*, inline: bool = False) -> Callable[[F], F]:
    """numba's njit, cached on disk. Helpers are inlined into their callers: a compiled
    call with array arguments reference-counts each array, which costs more than a
    helper's body. Bounds are checked by the code itself (numba's own check costs 30%)."""

    def wrap(fn: F) -> F:
        jitted = nb.njit(
            fn, cache=True, nogil=True, boundscheck=False, inline="always" if inline else "never"
        )
        return cast("F", jitted)

    return wrap
