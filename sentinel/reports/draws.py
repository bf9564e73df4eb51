"""A simulated fault as the agents and watchdogs would report it, weighed by the real triage.

Each fault of a category is drawn as one of a few variants, each a set of stored events in the
wire's format: the lines a failing host prints (the demo's fault templates,
`sentinel.demo.faults`, and the replay cases' lines), XID and ECC observations, GPU conditions
and the watchdogs' synthetic events (a stalled job, the ranks that stopped first, a silent
host), plus the symptom flood on the peers (every other host's NCCL watchdog timeout). They
become signals exactly as the triage worker reads them (`incidents.signals.event_signals`) and
are classified by `triage.classify_signals` with the job's size, as the worker does.

A precursor is drawn the same way: what a host shows before it fails (a row pending remap, a
GPU in thermal slowdown, a PSU that lost redundancy), while the job still trains.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from sentinel.db.models import Event
from sentinel.demo.faults import FAULTS
from sentinel.demo.faults import Fault as Template
from sentinel.incidents.signals import event_signals
from sentinel.incidents.watchdog import synthetic_row
from sentinel.ingest.repository import event_row
from sentinel.knowledge.taxonomy import Category
from sentinel.remediation.service import link_flapped
from sentinel.triage import classify_signals
from sentinel.triage.verdict import Verdict
from sentinel.wire import EccEvent, LogRecord, XidEvent

AT: Final = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
JOB: Final = "llama3-405b-pretrain"
RACK: Final = 8  # hosts per rack (a fabric fault's reach)
_BUS: Final = ("18", "2a", "3a", "5d", "9a", "ab", "ba", "db")
_TEMPLATES: Final = {t.category: t for t in FAULTS}


def host_name(index: int) -> str:
    return f"gpu-host-{index:04d}"


@dataclass
class Scene:
    """One fault's window: the events the service would hold when triage weighs it."""

    hosts: int
    culprit: int
    gpu: int
    gpus_per_host: int = 8
    events: list[Event] = field(default_factory=list)
    _seq: int = 0

    @property
    def name(self) -> str:
        return host_name(self.culprit)

    def bus(self, gpu: int | None = None) -> str:
        return f"0000:{_BUS[(self.gpu if gpu is None else gpu) % 8]}:00"

    def rank(self, host: int, local: int = 0) -> int:
        return host * self.gpus_per_host + local

    def _wire(self, host: int, obs: LogRecord | XidEvent | EccEvent, at_s: float) -> None:
        self._seq += 1
        self.events.append(
            Event(**event_row(host_name(host), self._seq, obs, AT + timedelta(seconds=at_s + 0.2)))
        )

    def log(self, host: int, text: str, at_s: float = 0.0, source: str = "kernel") -> None:
        obs = LogRecord(
            id=uuid.uuid4(),
            observed_at=AT + timedelta(seconds=at_s),
            source=source,  # type: ignore[arg-type]
            message=text,
        )
        self._wire(host, obs, at_s)

    def template(self, category: Category) -> None:
        """The demo's lines for this category, spread as the template says."""
        t: Template = _TEMPLATES[category]
        first = self.culprit - self.culprit % RACK
        spread = {
            "culprit": [self.culprit],
            "rack": range(first, min(first + RACK, self.hosts)),
            "all": range(self.hosts),
        }[t.spread]
        for h in spread:
            text = "\n".join(
                line.format(
                    host=host_name(h),
                    bus=self.bus(),
                    pid=4100 + h,
                    rank=self.rank(h),
                    peer=f"{h % 250}.{(h * 7) % 250}",
                )
                for line in t.lines
            )
            self.log(h, text, source="kernel" if t.log == "kernel" else "application")

    def xid(self, code: int, message: str, gpu: int | None = None, at_s: float = 0.0) -> None:
        g = self.gpu if gpu is None else gpu
        self._wire(
            self.culprit,
            XidEvent(
                id=uuid.uuid4(),
                observed_at=AT + timedelta(seconds=at_s),
                xid=code,
                gpu_index=g,
                pci_bus_id=f"00000000:{_BUS[g % 8].upper()}:00.0",
                message=f"NVRM: Xid (PCI:{self.bus(g)}): {code}, pid=4411, name=python3, "
                + message,
                source="kernel_log",
            ),
            at_s,
        )

    def ecc(self, counter: str, previous: int, current: int) -> None:
        self._wire(
            self.culprit,
            EccEvent(
                id=uuid.uuid4(),
                observed_at=AT,
                gpu_index=self.gpu,
                counter=counter,  # type: ignore[arg-type]
                previous=previous,
                current=current,
            ),
            0.0,
        )

    def synthetic(self, kind: str, host: str, key: object, **payload: Any) -> None:
        self.events.append(
            Event(**synthetic_row(kind, key=(key,), host=host, at=AT, received=AT, **payload))
        )

    def condition(self, condition: str, detail: str, gpu: int | None = None) -> None:
        g = self.gpu if gpu is None else gpu
        self.synthetic(
            "gpu_condition",
            self.name,
            (condition, g),
            gpu=f"00000000:{_BUS[g % 8].upper()}:00.0",
            condition=condition,
            detail=detail,
        )

    def sel(self, alertname: str, line: str) -> None:
        """A BMC's SEL entry as Alertmanager forwards it (IPMI exporter's alert)."""
        self.synthetic(
            "alertmanager",
            self.name,
            alertname,
            labels={"alertname": alertname, "instance": self.name},
            annotations={"summary": f"{alertname} on {self.name}", "description": line},
        )

    def stall(self, stopped_first: bool = False) -> None:
        """The heartbeat watchdog: the job stopped; optionally the culprit's ranks first."""
        ranks = self.hosts * self.gpus_per_host
        self.synthetic(
            "heartbeat_stall",
            "-",
            "job",
            rank=None,
            seconds=45.0,
            text=f"{ranks} of {ranks} ranks of job {JOB} made no progress past step 48211 "
            "for over 30 s",
        )
        if stopped_first:
            self.synthetic(
                "heartbeat_stall",
                self.name,
                "first",
                rank=self.rank(self.culprit),
                seconds=75.0,
                stopped_first={
                    "step": 48210,
                    "at": (AT - timedelta(seconds=75)).isoformat(),
                    "rest_step": 48211,
                    "rest_at": (AT - timedelta(seconds=30)).isoformat(),
                },
            )

    def silent(self) -> None:
        self.synthetic("host_silent", self.name, "silent", seconds=75.0)

    def peers_time_out(self, skip_rack: bool = False) -> None:
        """The symptom flood: every other host's first rank times out in the collective."""
        t = _TEMPLATES[Category.NCCL_WATCHDOG_TIMEOUT]
        first = self.culprit - self.culprit % RACK
        for h in range(self.hosts):
            if h == self.culprit or (skip_rack and first <= h < first + RACK):
                continue
            self.log(h, t.lines[0].format(rank=self.rank(h)), at_s=600.0, source="application")


