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

from sentinel.knowledge import PatternCatalog, Severity
from sentinel.knowledge.lines import parse_line
from sentinel.knowledge.machine_check import MCELOG_PATTERNS, McelogRecord
from sentinel.wire import LogRecord
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
        severity: Severity = "warning"
        if found is not None:
            spec = found[0]
            pattern, family, severity = spec.name, spec.family, spec.severity
            if spec.name in MCELOG_PATTERNS:
                severity = _mcelog_severity(lines, spec.severity)
        return LogRecord(
            id=uuid.uuid4(),
            observed_at=self._ctx.clock.now(),
            source=self._source,
            pattern=pattern,
            family=family,
            severity=severity,
            message="\n".join(lines),
            path=path,
        )


def _mcelog_severity(lines: Sequence[str], matched: Severity) -> Severity:
    record = McelogRecord()
    for line in lines:
        record = record.read(parse_line(line).body)
    return record.severity(matched)
