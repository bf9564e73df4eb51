"""A parsing worker's chunk job that dies as a worker does when a mapped file shrinks
under it (SIGBUS), for `read_dump_set`'s fallback test; importable by spawned workers."""

from __future__ import annotations

import os
import signal
from collections.abc import Sequence
from pathlib import Path

from sentinel.flightrec.models import DumpSet


def die_of_sigbus(paths: Sequence[Path]) -> DumpSet:
    os.kill(os.getpid(), signal.SIGBUS)
    raise AssertionError("still alive after SIGBUS")
