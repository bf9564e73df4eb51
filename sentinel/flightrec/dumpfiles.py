"""Which files of a folder are flight-recorder dumps, and of which rank.

Light on purpose (no polars, numba or numpy): a caller lists the dumps, and starts the
parsing pool for them (`pool_settings.start_pool`), before the analysis's heavy imports."""

from __future__ import annotations

import os
import re
from pathlib import Path

_RANK_SUFFIX = re.compile(r"(\d+)$")


def rank_from_name(name: str) -> int | None:
    """PyTorch names a dump TORCH_FR_DUMP_TEMP_FILE + rank, so the rank ends the name."""
    base = name.rpartition("/")[2]
    if base in ("", ".", ".."):  # Path's reading of such names (a costly one per dump)
        base = Path(name).name
    match = _RANK_SUFFIX.search(base)
    return int(match.group(1)) if match else None


def dump_paths(directory: Path) -> list[Path]:
    """The dump files of a folder: regular files whose name ends in a rank number."""
    # (the error type lives with the models, which import polars: only on the error path)
    from sentinel.flightrec.models import FrParseError

    if not directory.is_dir():
        raise FrParseError(f"{directory}: not a directory")
    # scandir: the directory entry says whether it is a file (a stat per file was a
    # quarter of a second at 16k ranks, before the parsing could start)
    ranked = []
    with os.scandir(directory) as entries:
        for entry in entries:
            rank = None if entry.name.startswith(".") else rank_from_name(entry.name)
            if rank is not None and entry.is_file():
                ranked.append((rank, entry.name))
    if not ranked:
        raise FrParseError(f"{directory}: no dump files (names ending in a rank number)")
    return [directory / name for _, name in sorted(ranked)]
