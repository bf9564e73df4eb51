"""Split a pasted log excerpt into records: one line, or one whole Python traceback."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

# Prefixes that log collectors put in front of a message. Each is stripped in turn so that
# the message itself is what tracebacks are grouped on; what a prefix says (host, rank,
# time) is kept. Order matters: a syslog header may follow a pdsh host tag, and a dmesg
# timestamp may follow a syslog header.
_ISO_TS: Final = r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?"
_SYSLOG_TS: Final = r"[A-Z][a-z]{2}\s+\d{1,2}\s+\d{2}:\d{2}:\d{2}(?:\.\d+)?"
_HOST: Final = r"[A-Za-z0-9][\w.-]*"

_PREFIXES: Final[tuple[re.Pattern[str], ...]] = (
    # pdsh/clush host tag, only when a kernel-ish message follows (else "Error: x" would match)
    re.compile(
        rf"^(?P<host>{_HOST}): (?=\[\s*\d+\.\d+\]|{_SYSLOG_TS}|\d{{4}}-\d{{2}}-\d{{2}}"
        r"|NVRM|mlx5|EDAC|mce|nvme|pcieport|kernel:)"
    ),
    # Talos / some agents: "192.168.11.119: kern: warning: [2026-04-22T21:27:51Z]: "
    re.compile(rf"^(?P<host>{_HOST}): kern: \w+: \[[^\]]+\]: "),
    # ISO timestamp, then optionally "host program[pid]: " (RFC 5424 syslog, journald)
    re.compile(rf"^(?P<time>{_ISO_TS})\s+(?:(?P<host>{_HOST})\s+[\w./@-]+(?:\[\d+\])?:\s+)?"),
    # BSD syslog / journalctl: "Nov 28 07:38:56 host kernel: "
    re.compile(rf"^{_SYSLOG_TS}\s+(?P<host>{_HOST})\s+[\w./@-]+(?:\[\d+\])?:\s?"),
    # ctime with year, as dmesg -T or mpirun --timestamp-output print it
    re.compile(r"^\[?(?:[A-Z][a-z]{2} ){2}[ \d]\d \d{2}:\d{2}:\d{2} \d{4}\]?\s*"),
    # dmesg monotonic timestamp
    re.compile(r"^\[\s*\d+\.\d+\]\s?"),
    # bracketed ISO / python logging timestamp
    re.compile(rf"^\[(?P<time>{_ISO_TS})\]\s*"),
    # time of day only ("18:11:06.680 "), as some log shippers print it
    re.compile(r"^\d{2}:\d{2}:\d{2}(?:[.,]\d+)?\s+(?=\S)"),
    # line numbers of a pasted log view ("[1824] "); not a rank
    re.compile(r"^\[\d+\] (?=\S)"),
    # torchrun --tee / log prefixes: "[rank3]:", "[default3]:"
    re.compile(r"^\[(?:rank|default)(?P<rank>\d+)\]:\s?"),
    # mpirun --tag-output: "[1,3]<stdout>:"
    re.compile(r"^\[\d+,(?P<rank>\d+)\]<std(?:out|err)>:\s?"),
    # srun --label: "3: "
    re.compile(r"^(?P<rank>\d{1,5}): (?=\S)"),
)

# "host:pid:tid [dev] ..." (NCCL) or "host [dev] file.cc:12 NCCL" (newer NCCL without pids)
_NCCL_ORIGIN: Final = re.compile(
    rf"^(?P<host>{_HOST}):(?P<pid>\d+):(?P<tid>\d+) \[(?P<dev>\d+)\]"
    rf"|^(?P<host2>{_HOST}) \[(?P<dev2>\d+)\] \S+ NCCL"
)
_RANK_IN_TEXT: Final = re.compile(r"\[(?:PG [^\]]*?)?Rank (?P<rank>\d+)\]")

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


@dataclass(frozen=True)
class Line:
    """One input line: the raw text and the message under its prefixes."""

    raw: str
    body: str
    host: str | None = None
    rank: int | None = None
    gpu: str | None = None
    time: datetime | None = None
    prefixed: bool = False


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


def _parse_time(text: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(text.replace(",", ".").replace("Z", "+00:00"))
    except ValueError:
        return None
    # Rules compare times across lines and events; a zone-less stamp is taken as UTC so that
    # it compares with the others instead of raising.
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def parse_line(raw: str) -> Line:
    """Strip collector prefixes from a line, keeping what they say."""
    body = raw.rstrip("\r\n")
    host: str | None = None
    rank: int | None = None
    time: datetime | None = None
    prefixed = False
    for _ in range(len(_PREFIXES)):
        for prefix in _PREFIXES:
            match = prefix.match(body)
            if not match or not match.group(0):
                continue
            groups = match.groupdict()
            host = host or groups.get("host")
            if groups.get("rank") is not None and rank is None:
                rank = int(groups["rank"])
            if groups.get("time") and time is None:
                time = _parse_time(groups["time"])
            body = body[match.end() :]
            prefixed = True
            break
        else:
            break
    gpu: str | None = None
    origin = _NCCL_ORIGIN.match(body)
    if origin:
        host = host or origin.group("host") or origin.group("host2")
        gpu = origin.group("dev") or origin.group("dev2")
    if rank is None:
        in_text = _RANK_IN_TEXT.search(body)
        if in_text:
            rank = int(in_text.group("rank"))
    return Line(
        raw=raw.rstrip("\r\n"),
        body=body,
        host=host,
        rank=rank,
        gpu=gpu,
        time=time,
        prefixed=prefixed,
    )


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
