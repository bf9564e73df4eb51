"""mcelog's log (/var/log/mcelog): each machine-check record it decoded, shipped whole.

mcelog (the daemon, on hosts that use it instead of rasdaemon) writes each machine check as a
record of a dozen lines opened by "Hardware event. This is not a software error."; the record
is one `LogRecord`, as printed. A record is complete when the next one starts, or once no line
has come for a second; one still open is stored with the read position, so a restart
finishes it.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

from sentinel.knowledge import PatternCatalog
from sentinel.knowledge.lines import parse_line
from sentinel.knowledge.machine_check import starts_record
from sentinel.wire import LogRecord, Observation
from sentinel_agent.collectors.base import Context
from sentinel_agent.collectors.hardware import HardwareRecords
from sentinel_agent.collectors.logs import MAX_MESSAGE_LINES, MESSAGE_IDLE_S
from sentinel_agent.tail import FileTailer

log = logging.getLogger(__name__)

DEFAULT_PATH: Final = Path("/var/log/mcelog")
# A record is dated by its `TIME <seconds since the epoch>` line (when the machine check was
# logged; the collector reads it up to hardware_s later) unless that is ahead of the agent's
# clock or further back than this: a record from before a restart, a clock that was off.
MAX_RECORD_AGE: Final = timedelta(minutes=10)
_TIME: Final = re.compile(r"^TIME (?P<epoch>\d{9,11})\b")


class McelogCollector:
    name = "mcelog"

    def __init__(
        self,
        ctx: Context,
        *,
        path: Path = DEFAULT_PATH,
        interval_s: float,
        from_start: bool = False,
        patterns: PatternCatalog | None = None,
    ) -> None:
        self.interval_s = interval_s
        self._ctx = ctx
        self._path = path
        self._records = HardwareRecords(ctx, "mcelog", patterns)
        self._key = f"{self.name}:{path}"
        self._open_key = f"{self._key}#open"
        self._tailer = FileTailer(path, from_start=from_start, resume=ctx.positions.get(self._key))
        self._open: list[str] = _restore(ctx.positions.get(self._open_key))
        self._last_line_at = ctx.clock.monotonic()

    def poll(self) -> Sequence[Observation]:
        out: list[Observation] = []
        now = self._ctx.clock.monotonic()
        for line in self._tailer.read_lines():
            if not line.strip():
                continue
            if starts_record(parse_line(line).body) and self._begun():
                self._flush(out)
            if len(self._open) < MAX_MESSAGE_LINES:
                self._open.append(line)
            self._last_line_at = now
        if self._open and now - self._last_line_at >= MESSAGE_IDLE_S:
            self._flush(out)
        return out

    def _begun(self) -> bool:
        """Whether the open record has more than its opening lines ("Hardware event", "MCE 0")."""
        return any(not starts_record(parse_line(line).body) for line in self._open)

    def _flush(self, out: list[Observation]) -> None:
        lines, self._open = self._open, []
        if lines:
            out.append(_dated(self._records.record(lines, path=str(self._path)), lines))

    def positions(self) -> Mapping[str, str | None]:
        held = json.dumps(self._open) if self._open else None
        return {self._key: self._tailer.position(), self._open_key: held}

    def close(self) -> None:
        self._tailer.close()


def _dated(record: LogRecord, lines: Sequence[str]) -> LogRecord:
    for line in lines:
        if found := _TIME.match(parse_line(line).body.strip()):
            logged = datetime.fromtimestamp(int(found["epoch"]), UTC)
            if record.observed_at - MAX_RECORD_AGE <= logged <= record.observed_at:
                return record.model_copy(update={"observed_at": logged})
            return record
    return record


def _restore(saved: str | None) -> list[str]:
    if not saved:
        return []
    try:
        return [str(line) for line in json.loads(saved)]
    except (ValueError, TypeError):
        log.warning("ignoring the unreadable open mcelog record %r", saved)
        return []
