"""Split a pasted log excerpt into records: one line, or one whole Python traceback."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from sentinel.knowledge.lines import Line, parse_line

_TRACEBACK_START: Final = re.compile(r"Traceback \(most recent call last\)")
_TRACEBACK_FRAME: Final = re.compile(r"^\s|^[│╭╰|]|^\^+$|^~+$")
_CHAIN_LINES: Final = (
    "During handling of the above exception",
    "The above exception was the direct cause",
)
_ELASTIC_ROOT: Final = re.compile(r"Root Cause \(first observed failure\)")
_ELASTIC_FIELD: Final = re.compile(
    r"^\s*(?P<key>time|host|rank|exitcode|error_file|traceback)\s*:\s*(?P<value>.*)$"
)
_MAX_TAIL_LINES: Final = 8
# A line that starts a new log message rather than continuing an exception's text.
_NEW_MESSAGE: Final = re.compile(
    r"^(?:\[?[EWIF]\d{4} |\[[EWIF] |\[?\d{4}-\d{2}-\d{2}"
    r"|(?:INFO|WARNING|WARN|ERROR|DEBUG|CRITICAL)\b"
    r"|\S+:\d+:\d+ \[\d+\]|srun: |slurmstepd: |NVRM: )"
)


@dataclass
class Record:
    """A unit of evidence: a single line, a Python traceback, or a launcher failure summary."""

    kind: str  # "line" | "traceback" | "elastic_root_cause"
    lines: list[Line] = field(default_factory=list)
    # For a traceback: the exception lines after the frames.
    tail: list[Line] = field(default_factory=list)

    @property
    def first(self) -> Line:
        return self.lines[0]

    @property
    def host(self) -> str | None:
        return next((line.host for line in self.lines if line.host), None)

    @property
    def rank(self) -> int | None:
        return next((line.rank for line in self.lines if line.rank is not None), None)

    @property
    def time(self) -> datetime | None:
        return next((line.time for line in self.lines if line.time), None)


def _stream(line: Line) -> tuple[str | None, int | None]:
    # Lines of one process: interleaved ranks keep separate tracebacks apart.
    return (line.host, line.rank)


def split_records(text: str) -> list[Record]:
    """Group lines into records; a traceback (frames and exception) becomes one record."""
    records: list[Record] = []
    open_tracebacks: dict[tuple[str | None, int | None], Record] = {}
    elastic: Record | None = None
    for raw in text.splitlines():
        line = parse_line(raw)
        body = line.body
        stream = _stream(line)

        if elastic is not None:
            if body.strip().startswith("=") or not body.strip():
                records.append(elastic)
                elastic = None
                continue
            elastic.lines.append(line)
            continue
        if _ELASTIC_ROOT.search(body):
            elastic = Record(kind="elastic_root_cause", lines=[line])
            continue

        current = open_tracebacks.get(stream)
        if _TRACEBACK_START.search(body):
            if current is not None and not current.tail:
                records.append(current)
            open_tracebacks[stream] = Record(kind="traceback", lines=[line])
            continue
        if current is not None:
            if not body.strip():
                if current.tail:
                    records.append(open_tracebacks.pop(stream))
                continue
            if not current.tail and (_TRACEBACK_FRAME.match(body) or body.startswith(_CHAIN_LINES)):
                current.lines.append(line)
                continue
            if not current.tail or (
                len(current.tail) < _MAX_TAIL_LINES
                and line.time is None
                and not _NEW_MESSAGE.match(body)
                and not _TRACEBACK_FRAME.match(body)
            ):
                current.lines.append(line)
                current.tail.append(line)
                continue
            records.append(open_tracebacks.pop(stream))
        if body.strip():
            records.append(Record(kind="line", lines=[line]))
    records.extend(open_tracebacks.values())
    if elastic is not None:
        records.append(elastic)
    return records


def elastic_fields(record: Record) -> dict[str, str]:
    """The key/value lines of a torchelastic 'Root Cause' block (host, rank, exitcode...)."""
    fields: dict[str, str] = {}
    for line in record.lines:
        match = _ELASTIC_FIELD.match(line.body)
        if match and match.group("key") not in fields:
            fields[match.group("key")] = match.group("value").strip()
    return fields
