"""How one log line is read: collector prefixes stripped, what they say (host, rank, time) kept.

Shared by the agent (which matches the knowledge patterns on the message under the prefixes)
and triage (which also groups lines into records), so both read a line the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
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
    # pdsh/clush host tag, only when a kernel-ish message follows (else "Error: x" would match);
    # "kernel: " is syslog's tag of the kernel's messages, not a host
    re.compile(
        rf"^(?!kernel: )(?P<host>{_HOST}): (?=\[\s*\d+\.\d+\]|{_SYSLOG_TS}|\d{{4}}-\d{{2}}-\d{{2}}"
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
