"""The BMC's System Event Log over IPMI, read with `ipmitool sel`, one new entry at a time.

Locally (`-I open`, the kernel's /dev/ipmi0) or over the network (`-I lanplus`, the password
in a file that ipmitool reads with `-f`, never on a command line). Each poll asks `sel info`
first: while the SEL's entry count and its last add and delete times stand still, nothing else
is read. When they move, only the tail is read (`sel elist last N`, the last entry shipped
included, to find where the new ones start); a SEL that was cleared, had entries deleted, or
wrapped (its ids no longer follow the last one shipped) is read whole, and the entries after the
last one shipped (all of them, where it is gone) are new. Each new entry is shipped as
`ipmitool sel elist` prints it: id, date, time, sensor (its type and name), event, direction.

The sensors' states (`ipmitool sdr elist`) are read less often, whole (a BMC keeps no log of
them): a sensor that leaves `ok` for a threshold state (`lnc`, `lcr`, `unr`...; older ipmitool
prints `nc`, `cr`, `nr`) or moves between them is shipped as its line; the first poll only
learns where each stands. It covers the sensors a BMC logs no event for.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Final

from sentinel.knowledge import PatternCatalog
from sentinel.wire import Observation
from sentinel_agent.collectors.base import Context
from sentinel_agent.collectors.hardware import HardwareRecords

log = logging.getLogger(__name__)

TOOL: Final = "ipmitool"
# The device nodes the kernel's ipmi_devintf creates, under the names distributions use.
LOCAL_DEVICES: Final = (Path("/dev/ipmi0"), Path("/dev/ipmi/0"), Path("/dev/ipmidev/0"))
_TIMEOUT_S: Final = 30.0
# A SEL entry as `sel elist` prints it: its hex record id, then the fields between bars.
_ENTRY: Final = re.compile(r"^\s*(?P<id>[0-9a-fA-F]+) \|")
_INFO: Final = re.compile(r"^(?P<key>[A-Za-z ]+?)\s*:\s*(?P<value>.*?)\s*$")
# A sensor as `sdr elist` prints it: name | number | status | entity | reading.
_SENSOR: Final = re.compile(
    r"^(?P<name>[^|]*?)\s*\|\s*(?P<number>[0-9A-Fa-f]{2}h)\s*\|\s*(?P<status>[a-z]+)\s*\|"
)
# States that are not a finding: a sensor reading normally, or not readable (absent parts).
_QUIET: Final = frozenset({"ok", "ns"})

Run = Callable[[Sequence[str]], str]


@dataclass(frozen=True)
class Bmc:
    """Where ipmitool finds the BMC: this host's (`host` None) or one over lanplus."""

    host: str | None = None
    port: int = 623
    username: str | None = None
    password_file: Path | None = None
    # RMCP+ cipher suite; None lets ipmitool ask the BMC, which some (ipmi_sim, older BMCs)
    # do not answer: each call then waits for that question to time out.
    cipher_suite: int | None = None

    def command(self, *args: str) -> list[str]:
        if self.host is None:
            return [TOOL, "-I", "open", *args]
        out = [TOOL, "-I", "lanplus", "-H", self.host, "-p", str(self.port)]
        if self.cipher_suite is not None:
            out += ["-C", str(self.cipher_suite)]
        if self.username is not None:
            out += ["-U", self.username]
        if self.password_file is not None:
            out += ["-f", str(self.password_file)]
        return [*out, *args]

    def describe(self) -> str:
        return "local" if self.host is None else f"{self.host}:{self.port}"


def ipmitool_installed() -> bool:
    return shutil.which(TOOL) is not None


def local_bmc_present() -> bool:
    return any(path.exists() for path in LOCAL_DEVICES)


def runner(bmc: Bmc) -> Run:
    def run(args: Sequence[str]) -> str:
        command = bmc.command(*args)
        done = subprocess.run(command, capture_output=True, text=True, timeout=_TIMEOUT_S)
        if done.returncode != 0:
            shown = " ".join(args)
            raise RuntimeError(
                f"ipmitool {shown} ({bmc.describe()}): exit {done.returncode}: "
                f"{done.stderr.strip()[-500:]}"
            )
        return done.stdout

    return run


@dataclass(frozen=True)
class SelState:
    """Where the SEL stood at the last poll: what `sel info` says, and the last id shipped."""

    entries: int
    added: str
    deleted: str
    last_id: str | None


def parse_info(output: str) -> tuple[int, str, str]:
    """(entries, last add time, last delete time) from `ipmitool sel info`."""
    fields: dict[str, str] = {}
    for line in output.splitlines():
        found = _INFO.match(line)
        if found:
            fields.setdefault(found["key"], found["value"])
    if "Entries" not in fields:
        raise ValueError(f"`sel info` printed no entry count: {output[:200]!r}")
    return int(fields["Entries"]), fields.get("Last Add Time", ""), fields.get("Last Del Time", "")


