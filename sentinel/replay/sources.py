"""A host's sources beyond its kernel and training logs, as the replay's agents read them.

Each is read by the agent's own collector for it, from what the recording wrote: mcelog's
log (a real file, `McelogCollector`), the BMC's SEL (the entries as `ipmitool sel elist`
prints them, answered to `IpmiSelCollector`'s `sel info` / `sel elist` as ipmitool shows a
BMC's SEL), the BMC's Redfish event log (LogEntry resources, served to `RedfishCollector`
over HTTP by a BMC in Redfish's resource tree), InfiniBand sysfs (a real tree in sysfs'
layout, healthy until the recording writes to it, `InfinibandCollector`) and `dcgmi health
-c -j` (healthy until the recording says what it answers, `DcgmHealthCollector`). So a
recording holds what the tools print, never a record the agent could not have made.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import httpx

from sentinel.replay.recording import Printed
from sentinel_agent.clock import ManualClock
from sentinel_agent.collectors.base import Collector, Context
from sentinel_agent.collectors.dcgm import DcgmHealthCollector
from sentinel_agent.collectors.infiniband import (
    DEFAULT_THRESHOLDS,
    LINK_DOWNED,
    InfinibandCollector,
)
from sentinel_agent.collectors.ipmi import Bmc, IpmiSelCollector
from sentinel_agent.collectors.mcelog import McelogCollector
from sentinel_agent.collectors.redfish import ROOT, RedfishCollector

# The ConnectX HCAs of a host whose recording writes to InfiniBand sysfs: one port each.
HCAS: Final = 8
# What a healthy port's files hold (and every counter at 0).
_PORT_UP: Final = {"state": "4: ACTIVE", "phys_state": "5: LinkUp"}
# `dcgmi health -c -j` where the health watches found nothing.
DCGM_HEALTHY: Final = json.dumps(
    {"body": {"Overall Health": {"value": "Healthy"}}, "header": ["Health Monitor Report"]}
)
# The sources a `Printed` may name besides the kernel and training logs.
SOURCES: Final = frozenset({"mcelog", "ipmi_sel", "redfish", "infiniband", "dcgm_health"})
# Where the replay's BMC keeps its event log, as OpenBMC names it.
REDFISH_ENTRIES: Final = f"{ROOT}/Systems/system/LogServices/EventLog/Entries"


class Sel:
    """A BMC's System Event Log as `ipmitool` shows it: what `sel info` and `sel elist`
    (`last N`) print for the entries added so far."""

    def __init__(self, clock: ManualClock) -> None:
        self._clock = clock
        self._entries: list[str] = []
        self._added = "Not Available"

    def add(self, lines: str) -> None:
        self._entries += [line for line in lines.splitlines() if line.strip()]
        self._added = self._clock.now().strftime("%m/%d/%Y %H:%M:%S")

    def run(self, args: Sequence[str]) -> str:
        match list(args):
            case ["sel", "info"]:
                return (
                    "SEL Information\n"
                    "Version          : 1.5 (v1.5, v2 compliant)\n"
                    f"Entries          : {len(self._entries)}\n"
                    f"Last Add Time    : {self._added}\n"
                    "Last Del Time    : Not Available\n"
                    "Overflow         : false\n"
                )
            case ["sel", "elist"]:
                return "".join(f"{e}\n" for e in self._entries)
            case ["sel", "elist", "last", count] if count.isdigit():
                return "".join(f"{e}\n" for e in self._entries[-int(count) :])
        raise RuntimeError(f"ipmitool {' '.join(args)}: not a SEL command the replay answers")


class RedfishBmc:
    """A BMC's Redfish service as far as the collector reads it: the service root, one
    system with one log service (the event log) whose entries are the LogEntry resources
    added so far (one JSON object a line of what the recording writes)."""

    def __init__(self) -> None:
        self._entries: list[dict[str, Any]] = []

    def add(self, text: str) -> None:
        for line in text.splitlines():
            if line.strip():
                entry = json.loads(line)
                if not isinstance(entry, dict) or "Id" not in entry:
                    raise ValueError(f"not a Redfish LogEntry: {line[:200]!r}")
                self._entries.append(entry)

    def _resource(self, path: str) -> dict[str, Any] | None:
        system = f"{ROOT}/Systems/system"
        services = f"{system}/LogServices"
        tree: dict[str, dict[str, Any]] = {
            ROOT: {"@odata.id": ROOT, "Systems": {"@odata.id": f"{ROOT}/Systems"}},
            f"{ROOT}/Systems": {"Members": [{"@odata.id": system}]},
            system: {"@odata.id": system, "LogServices": {"@odata.id": services}},
            services: {"Members": [{"@odata.id": f"{services}/EventLog"}]},
            f"{services}/EventLog": {
                "@odata.id": f"{services}/EventLog",
                "Entries": {"@odata.id": REDFISH_ENTRIES},
            },
            REDFISH_ENTRIES: {
                "@odata.id": REDFISH_ENTRIES,
                "Members": self._entries,
                "Members@odata.count": len(self._entries),
            },
        }
        return tree.get(path)

    def handle(self, request: httpx.Request) -> httpx.Response:
        body = self._resource(request.url.path) if request.method == "GET" else None
        return httpx.Response(404) if body is None else httpx.Response(200, json=body)


def lay_out_infiniband(root: Path) -> None:
    """Healthy HCAs in sysfs' layout: <root>/mlx5_N/ports/1/{state,phys_state,counters/*}."""
    for n in range(HCAS):
        port = root / f"mlx5_{n}" / "ports" / "1"
        (port / "counters").mkdir(parents=True)
        for name, value in _PORT_UP.items():
            (port / name).write_text(value + "\n")
        for counter in (LINK_DOWNED, *DEFAULT_THRESHOLDS):
            (port / "counters" / counter).write_text("0\n")