Build = Callable[[Scene], None]


@dataclass(frozen=True)
class Variant:
    """One way a category's fault shows; `share` of that category's faults show this way."""

    name: str
    share: float
    build: Build
    culprit: bool = True  # the fault lives in the drawn host (its verdict should name it)


def _dies(build: Build, *, first: bool = False) -> Build:
    """A host fault that kills the job: its own evidence, then the stall and the peers."""

    def go(s: Scene) -> None:
        build(s)
        s.stall(stopped_first=first)
        s.peers_time_out()

    return go


def _template(category: Category) -> Build:
    return lambda s: s.template(category)


def _traceback(exception: str) -> Build:
    def go(s: Scene) -> None:
        r = s.rank(s.culprit, 3)
        lines = [
            "Traceback (most recent call last):",
            '  File "/workspace/llama/train.py", line 412, in <module>',
            "    main()",
            '  File "/workspace/llama/train.py", line 201, in train_step',
            "    loss.backward()",
            *exception.splitlines(),
        ]
        s.log(s.culprit, "\n".join(f"[rank{r}]: {x}" for x in lines), source="application")
        s.stall()
        s.peers_time_out()

    return go


def _xid79(s: Scene) -> None:
    s.template(Category.FAULTY_GPU)
    s.xid(79, "GPU has fallen off the bus.")


def _hbm_remap_failure(s: Scene) -> None:
    s.xid(64, "Row Remapper Error: failed to remap row (0x00000000000c3fa8).")
    s.condition("row_remap_failure", "row remapping failed")


def _ib_link_flaps(s: Scene) -> None:
    first = s.culprit - s.culprit % RACK
    for h in range(first, min(first + RACK, s.hosts)):
        s.log(h, "mlx5_core 0000:0c:00.0 mlx5_3: Port: 1 Link DOWN")
        s.log(h, "mlx5_core 0000:0c:00.0 mlx5_3: Port: 1 Link ACTIVE", at_s=3.5)
    s.stall()


def _ib_port_flapped(s: Scene) -> None:
    """The agent's sysfs poll: the port's link_downed rose while it stayed ACTIVE (a flap)."""
    s.log(
        s.culprit,
        "/sys/class/infiniband/mlx5_3/ports/1: link flapped: state 4: ACTIVE, "
        "phys_state 5: LinkUp, link_downed 3 -> 4",
        source="infiniband",
    )


