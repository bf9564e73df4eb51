"""What the hardware-error collectors share: their findings shipped as the knowledge reads them.

rasdaemon, mcelog, EDAC, InfiniBand and devlink each write what they saw in the form the tool
prints it (or, for a counter, the sysfs path with its change), so that triage reads the record
with the same patterns as a pasted excerpt. What a record is (pattern, family, severity) is
what the knowledge says; a record no pattern knows is still shipped (family `unmatched`): a
hardware-error source reports nothing that does not matter.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sentinel.knowledge import PatternCatalog
from sentinel.knowledge.lines import parse_line
from sentinel.knowledge.machine_check import MCELOG_PATTERNS, McelogRecord
from sentinel.wire import LogRecord
from sentinel.wire.identity import pci_addresses
from sentinel.wire.severity import Severity
from sentinel.wire.v1 import LogSource
from sentinel_agent.collectors.base import Context
from sentinel_agent.collectors.logs import UNMATCHED, best_match, catalog_matcher


class HardwareRecords:
    """Makes the `LogRecord`s of one hardware source."""

    def __init__(
        self, ctx: Context, source: LogSource, patterns: PatternCatalog | None = None
    ) -> None:
        self._ctx = ctx
        self._source: LogSource = source
        self._matcher = catalog_matcher(patterns)

    def record(self, lines: Sequence[str], *, path: str) -> LogRecord:
        found = best_match(self._matcher, lines)
        pattern: str | None = None
        family = UNMATCHED
        severity = Severity.WARNING
        if found is not None:
            spec = found[0]
            pattern, family, severity = spec.name, spec.family, spec.severity
            if spec.name in MCELOG_PATTERNS:
                severity = _mcelog_severity(lines, spec.severity)
        message = "\n".join(lines)
        gpu_index, pci = self.gpu_named(message)
        return LogRecord(
            id=uuid.uuid4(),
            observed_at=self._ctx.clock.now(),
            source=self._source,
            pattern=pattern,
            family=family,
            severity=severity,
            message=message,
            path=path,
            gpu_index=gpu_index,
            pci_bus_id=pci,
        )

    def gpu_named(self, text: str) -> tuple[int | None, str | None]:
        """The GPU a record names by PCI address (a BMC's or an AER record's device), as NVML
        reported it on this host: the same identity the GPU's own samples carry. Addresses
        NVML never reported (a NIC's, a switch port's) name no GPU."""
        for pci in pci_addresses(text):
            index = self._ctx.state.gpu_by_pci.get(pci)
            if index is not None:
                return index, pci
        return None, None

    def gpu_numbered(self, index: int) -> tuple[int, str | None]:
        """A GPU a tool names by its index (DCGM's GPU id, which follows NVML's order)."""
        pci = next((p for p, i in self._ctx.state.gpu_by_pci.items() if i == index), None)
        return index, pci


def _mcelog_severity(lines: Sequence[str], matched: Severity) -> Severity:
    record = McelogRecord()
    for line in lines:
        record = record.read(parse_line(line).body)
    return record.severity(matched)
