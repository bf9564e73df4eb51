"""The kernel log (/dev/kmsg or a file): XIDs, the driver's and the host's hardware faults.

Every message a knowledge pattern matches is shipped, an XID as an `XidEvent`, the rest as
`LogRecord`s; so is any message at priority `err` or worse, within a rate limit. A message the
driver or the machine-check handler prints over several lines is one record.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Unpack

from sentinel.knowledge.lines import parse_line
from sentinel.wire import LogRecord, Observation, XidEvent
from sentinel.wire.severity import Severity
from sentinel_agent.collectors.base import Context
from sentinel_agent.collectors.logs import (
    MAX_MESSAGE_LINES,
    MESSAGE_IDLE_S,
    SUPPRESSED,
    UNMATCHED,
    LogOptions,
    MessageCollector,
    best_match,
    gpu_pci,
    join_message,
    line_matches,
)
from sentinel_agent.tail import LineSource, open_source

log = logging.getLogger(__name__)

# Syslog levels: a message at `err` (3) or worse may matter even when no pattern knows it.
ERR: Final = 3
CRIT: Final = 2
# "<3>": the priority /dev/kmsg gives every record (the reader puts it in front), and the
# one `dmesg -r` and some syslog templates print.
_PRIORITY: Final = re.compile(r"<(\d{1,3})>")
# Messages printed over several lines, by the message's first word under its prefixes.
_GROUPS: Final = {"NVRM:": "nvrm", "mce:": "mce", "[Hardware Error]": "mce"}
_PROCESS: Final = re.compile(r", pid=(?:'?<unknown>'?|(?P<pid>\d+)), name=(?P<name>[^,]*)")


@dataclass
class _Message:
    lines: list[str]
    level: int | None
    group: str | None
    last_line_at: float
    # A driver report ends with its fault line; the next NVRM line is another message.
    closed: bool = False


def _group(body: str) -> str | None:
    return next((group for word, group in _GROUPS.items() if body.startswith(word)), None)


class KernelLogCollector(MessageCollector):
    name = "kernel_log"

    def __init__(
        self, ctx: Context, *, path: Path, interval_s: float, **options: Unpack[LogOptions]
    ) -> None:
        # A line may matter if it has a knowledge keyword or a word that starts a multi-line
        # message.
        super().__init__(ctx, interval_s, {w.lower() for w in _GROUPS}, options)
        self._path = path
        self._source: LineSource | None = None
        self._key = f"{self.name}:{path}"
        # A message whose next line may still come is stored with the read position.
        self._open_key = f"{self._key}#open"
        self._open = self._restore(ctx.positions.get(self._open_key))

    def _restore(self, saved: str | None) -> _Message | None:
        if not saved:
            return None
        try:
            data = json.loads(saved)
            lines = [str(line) for line in data["lines"]]
            level = data.get("level")
            return _Message(
                lines, level if isinstance(level, int) else None, data.get("group"), 0.0
            )
        except (ValueError, TypeError, KeyError):
            log.warning("ignoring the unreadable open message stored for %s", self._path)
            return None

    def poll(self) -> Sequence[Observation]:
        if self._source is None:
            self._source = open_source(
                self._path, from_start=self._from_start, resume=self._ctx.positions.get(self._key)
            )
        out: list[Observation] = []
        now = self._ctx.clock.monotonic()
        for entry in self._source.read_lines():
            level: int | None = None
            priority = _PRIORITY.match(entry)
            if priority is not None:
                level = int(priority.group(1)) & 7
                entry = entry[priority.end() :]
            # A /dev/kmsg record can hold several lines: they are one message.
            self._entry(entry, level, now, out)
        if self._open is not None and now - self._open.last_line_at >= MESSAGE_IDLE_S:
            self._flush(out)
        for source, suppressed in self._gate.lifted():
            text = self._gate.describe(source, "kernel messages at err or worse", suppressed)
            out.append(self._record(text, None, SUPPRESSED, Severity.INFO))
        return out

    def _entry(self, entry: str, level: int | None, now: float, out: list[Observation]) -> None:
        if (level is None or level > ERR) and self._interesting.search(entry.lower()) is None:
            if self._open is not None:
                self._flush(out)  # the next message started
            return
        lines = entry.split("\n")
        group = _group(parse_line(lines[0]).body)
        current = self._open
        if (
            current is not None
            and group is not None
            and current.group == group
            and not current.closed
            and len(current.lines) < MAX_MESSAGE_LINES
        ):
            current.lines.extend(lines[: MAX_MESSAGE_LINES - len(current.lines)])
            current.last_line_at = now
            if level is not None:
                current.level = min(level, current.level if current.level is not None else 7)
        else:
            if current is not None:
                self._flush(out)
            current = self._open = _Message(lines[:MAX_MESSAGE_LINES], level, group, now)
        if group == "nvrm" and any(line_matches(self._matcher, line) for line in lines):
            current.closed = True
        if current.group is None or current.closed:
            self._flush(out)

    def _flush(self, out: list[Observation]) -> None:
        message, self._open = self._open, None
        if message is None:
            return
        found = best_match(self._matcher, message.lines)
        text = join_message(message.lines)
        if found is None:
            if message.level is None or message.level > ERR:
                return
            if self._gate.admit("kernel", self._ctx.clock.now()):
                severity = Severity.CRITICAL if message.level <= CRIT else Severity.ERROR
                out.append(self._record(text, None, UNMATCHED, severity, gpu_pci(None, text)))
            return
        spec, match = found
        if spec.kind == "xid":
            out.append(self._xid(int(match.group("xid")), gpu_pci(found, text), text))
        else:
            out.append(
                self._record(text, spec.name, spec.family, spec.severity, gpu_pci(found, text))
            )

    def _gpu_index(self, pci: str | None) -> int | None:
        return self._ctx.state.gpu_by_pci.get(pci) if pci else None

    def _xid(self, xid: int, pci: str | None, text: str) -> XidEvent:
        gpu_index = self._gpu_index(pci)
        if gpu_index is not None:
            self._ctx.metrics.observe_xid(gpu_index, xid)
        process = _PROCESS.search(text)
        pid = process.group("pid") if process else None
        return XidEvent(
            id=uuid.uuid4(),
            observed_at=self._ctx.clock.now(),
            xid=xid,
            gpu_index=gpu_index,
            pci_bus_id=pci,
            message=text,
            pid=int(pid) if pid else None,
            process_name=process.group("name") if process else None,
            source="kernel_log",
        )

    def _record(
        self,
        text: str,
        pattern: str | None,
        family: str,
        severity: Severity,
        pci: str | None = None,
    ) -> LogRecord:
        return self._log_record(
            "kernel",
            text,
            pattern,
            family,
            severity,
            path=str(self._path),
            gpu_index=self._gpu_index(pci),
            pci=pci,
        )

    def positions(self) -> Mapping[str, str | None]:
        if self._source is None:
            return {}
        message = self._open
        held = None
        if message is not None:
            held = json.dumps(
                {"lines": message.lines, "level": message.level, "group": message.group},
                separators=(",", ":"),
            )
        return {self._key: self._source.position(), self._open_key: held}

    def close(self) -> None:
        if self._source is not None:
            self._source.close()