def _lustre(s: Scene) -> None:
    for h in range(0, s.hosts, 2):
        s.log(
            h,
            "LustreError: 11-0: scratch-OST0001-osc-ffff8803bd1d9800: operation ost_write to "
            "node 10.0.0.1@o2ib failed: rc = -107",
        )
    s.stall()


def _thermal(s: Scene) -> None:
    s.condition("thermal_slowdown", "clock event reasons 0x48, 91.0 C")


def _psu(s: Scene) -> None:
    for g in range(s.gpus_per_host):
        s.condition("power_brake", "clock event reasons 0x88", gpu=g)
    s.sel(
        "IPMIPowerSupplyFailure",
        "   1 | 01/05/2026 | 11:59:58 | Power Supply #0x50 | Failure detected () | Asserted",
    )


def _fan(s: Scene) -> None:
    for g in range(s.gpus_per_host):
        s.condition("thermal_slowdown", "clock event reasons 0x48, 93.0 C", gpu=g)
    s.sel(
        "IPMIFanCritical",
        "  12 | 01/05/2026 | 11:59:58 | Fan FAN3 | Lower Critical going low | Asserted",
    )


def _all_time_out(s: Scene) -> None:
    s.template(Category.NCCL_WATCHDOG_TIMEOUT)
    s.stall()


def _row_pending_remap(s: Scene) -> None:
    s.xid(
        63, "Row Remapper: New row (0x00000000c3fa8) Marked for Remapping, reset gpu to activate."
    )
    s.ecc("remap_pending", 0, 1)


def _soft_lockup(s: Scene) -> None:
    s.log(s.culprit, "watchdog: BUG: soft lockup - CPU#12 stuck for 22s! [python:12345]")
    s.silent()


def _host_gone(s: Scene) -> None:
    s.silent()


def _hardware(*shown: tuple[str, Build]) -> tuple[Variant, ...]:
    """A host-hardware category: its evident variants share 90%; in 7% only the culprit's ranks
    stopping first point at it; in 3% nothing does (assumption, see the simulation)."""
    each = 0.9 / len(shown)
    return (
        *(Variant(name, each, _dies(build)) for name, build in shown),
        Variant("hang: its ranks stopped first", 0.07, _dies(lambda s: None, first=True)),
        Variant("hang: nothing points at it", 0.03, _dies(lambda s: None)),
    )


VARIANTS: Final[dict[Category, tuple[Variant, ...]]] = {
    Category.FAULTY_GPU: _hardware(
        ("XID 79 (log and NVML)", _xid79),
        ("GPU lost in NVML samples", lambda s: s.condition("fallen_off_bus", "NVML: GPU is lost")),
    ),
    Category.GPU_HBM_MEMORY: _hardware(
        ("XID 48 + 63 lines", _template(Category.GPU_HBM_MEMORY)),
        ("XID 64, remap failure", _hbm_remap_failure),
        ("uncorrectable ECC counter", lambda s: s.ecc("ecc_volatile_uncorrected", 0, 2)),
    ),
    Category.SOFTWARE_BUG: (
        Variant(
            "same traceback on every rank",
            0.4,
            _dies(_template(Category.SOFTWARE_BUG)),
            culprit=False,
        ),
        Variant(
            "CUDA illegal address on one rank",
            0.3,
            _traceback(
                "RuntimeError: CUDA error: an illegal memory access was encountered\n"
                "CUDA kernel errors might be asynchronously reported at some other API call"
            ),
            culprit=False,
        ),
        Variant(
            "CUDA out of memory on one rank",
            0.3,
            _traceback(
                "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 3 "
                "has a total capacity of 79.10 GiB of which 1.05 GiB is free."
            ),
            culprit=False,
        ),
    ),
    Category.NETWORK_SWITCH_CABLE: (
        Variant(
            "NCCL IB completion errors on a rack",
            0.6,
            _dies(_template(Category.NETWORK_SWITCH_CABLE)),
            culprit=False,
        ),
        Variant("IB links flap on a rack", 0.4, _ib_link_flaps, culprit=False),
    ),
    Category.HOST_MAINTENANCE: (
        Variant("host goes silent", 0.6, _dies(_host_gone)),
        Variant("soft lockup, then silent", 0.4, _dies(_soft_lockup)),
    ),
    Category.GPU_SRAM_MEMORY: _hardware(
        ("XID 95 uncontained", _template(Category.GPU_SRAM_MEMORY)),
        ("XID 94 contained", lambda s: s.xid(94, "Contained ECC error.")),
    ),
    Category.GPU_SYSTEM_PROCESSOR: _hardware(
        ("XID 119 GSP timeout", _template(Category.GPU_SYSTEM_PROCESSOR)),
    ),
    Category.NIC: _hardware(
        ("mlx5 cable unplugged, link down", _template(Category.NIC)),
        ("IB port flapped, ACTIVE again (agent's sysfs poll)", _ib_port_flapped),
    ),
    Category.NCCL_WATCHDOG_TIMEOUT: (
        Variant("every rank times out, no cause", 1.0, _all_time_out, culprit=False),
    ),
    Category.SILENT_DATA_CORRUPTION: (
        Variant(
            "NaN loss on every rank",
            1.0,
            _template(Category.SILENT_DATA_CORRUPTION),
            culprit=False,
        ),
    ),
    Category.GPU_THERMAL: _hardware(("thermal slowdown in samples", _thermal)),
    Category.SSD: _hardware(("NVMe timeouts, I/O error", _template(Category.SSD))),
    Category.POWER_SUPPLY: _hardware(("power brake on 8 GPUs + PSU SEL", _psu)),
    Category.SERVER_CHASSIS: _hardware(("8 GPUs hot + fan SEL", _fan)),
    Category.IO_EXPANSION_BOARD: _hardware(
        ("PCIe switch fatal AER", _template(Category.IO_EXPANSION_BOARD))
    ),
    Category.DEPENDENCY: (Variant("Lustre lost on many hosts", 1.0, _lustre, culprit=False),),
    Category.CPU: _hardware(("machine check, kernel panic", _template(Category.CPU))),
    Category.SYSTEM_MEMORY: _hardware(("EDAC UE", _template(Category.SYSTEM_MEMORY))),
}

