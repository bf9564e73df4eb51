"""Observations other processes on the host leave for the agent: the Slurm epilog's job ends.

A short-lived process (``sentinel-agent epilog``) must not wait for the service nor open the
outbox, which the running agent holds: it writes one observation per file into the spool
folder beside the outbox (``<outbox folder>/spool``), atomically (a temporary name, then a
rename). This collector hands those to the outbox and removes each file on its next poll,
once what it returned has been stored. A crash in between sends one again under the same
id, which the service stores once. A file that is not a valid observation is renamed
``.bad`` and logged, never retried.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from pydantic import TypeAdapter, ValidationError

from sentinel.wire import Observation

log = logging.getLogger(__name__)

SPOOL_DIR: Final = "spool"
_OBSERVATION: TypeAdapter[Observation] = TypeAdapter(Observation)


def spool_dir(outbox_path: Path) -> Path:
    return outbox_path.parent / SPOOL_DIR


def spool(folder: Path, observation: Observation) -> Path:
    """Leave one observation for the agent; returns the file. Raises OSError."""
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"{observation.kind}-{observation.id}.json"
    temporary = folder / f".{uuid.uuid4()}.tmp"
    with open(temporary, "wb") as f:
        f.write(_OBSERVATION.dump_json(observation, exclude_none=True))
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, final)
    return final


class SpoolCollector:
    name = "spool"

    def __init__(self, *, folder: Path, interval_s: float) -> None:
        self.interval_s = interval_s
        self._folder = folder
        self._handed: list[Path] = []

    def poll(self) -> Sequence[Observation]:
        # What the previous poll returned is in the outbox now: its files can go.
        for path in self._handed:
            path.unlink(missing_ok=True)
        self._handed = []
        if not self._folder.is_dir():
            return []
        out: list[Observation] = []
        for path in sorted(self._folder.glob("*.json")):
            try:
                out.append(_OBSERVATION.validate_json(path.read_bytes()))
            except ValidationError as exc:
                log.error("spooled file %s is not an observation (%s): set aside", path, exc)
                path.rename(path.with_suffix(".bad"))
                continue
            except FileNotFoundError:
                continue
            self._handed.append(path)
        return out

    def close(self) -> None:
        pass