def write_sysfs(root: Path, text: str) -> None:
    """Each line `<path under root> <value>`: the value written to that (existing) file."""
    for line in text.splitlines():
        if not line.strip():
            continue
        relative, _, value = line.strip().partition(" ")
        path = (root / relative).resolve()
        if not path.is_relative_to(root.resolve()) or not path.is_file():
            raise ValueError(f"not a sysfs file of the host's HCAs: {relative!r}")
        path.write_text(value + "\n")


class HostSources:
    """The collectors of the sources a host's recording writes to, and where it writes."""

    def __init__(
        self, ctx: Context, clock: ManualClock, folder: Path, sources: frozenset[str], poll_s: float
    ) -> None:
        self._mcelog = folder / "mcelog"
        self._sysfs = folder / "sys" / "class" / "infiniband"
        self._sel = Sel(clock)
        self._bmc = RedfishBmc()
        self._dcgm = DCGM_HEALTHY
        self.collectors: list[Collector] = []
        learning: list[Collector] = []
        if "mcelog" in sources:
            self._mcelog.touch()
            self.collectors.append(
                McelogCollector(ctx, path=self._mcelog, interval_s=poll_s, from_start=True)
            )
        if "ipmi_sel" in sources:
            self.collectors.append(
                IpmiSelCollector(
                    ctx, bmc=Bmc(), interval_s=poll_s, from_start=True, run=self._sel.run
                )
            )
        if "redfish" in sources:
            client = httpx.Client(
                base_url="https://bmc.replay", transport=httpx.MockTransport(self._bmc.handle)
            )
            self.collectors.append(
                RedfishCollector(ctx, client=client, interval_s=poll_s, from_start=True)
            )
        if "infiniband" in sources:
            lay_out_infiniband(self._sysfs)
            learning.append(InfinibandCollector(ctx, root=self._sysfs, interval_s=poll_s))
        if "dcgm_health" in sources:
            learning.append(
                DcgmHealthCollector(ctx, interval_s=poll_s, run=lambda _cmd, _t: self._dcgm)
            )
        for collector in learning:
            # Their first poll learns where things stand, before anything goes wrong.
            collector.poll()
        self.collectors += learning

    def write(self, printed: Printed) -> None:
        match printed.log:
            case "mcelog":
                with self._mcelog.open("a") as f:
                    f.write(printed.text + "\n")
            case "ipmi_sel":
                self._sel.add(printed.text)
            case "redfish":
                self._bmc.add(printed.text)
            case "infiniband":
                write_sysfs(self._sysfs, printed.text)
            case "dcgm_health":
                self._dcgm = printed.text
            case _:
                raise ValueError(f"{printed.log}: not one of {sorted(SOURCES)}")