# What a host shows before it fails, while the job still trains (no stall, no peers).
PRECURSORS: Final[dict[Category, Build]] = {
    Category.GPU_HBM_MEMORY: _row_pending_remap,
    Category.FAULTY_GPU: lambda s: s.xid(
        154, "GPU recovery action changed from 0x0 (None) to 0x1 (GPU Reset Required)"
    ),
    Category.GPU_THERMAL: _thermal,
    Category.POWER_SUPPLY: lambda s: s.sel(
        "IPMIPowerSupplyRedundancyLost",
        "   2 | 01/05/2026 | 11:59:58 | Power Supply #0x51 | Redundancy Lost | Asserted",
    ),
    Category.SERVER_CHASSIS: lambda s: s.sel(
        "IPMIFanCritical",
        "  12 | 01/05/2026 | 11:59:58 | Fan FAN3 | Lower Critical going low | Asserted",
    ),
    Category.NIC: lambda s: s.log(
        s.culprit,
        "/sys/class/infiniband/mlx5_3/ports/1/counters/symbol_error: 1200 -> 1460 in 60 s, "
        "above 10 per minute",
        source="infiniband",
    ),
}


@dataclass(frozen=True)
class Weighed:
    """The real triage's answer for one drawn fault, relative to the truth."""

    category: Category  # the verdict's
    culprit: str | None  # "culprit" (the faulty host), "other" (a healthy host) or None
    gpu: str | None
    confidence: float
    rule: str
    xids: tuple[int, ...]
    # Every cause is an InfiniBand link that flapped and is ACTIVE again, read as the
    # remediation service reads it (RemediationContext.link_flapped).
    link_flapped: bool = False

    def names_culprit(self) -> bool:
        return self.culprit == "culprit"


def _relative(verdict: Verdict, culprit: str) -> str | None:
    if verdict.culprit_host is None:
        return None
    return "culprit" if verdict.culprit_host == culprit else "other"


def triage(events: Sequence[Event], hosts: int, culprit: str) -> Weighed:
    signals = [s for ev in events for s in event_signals(ev)]
    verdict = classify_signals(
        signals, job_hosts=hosts, hosts_seen=[host_name(h) for h in range(hosts)]
    )
    return Weighed(
        verdict.category,
        _relative(verdict, culprit),
        verdict.culprit_gpu,
        verdict.confidence,
        verdict.rule,
        tuple(sorted({s.xid for s in signals if s.xid is not None})),
        link_flapped(verdict),
    )


def weigh(variant: Variant, hosts: int, culprit: int, gpu: int) -> Weighed:
    """Draw one fault of this variant on this host and GPU, and run the real triage on it."""
    scene = Scene(hosts, culprit, gpu)
    variant.build(scene)
    return triage(scene.events, hosts, scene.name)


def weigh_precursor(category: Category, hosts: int, culprit: int, gpu: int) -> Weighed | None:
    build = PRECURSORS.get(category)
    if build is None:
        return None
    scene = Scene(hosts, culprit, gpu)
    build(scene)
    return triage(scene.events, hosts, scene.name)
