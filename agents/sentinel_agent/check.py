"""``sentinel-agent check``: this node's health in one pass, for Slurm to ask before a job.

Slurm runs it as ``HealthCheckProgram`` (every ``HealthCheckInterval``; with ``--drain`` the
check drains the node itself, as NHC does) or as ``Prolog`` (a non-zero exit is enough: Slurm
drains the node and requeues the job). It needs no network and no service: it reads NVML and
the kernel log and decides here, from the rules below, in well under two seconds.

Each rule is a small named class; a failure names the GPU and what is wrong, and the drain
reason is ``sentinel: <failures>``, which the service recognises as its own (not evidence).
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Final, Protocol, TypeVar

import pynvml

from sentinel.knowledge import XidCatalog, load_xid_catalog
from sentinel.knowledge.lines import parse_line
from sentinel.wire.severity import Severity
from sentinel_agent.clock import Clock, SystemClock
from sentinel_agent.config import CollectorsConfig
from sentinel_agent.oneshot import load_section
from sentinel_agent.providers.base import GpuProvider, RemappedRows

OWN_REASON: Final = "sentinel:"
# Slurm keeps a reason of any length, but sinfo and the dashboards show a line.
MAX_REASON: Final = 200
# What the kernel-log rule reads of a plain log file: its end, where "recent" is.
FILE_TAIL_BYTES: Final = 4 * 1024 * 1024
# The driver's XID report: "NVRM: Xid (PCI:0000:9b:00): 79, pid=..., GPU has fallen off ...".
_XID_LINE: Final = re.compile(r"NVRM: Xid \((?P<where>[^)]*)\): (?P<xid>\d+)")

T = TypeVar("T")


@dataclass(frozen=True)
class Failure:
    """One thing wrong, said the way an operator reads it in ``sinfo -R``."""

    rule: str
    what: str


@dataclass(frozen=True)
class GpuReading:
    """What the GPU rules look at, read once per GPU. None: this GPU cannot report it."""

    index: int
    pci_bus_id: str | None
    lost: bool = False
    rows: RemappedRows | None = None
    retired_pages_pending: bool | None = None
    ecc_volatile_uncorrected: int | None = None

    @property
    def name(self) -> str:
        return f"GPU {self.index}" + (f" ({self.pci_bus_id})" if self.pci_bus_id else "")


# --- the rules ---------------------------------------------------------------------------


class GpuRule(Protocol):
    name: str

    def failure(self, gpu: GpuReading) -> str | None: ...


class GpuResponds:
    """NVML can read the GPU: a lost GPU (fallen off the bus) cannot run a job."""

    name = "gpu_responds"

    def failure(self, gpu: GpuReading) -> str | None:
        return f"{gpu.name} lost (NVML cannot read it)" if gpu.lost else None


class RowRemapHealthy:
    """No failed row remap (no spare rows left) and none pending (needs a GPU reset)."""

    name = "row_remap"

    def failure(self, gpu: GpuReading) -> str | None:
        if gpu.rows is None:
            return None
        if gpu.rows.failure:
            return f"{gpu.name} row remapping failed"
        if gpu.rows.pending:
            return f"{gpu.name} row remap pending a GPU reset"
        return None


class NoPendingRetiredPages:
    """Pre-Ampere ECC: pages retired but still mapped until the GPU is reset."""

    name = "retired_pages"

    def failure(self, gpu: GpuReading) -> str | None:
        return f"{gpu.name} retired pages pending a reset" if gpu.retired_pages_pending else None


class NoUncorrectableEcc:
    """An uncorrectable (double-bit) ECC error since the driver loaded: the memory lies."""

    name = "ecc_dbe"

    def failure(self, gpu: GpuReading) -> str | None:
        count = gpu.ecc_volatile_uncorrected
        return f"{gpu.name} {count} uncorrectable ECC error(s)" if count else None


GPU_RULES: Final[tuple[GpuRule, ...]] = (
    GpuResponds(),
    RowRemapHealthy(),
    NoPendingRetiredPages(),
    NoUncorrectableEcc(),
)


@dataclass(frozen=True)
class ExpectedGpuCount:
    """The node has the GPUs it should (``--gpus``): a GPU NVML no longer lists is gone."""

    expected: int | None
    name: str = "gpu_count"

    def failure(self, seen: int) -> str | None:
        if self.expected is None or seen >= self.expected:
            return None
        return f"{seen} of {self.expected} GPUs visible"


@dataclass(frozen=True)
class NoFatalXidInKernelLog:
    """No XID the knowledge rates critical (GPU must be reset or replaced) in the kernel log
    within ``window``: /dev/kmsg records carry their time since boot, file lines their stamp
    (a line without one is not counted: its age is unknown)."""

    path: Path
    window: timedelta
    catalog: XidCatalog
    name: str = "kernel_xid"

    def failures(self, now: datetime, uptime_s: float) -> list[str]:
        seen: dict[tuple[int, str], None] = {}
        for at, text in _kernel_lines(self.path, now, uptime_s):
            if now - at > self.window:
                continue
            for found in _XID_LINE.finditer(text):
                xid = int(found.group("xid"))
                entry = self.catalog.get(xid)
                if entry is not None and entry.severity == Severity.CRITICAL:
                    seen[(xid, found.group("where"))] = None
        return [
            f"XID {xid} ({self.catalog.by_code[xid].mnemonic.lower()}) on {where}"
            for xid, where in seen
        ]


@dataclass(frozen=True)
class NoUncorrectableHostMemoryError:
    """No uncorrectable error counted by a memory controller since boot (EDAC's ``ue_count``):
    the host's memory corrupted data a job may have used."""

    root: Path
    name: str = "host_memory_ue"

    def failures(self) -> list[str]:
        if not self.root.is_dir():
            raise FileNotFoundError(2, "No such file or directory", str(self.root))
        out = []
        for controller in sorted(self.root.glob("mc[0-9]*")):
            try:
                count = int((controller / "ue_count").read_text().strip())
            except (OSError, ValueError):
                continue
            if count:
                out.append(f"host memory {controller.name}: {count} uncorrectable error(s)")
        return out


def _kernel_lines(path: Path, now: datetime, uptime_s: float) -> list[tuple[datetime, str]]:
    if str(path) == "/dev/kmsg" or path.is_char_device():
        return _kmsg_lines(path, now, uptime_s)
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        f.seek(max(0, f.tell() - FILE_TAIL_BYTES))
        text = f.read().decode(errors="replace")
    out = []
    for raw in text.splitlines():
        line = parse_line(raw)
        if line.time is not None:
            out.append((line.time, raw))
    return out


def _kmsg_lines(path: Path, now: datetime, uptime_s: float) -> list[tuple[datetime, str]]:
    """Every record in the ring buffer (``prio,seq,usec,flags;message``), timed by the
    microseconds since boot it carries. Non-blocking: the read stops at the newest record."""
    booted = now - timedelta(seconds=uptime_s)
    out = []
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        while True:
            try:
                record = os.read(fd, 16 * 1024)
            except BlockingIOError:
                break
            except BrokenPipeError:  # the ring buffer overwrote a record being read
                continue
            if not record:
                break
            if (parsed := parse_kmsg_record(record.decode(errors="replace"), booted)) is not None:
                out.append(parsed)
    finally:
        os.close(fd)
    return out


def parse_kmsg_record(record: str, booted: datetime) -> tuple[datetime, str] | None:
    """``6,1234,5678901,-;NVRM: Xid ...``: the message, at boot time + its microseconds."""
    head, semicolon, body = record.partition(";")
    fields = head.split(",")
    if not semicolon or len(fields) < 3 or not fields[2].isdigit():
        return None
    return booted + timedelta(microseconds=int(fields[2])), body.strip()


def _uptime_s() -> float:
    return float(Path("/proc/uptime").read_text().split()[0])


# --- reading the GPUs --------------------------------------------------------------------


def _optional(fn: Callable[[], T]) -> T | None:
    """A field this GPU cannot report (NotSupported, or any other error) is not a failure;
    a lost GPU is, and is raised for the caller."""
    try:
        return fn()
    except pynvml.NVMLError_GpuIsLost:
        raise
    except pynvml.NVMLError:
        return None


def _read_gpu(provider: GpuProvider, index: int) -> GpuReading:
    handle = provider.handle(index)
    return GpuReading(
        index=index,
        pci_bus_id=_optional(lambda: provider.pci_bus_id(handle)),
        rows=_optional(lambda: provider.remapped_rows(handle)),
        retired_pages_pending=_optional(lambda: provider.retired_pages_pending(handle)),
        ecc_volatile_uncorrected=_optional(
            lambda: provider.ecc_errors(handle, uncorrected=True, aggregate=False)
        ),
    )


def read_gpus(provider: GpuProvider) -> list[GpuReading]:
    """Every GPU NVML lists; one it cannot give a handle for, or that is lost, is lost."""
    out = []
    for index in range(provider.device_count()):
        try:
            out.append(_read_gpu(provider, index))
        except pynvml.NVMLError:
            out.append(GpuReading(index=index, pci_bus_id=None, lost=True))
    return out


# --- one pass ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckResult:
    failures: tuple[Failure, ...]
    ran: tuple[str, ...]
    # Rules that could not look (no kernel log to read): said, never a failure on their own.
    skipped: tuple[str, ...] = ()

    @property
    def healthy(self) -> bool:
        return not self.failures

    @property
    def reason(self) -> str:
        """``sentinel: GPU 5 (00000000:AB:00.0) row remapping failed; +1 more``."""
        text = OWN_REASON + " " + "; ".join(f.what for f in self.failures[:2])
        if len(self.failures) > 2:
            text += f"; +{len(self.failures) - 2} more"
        # ASCII: the reason goes through scontrol's command line and Slurm's state files.
        return text if len(text) <= MAX_REASON else text[: MAX_REASON - 3] + "..."


@dataclass
class HealthCheck:
    provider: GpuProvider | None
    xid_rule: NoFatalXidInKernelLog | None
    memory_rule: NoUncorrectableHostMemoryError | None = None
    gpu_count: ExpectedGpuCount = field(default_factory=lambda: ExpectedGpuCount(None))
    gpu_rules: Sequence[GpuRule] = GPU_RULES
    clock: Clock = field(default_factory=SystemClock)
    uptime_s: Callable[[], float] = _uptime_s

    def run(self) -> CheckResult:
        failures: list[Failure] = []
        ran: list[str] = []
        skipped: list[str] = []
        if self.provider is not None:
            failures.extend(self._gpus(self.provider))
            ran.extend([self.gpu_count.name, *(r.name for r in self.gpu_rules)])
        if self.xid_rule is not None:
            try:
                found = self.xid_rule.failures(self.clock.now(), self.uptime_s())
            except OSError as exc:
                skipped.append(f"{self.xid_rule.name}: {self.xid_rule.path}: {exc.strerror}")
            else:
                ran.append(self.xid_rule.name)
                failures.extend(Failure(self.xid_rule.name, what) for what in found)
        if self.memory_rule is not None:
            try:
                found = self.memory_rule.failures()
            except OSError as exc:
                skipped.append(f"{self.memory_rule.name}: {self.memory_rule.root}: {exc.strerror}")
            else:
                ran.append(self.memory_rule.name)
                failures.extend(Failure(self.memory_rule.name, what) for what in found)
        return CheckResult(tuple(failures), tuple(ran), tuple(skipped))

    def _gpus(self, provider: GpuProvider) -> list[Failure]:
        try:
            provider.init()
        except pynvml.NVMLError as exc:
            return [Failure("nvml", f"NVML cannot start: {exc}")]
        try:
            gpus = read_gpus(provider)
        finally:
            with contextlib.suppress(pynvml.NVMLError):
                provider.shutdown()
        out = []
        if (missing := self.gpu_count.failure(len(gpus))) is not None:
            out.append(Failure(self.gpu_count.name, missing))
        for gpu in gpus:
            for rule in self.gpu_rules:
                if (what := rule.failure(gpu)) is not None:
                    out.append(Failure(rule.name, what))
                    if gpu.lost:
                        break  # nothing else can be read of a lost GPU
        return out


# --- configuration -----------------------------------------------------------------------


def load_collectors(
    path: Path | None, environ: Mapping[str, str] | None = None
) -> CollectorsConfig:
    """The agent's ``collectors`` section, validated."""
    return CollectorsConfig.model_validate(load_section(path, "collectors", environ))


def make_check_provider(collectors: CollectorsConfig, clock: Clock) -> GpuProvider | None:
    nvml = collectors.nvml
    if not nvml.enabled:
        return None
    if nvml.provider == "fake":
        from sentinel_agent.providers.fake import FakeProvider, Scenario

        assert nvml.scenario is not None
        provider = FakeProvider(Scenario.load(nvml.scenario), clock, seed=node_name())
        provider.play_to_end()
        return provider
    from sentinel_agent.providers.nvml import NvmlProvider

    return NvmlProvider()


def build_check(
    collectors: CollectorsConfig,
    *,
    expected_gpus: int | None,
    xid_window: timedelta,
    clock: Clock | None = None,
) -> HealthCheck:
    clock = clock or SystemClock()
    kernel = collectors.kernel_log
    xid_rule = (
        NoFatalXidInKernelLog(kernel.path, xid_window, load_xid_catalog())
        if kernel.enabled
        else None
    )
    edac = collectors.edac
    return HealthCheck(
        provider=make_check_provider(collectors, clock),
        xid_rule=xid_rule,
        memory_rule=NoUncorrectableHostMemoryError(edac.root) if edac.enabled else None,
        gpu_count=ExpectedGpuCount(expected_gpus),
        clock=clock,
    )


# --- draining the node -------------------------------------------------------------------


def node_name(environ: Mapping[str, str] | None = None) -> str:
    """The Slurm node this runs for: slurmd's SLURMD_NODENAME (several slurmd on one host
    each name theirs), else the short host name."""
    env = os.environ if environ is None else environ
    return env.get("SLURMD_NODENAME") or socket.gethostname().split(".")[0]


@dataclass(frozen=True)
class NodeState:
    state: str
    reason: str


_FIELD: Final = re.compile(r"(?:^|\s)(State|Reason)=")


def parse_show_node(text: str) -> NodeState:
    """``scontrol show node -o NAME``: one line of Key=Value; Reason runs to the end of the
    line, with its ``[user@time]`` suffix."""
    found = {m.group(1): m.end() for m in _FIELD.finditer(text)}
    state = text[found["State"] :].split()[0] if "State" in found else ""
    reason = ""
    if "Reason" in found:
        reason = re.sub(r"\s*\[[^\]]*@[^\]]*\]\s*$", "", text[found["Reason"] :].strip())
    return NodeState(state, reason)


@dataclass(frozen=True)
class DrainOutcome:
    drained: bool
    detail: str


def drain(
    node: str, reason: str, *, run: Callable[[list[str]], subprocess.CompletedProcess[str]]
) -> DrainOutcome:
    """Drain ``node`` with ``reason`` unless someone else already drained it (their reason is
    the one that matters to them; ours would overwrite it)."""
    shown = run(["scontrol", "show", "node", "-o", node])
    if shown.returncode == 0:
        current = parse_show_node(shown.stdout)
        theirs = current.reason and not current.reason.startswith(OWN_REASON)
        if "DRAIN" in current.state.upper() and theirs:
            return DrainOutcome(False, f"already drained by another reason: {current.reason}")
    argv = ["scontrol", "update", f"NodeName={node}", "State=DRAIN", f"Reason={reason}"]
    done = run(argv)
    if done.returncode != 0:
        return DrainOutcome(False, f"scontrol failed ({done.returncode}): {done.stderr.strip()}")
    return DrainOutcome(True, f"drained {node}")


def run_command(argv: list[str], timeout_s: float = 10.0) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return subprocess.CompletedProcess(argv, 127, "", str(exc))