def parse_elist(output: str) -> list[tuple[str, str]]:
    """(record id, the line as printed) for each entry of `ipmitool sel elist`, in its order."""
    out: list[tuple[str, str]] = []
    for line in output.splitlines():
        found = _ENTRY.match(line)
        if found:
            out.append((found["id"].lower().lstrip("0") or "0", line.rstrip()))
    return out


def _after(entries: list[tuple[str, str]], last_id: str | None) -> list[tuple[str, str]] | None:
    """The entries after the last one shipped; None where it is not among them."""
    ids = [record_id for record_id, _ in entries]
    if last_id is None or last_id not in ids:
        return None
    return entries[len(ids) - ids[::-1].index(last_id) :]


class IpmiSelCollector:
    name = "ipmi"

    def __init__(
        self,
        ctx: Context,
        *,
        bmc: Bmc,
        interval_s: float,
        from_start: bool = False,
        run: Run | None = None,
        patterns: PatternCatalog | None = None,
    ) -> None:
        self.interval_s = interval_s
        self._run = run if run is not None else runner(bmc)
        self._from_start = from_start
        self._records = HardwareRecords(ctx, "ipmi", patterns)
        self._path = " ".join(bmc.command("sel", "elist"))
        self._key = f"{self.name}:{bmc.describe()}"
        self._state = _restore(ctx.positions.get(self._key))

    def poll(self) -> Sequence[Observation]:
        entries, added, deleted = parse_info(self._run(["sel", "info"]))
        before = self._state
        if before is None and not self._from_start:
            # First start: what the SEL holds is history, not news.
            tail = parse_elist(self._run(["sel", "elist", "last", "1"])) if entries else []
            self._state = SelState(entries, added, deleted, tail[-1][0] if tail else None)
            return []
        if before is not None and (entries, added, deleted) == (
            before.entries,
            before.added,
            before.deleted,
        ):
            return []
        new = self._new_entries(entries, deleted, before)
        last_id = new[-1][0] if new else (before.last_id if before else None)
        self._state = SelState(entries, added, deleted, last_id)
        return [self._records.record([line], path=self._path) for _, line in new]

    def _new_entries(
        self, entries: int, deleted: str, before: SelState | None
    ) -> list[tuple[str, str]]:
        if entries == 0:
            return []
        grew = (
            before is not None
            and before.last_id is not None
            and entries > before.entries
            and deleted == before.deleted
        )
        if grew:
            assert before is not None
            tail = parse_elist(
                self._run(["sel", "elist", "last", str(entries - before.entries + 1)])
            )
            new = _after(tail, before.last_id)
            if new is not None:
                return new
        every = parse_elist(self._run(["sel", "elist"]))
        new = _after(every, before.last_id if before else None)
        if new is None:
            if before is not None and before.last_id is not None:
                log.warning("BMC SEL was cleared or wrapped: reading its %d entries", len(every))
            return every
        return new

    def positions(self) -> Mapping[str, str | None]:
        if self._state is None:
            return {}
        return {self._key: json.dumps(asdict(self._state), sort_keys=True, separators=(",", ":"))}

    def close(self) -> None:
        pass


def _restore(saved: str | None) -> SelState | None:
    if not saved:
        return None
    try:
        data = json.loads(saved)
        return SelState(
            entries=int(data["entries"]),
            added=str(data["added"]),
            deleted=str(data["deleted"]),
            last_id=None if data["last_id"] is None else str(data["last_id"]),
        )
    except (ValueError, TypeError, KeyError):
        log.warning("ignoring the unreadable IPMI SEL position %r", saved)
        return None


def parse_sdr(output: str) -> dict[tuple[str, str], tuple[str, str]]:
    """(name, number) -> (status, the line as printed) for each sensor of `ipmitool sdr elist`."""
    out: dict[tuple[str, str], tuple[str, str]] = {}
    for line in output.splitlines():
        found = _SENSOR.match(line)
        if found:
            out[(found["name"], found["number"])] = (found["status"], line.rstrip())
    return out


class IpmiSensorCollector:
    name = "ipmi_sdr"

    def __init__(
        self,
        ctx: Context,
        *,
        bmc: Bmc,
        interval_s: float,
        run: Run | None = None,
        patterns: PatternCatalog | None = None,
    ) -> None:
        self.interval_s = interval_s
        self._run = run if run is not None else runner(bmc)
        self._records = HardwareRecords(ctx, "ipmi", patterns)
        self._path = " ".join(bmc.command("sdr", "elist"))
        self._seen: dict[tuple[str, str], str] | None = None

    def poll(self) -> Sequence[Observation]:
        sensors = parse_sdr(self._run(["sdr", "elist"]))
        seen, self._seen = self._seen, {key: status for key, (status, _) in sensors.items()}
        if seen is None:
            return []
        return [
            self._records.record([line], path=self._path)
            for key, (status, line) in sensors.items()
            if status not in _QUIET and seen.get(key, "ok") != status
        ]

    def close(self) -> None:
        pass
