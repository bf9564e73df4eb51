"""DCGM's health watches and diagnostics, from `dcgmi` where a DCGM host engine runs.

`dcgmi health -c -j` reports what the host engine's health watches (PCIe, NVLink, memory, SM,
InfoROM, thermal, power, driver, NVSwitch...) found; `dcgmi diag -r 1 -j` runs the quick
deployment diagnostic and reports each failure with its DCGM_FR code. Each incident is shipped
as one line (`dcgmi health: GPU 0: PCIe system: Warning: Detected more than 8 PCIe replays ...`,
`sentinel.knowledge.dcgm`), the form a pasted report is read in, with the severity DCGM's table
gives its code. An incident is shipped when it appears or its health worsens; the first health
check only learns where things stand. DCGM is optional: without `dcgmi` the agent does not
start these collectors, without a host engine (or with no watches set) they say so once and
find nothing until it runs.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
from collections.abc import Callable, Sequence
from typing import Final

from sentinel.knowledge import PatternCatalog
from sentinel.knowledge.dcgm import (
    DcgmCatalog,
    default_dcgm_catalog,
    diag_lines,
    health_lines,
    incident,
)
from sentinel.wire import LogRecord, Observation
from sentinel_agent.collectors.base import Context
from sentinel_agent.collectors.hardware import HardwareRecords

log = logging.getLogger(__name__)

HEALTH: Final = ("dcgmi", "health", "-c", "-j")
DIAG: Final = ("dcgmi", "diag", "-r", "1", "-j")
HEALTH_TIMEOUT_S: Final = 10.0
# `-r 1` runs the deployment checks only: seconds, no stress on the GPUs.
DIAG_TIMEOUT_S: Final = 300.0
# What dcgmi prints (on stdout) when it has nothing to ask: no host engine, no watches set.
_NOT_READY: Final = re.compile(
    r"unable to establish a connection|Unable to connect to host engine|"
    r"Health watches not enabled",
    re.IGNORECASE,
)


# DCGM's GPU entities ("GPU 3"); switches ("Switch 0") are no GPU.
_GPU_ENTITY: Final = re.compile(r"^GPU (\d+)$")


class NotReady(Exception):
    """dcgmi runs but has nothing to report yet (no nv-hostengine, no health watches set)."""


def run_dcgmi(command: Sequence[str], timeout_s: float) -> str:
    done = subprocess.run(list(command), capture_output=True, text=True, timeout=timeout_s)
    said = f"{done.stdout}\n{done.stderr}".strip()
    if _NOT_READY.search(said):
        raise NotReady(said.splitlines()[-1])
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)}: exit {done.returncode}: {said[-300:]}")
    return done.stdout


def dcgmi_installed() -> bool:
    return shutil.which("dcgmi") is not None


class _DcgmiCollector:
    """Runs one dcgmi command, ships the lines it had not reported before."""

    name: str
    command: tuple[str, ...]
    timeout_s: float
    # The health check's first answer is history; each diagnostic run is news.
    learn_first: bool

    def __init__(
        self,
        ctx: Context,
        *,
        interval_s: float,
        run: Callable[[Sequence[str], float], str] = run_dcgmi,
        patterns: PatternCatalog | None = None,
        catalog: DcgmCatalog | None = None,
    ) -> None:
        self.interval_s = interval_s
        self._run = run
        self._records = HardwareRecords(ctx, "dcgm", patterns)
        self._catalog = catalog or default_dcgm_catalog()
        self._seen: set[str] | None = None if self.learn_first else set()
        self._waiting = False

    def lines(self, output: str) -> list[str]:
        raise NotImplementedError

    def poll(self) -> Sequence[Observation]:
        try:
            output = self._run(self.command, self.timeout_s)
        except NotReady as exc:
            if not self._waiting:
                log.info("%s: %s; polled again every %.0f s", " ".join(self.command), exc,
                         self.interval_s)  # fmt: skip
                self._waiting = True
            return []
        self._waiting = False
        lines = self.lines(output) if output.strip() else []
        # An incident is known by what fails where, not by the counts in its message.
        now = {found[0] if (found := incident(line)) else line: line for line in lines}
        seen, self._seen = self._seen, set(now)
        if seen is None:
            return []
        return [self._record(line) for key, line in now.items() if key not in seen]

    def _record(self, line: str) -> LogRecord:
        record = self._records.record([line], path=" ".join(self.command))
        fields = found[1] if (found := incident(line)) else {}
        reading = self._catalog.read(
            line, system=fields.get("system"), entity=fields.get("entity"),
            status=fields.get("status"),
        )  # fmt: skip
        update: dict[str, object] = {"severity": reading.severity}
        entity = _GPU_ENTITY.match(fields.get("entity") or "")
        if entity and record.gpu_index is None:
            index, pci = self._records.gpu_numbered(int(entity.group(1)))
            update |= {"gpu_index": index, "pci_bus_id": pci}
        return record.model_copy(update=update)

    def close(self) -> None:
        pass


class DcgmHealthCollector(_DcgmiCollector):
    name = "dcgm_health"
    command = HEALTH
    timeout_s = HEALTH_TIMEOUT_S
    learn_first = True

    def lines(self, output: str) -> list[str]:
        return health_lines(json.loads(output))


class DcgmDiagCollector(_DcgmiCollector):
    name = "dcgm_diag"
    command = DIAG
    timeout_s = DIAG_TIMEOUT_S
    learn_first = False

    def lines(self, output: str) -> list[str]:
        return diag_lines(json.loads(output), self._catalog)
