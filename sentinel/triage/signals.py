"""Signals: the facts triage reasons over, from pasted logs or from live agent observations."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Final, Literal

from sentinel.knowledge import Knowledge, PatternSpec, default_knowledge
from sentinel.knowledge.dcgm import default_dcgm_catalog, readable
from sentinel.knowledge.lines import Line
from sentinel.knowledge.machine_check import MCELOG_PATTERNS, McelogRecord
from sentinel.knowledge.nvswitch import default_sxid_catalog
from sentinel.knowledge.taxonomy import Category
from sentinel.triage.records import Record, elastic_fields, split_records
from sentinel.wire.identity import normalize_pci, pci_addresses
from sentinel.wire.severity import Severity

Role = Literal["cause", "symptom", "context"]

# The kind of an announcement that only the job's processes restart (an operator's planned
# restart in place): it explains what stopping processes causes, never a fault of its hosts.
PLANNED_RESTART: Final = "planned_restart"

_EXCEPTION_LINE: Final = re.compile(r"^\s*(?P<type>[A-Za-z_][\w.]*)(?::\s*(?P<message>.*))?$")
_FRAME_LINE: Final = re.compile(r'File "(?P<path>[^"]+)", line (?P<line>\d+), in (?P<func>\S+)')
# Exceptions that report a stop request, not a fault.
_NOT_A_FAULT: Final = frozenset(
    {"KeyboardInterrupt", "SystemExit", "SignalException", "GeneratorExit"}
)
_VOLATILE: Final = re.compile(r"0x[0-9a-fA-F]+|\d+")
# How many lines after an NVRM line naming a GPU a multi-line driver report may continue.
_GPU_CONTEXT_LINES: Final = 4
_GPU_INDEX: Final = re.compile(r"\bGPU (?P<gpu>\d+)\b")
_NVSWITCH_INDEX: Final = re.compile(r"\bNvSwitch (?:physical ID )?(?P<switch>\d+)", re.IGNORECASE)
# Tools that print one section per part, the part named once in its header: `nvidia-smi -q`
# ("GPU 00000000:BA:00.0", then the GPU's fields) and `ibstat` ("CA 'mlx5_5'", "Port 1:").
_SMI_GPU_SECTION: Final = re.compile(
    r"^GPU (?P<pci>[0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-7])\s*$"
)
_IBSTAT_CA: Final = re.compile(r"^CA '(?P<ca>[\w.-]+)'\s*$")
_IBSTAT_PORT: Final = re.compile(r"^\s*Port (?P<port>\d+):\s*$")
# What `nvidia-smi -q` says of one GPU's own state; a section's power brake is the board's.
_GPU_CATEGORIES: Final = frozenset(
    {Category.FAULTY_GPU, Category.GPU_HBM_MEMORY, Category.GPU_SRAM_MEMORY, Category.GPU_THERMAL}
)


@dataclass(frozen=True, kw_only=True)
class Signal:
    """One observed fact: a matched log line, an XID event, a GPU sample, a silent host..."""

    kind: str
    family: str
    text: str
    pattern: str | None = None
    category_hint: Category | None = None
    role: Role = "context"
    severity: Severity = Severity.WARNING
    host: str | None = None
    gpu: str | None = None
    rank: int | None = None
    xid: int | None = None
    time: datetime | None = None
    event_id: str | None = None
    attrs: Mapping[str, str] = field(default_factory=dict, hash=False, compare=False)

    @property
    def severity_rank(self) -> int:
        return Severity(self.severity).rank

    @property
    def signature(self) -> str:
        """What makes two signals 'the same message' across ranks and hosts."""
        return self.attrs.get("signature") or _VOLATILE.sub(
            "N", self.attrs.get("message", self.text)
        )


def blank_numbers(text: str) -> str:
    """The same message with its numbers (ranks, addresses, counts) blanked out."""
    return _VOLATILE.sub("N", text)


# ---------------------------------------------------------------- live observations


def xid_signal(
    xid: int,
    *,
    host: str | None = None,
    gpu: str | None = None,
    time: datetime | None = None,
    event_id: str | None = None,
    text: str | None = None,
    knowledge: Knowledge | None = None,
) -> Signal:
    """A signal for an XID the agent saw on a host's GPU (gpu: PCI bus id or index)."""
    entry = (knowledge or default_knowledge()).xids.get(xid)
    attrs: dict[str, str] = {"xid": str(xid)}
    if entry is None:
        return Signal(
            kind="xid",
            family="kernel_xid",
            text=text or f"Xid {xid} (not in catalog)",
            category_hint=Category.FAULTY_GPU,
            role="cause",
            severity=Severity.WARNING,
            host=host,
            gpu=_gpu(gpu),
            xid=xid,
            time=time,
            event_id=event_id,
            attrs=attrs | {"unknown_xid": "true"},
        )
    attrs |= {
        "mnemonic": entry.mnemonic,
        "meaning": entry.meaning,
        "action": entry.action,
        "cause": entry.cause,
        "memory": entry.memory,
    }
    if entry.secondary:
        attrs["secondary"] = "true"
    return Signal(
        kind="xid",
        family="kernel_xid",
        text=text or f"Xid {xid}: {entry.meaning}",
        category_hint=entry.category,
        role="cause",
        severity=entry.severity,
        host=host,
        gpu=_gpu(gpu),
        xid=xid,
        time=time,
        event_id=event_id,
        attrs=attrs,
    )


GpuCondition = Literal[
    "fallen_off_bus",
    "row_remap_failure",
    "row_remap_pending",
    "uncorrectable_ecc",
    "sram_uncorrectable_ecc",
    "thermal_slowdown",
    "power_brake",
]

# What a GPU sample's condition means; the agent reports the condition, triage decides.
_GPU_CONDITIONS: Final[Mapping[str, tuple[Category, Severity]]] = {
    "fallen_off_bus": (Category.FAULTY_GPU, Severity.CRITICAL),
    "row_remap_failure": (Category.GPU_HBM_MEMORY, Severity.CRITICAL),
    "row_remap_pending": (Category.GPU_HBM_MEMORY, Severity.WARNING),
    "uncorrectable_ecc": (Category.GPU_HBM_MEMORY, Severity.ERROR),
    "sram_uncorrectable_ecc": (Category.GPU_SRAM_MEMORY, Severity.ERROR),
    "thermal_slowdown": (Category.GPU_THERMAL, Severity.ERROR),
    "power_brake": (Category.POWER_SUPPLY, Severity.ERROR),
}


def gpu_sample_signal(
    condition: GpuCondition,
    *,
    host: str,
    gpu: str,
    time: datetime | None = None,
    event_id: str | None = None,
    detail: str = "",
) -> Signal:
    """A signal for a bad condition in a GPU telemetry sample (remap failure, DBE, thermal...)."""
    category, severity = _GPU_CONDITIONS[condition]
    text = f"GPU {gpu} on {host}: {condition.replace('_', ' ')}" + (
        f" ({detail})" if detail else ""
    )
    return Signal(
        kind="gpu_sample",
        family="gpu_sample",
        text=text,
        pattern=condition,
        category_hint=category,
        role="cause",
        severity=severity,
        host=host,
        gpu=_gpu(gpu),
        time=time,
        event_id=event_id,
    )


def heartbeat_stall_signal(
    *,
    host: str | None,
    rank: int | None,
    seconds: float,
    gpu: str | None = None,
    time: datetime | None = None,
    event_id: str | None = None,
    stopped_first: Mapping[str, object] | None = None,
    summary: str | None = None,
) -> Signal:
    """A rank that stopped reporting progress while its host is still alive, on its GPU (from
    the job's rank map) where known.

    `stopped_first` (the watchdog's `step`, `at`, `rest_step`, `rest_at`) says that this host's
    ranks stopped clearly before the rest of the job: where the hang began, with the evidence.
    """
    # A job-wide stall (no host, no rank) reads as the watchdog summarised it.
    text = (
        summary
        if summary and host is None and rank is None
        else f"rank {rank} on {host} made no progress for {seconds:.0f} s"
    )
    attrs: dict[str, str] = {}
    early = _early_stop(stopped_first) if host else None
    if early is not None:
        step, at, rest_step, rest_at = early
        lead = (rest_at - at).total_seconds()
        text = (
            f"ranks on {host} stopped first: rank {rank} at step {step} at {at:%H:%M:%S}, "
            f"{lead:.0f} s before the rest of the job (step {rest_step} at {rest_at:%H:%M:%S})"
        )
        attrs = {
            "stopped_first": "true",
            "step": str(step),
            "stopped_at": at.isoformat(),
            "rest_step": str(rest_step),
            "rest_stopped_at": rest_at.isoformat(),
            "lead_s": f"{lead:.1f}",
        }
    return Signal(
        kind="heartbeat_stall",
        family="heartbeat",
        text=text,
        category_hint=Category.NCCL_WATCHDOG_TIMEOUT,
        role="symptom",
        severity=Severity.ERROR,
        host=host,
        gpu=_gpu(gpu),
        rank=rank,
        time=time,
        event_id=event_id,
        attrs=attrs,
    )


def _early_stop(
    payload: Mapping[str, object] | None,
) -> tuple[int, datetime, int, datetime] | None:
    """(step, stopped at, the rest's step, the rest's last progress) from a watchdog payload."""
    if not payload:
        return None
    try:
        step, rest_step = int(str(payload["step"])), int(str(payload["rest_step"]))
        at = datetime.fromisoformat(str(payload["at"]))
        rest_at = datetime.fromisoformat(str(payload["rest_at"]))
    except (KeyError, ValueError):
        return None
    return (step, at, rest_step, rest_at) if rest_at > at else None


def straggler_signal(
    *,
    host: str,
    rank: int | None,
    step_time_s: float,
    median_s: float,
    gpu: str | None = None,
    time: datetime | None = None,
    event_id: str | None = None,
) -> Signal:
    """A rank whose steps take far longer than the job's median: every collective waits on it."""
    return Signal(
        kind="straggler",
        family="heartbeat",
        text=f"rank {rank} on {host} straggles: step time {step_time_s:.2f} s vs the job's "
        f"median {median_s:.2f} s",
        category_hint=Category.NCCL_WATCHDOG_TIMEOUT,
        role="symptom",
        severity=Severity.ERROR,
        host=host,
        gpu=_gpu(gpu),
        rank=rank,
        time=time,
        event_id=event_id,
        attrs={"step_time_s": f"{step_time_s:.3f}", "median_s": f"{median_s:.3f}"},
    )


def host_silent_signal(
    *, host: str, seconds: float, time: datetime | None = None, event_id: str | None = None
) -> Signal:
    """A host whose agent stopped sending anything: the host itself is gone or wedged."""
    return Signal(
        kind="host_silent",
        family="heartbeat",
        text=f"host {host} silent for {seconds:.0f} s",
        category_hint=Category.HOST_MAINTENANCE,
        role="cause",
        severity=Severity.CRITICAL,
        host=host,
        time=time,
        event_id=event_id,
    )


def maintenance_signal(
    *,
    text: str,
    host: str | None = None,
    time: datetime | None = None,
    event_id: str | None = None,
    restart: bool = False,
) -> Signal:
    """An announced maintenance window (host None: the whole job or cluster); ``restart``: a
    planned restart of the job's processes only (kind PLANNED_RESTART), not its hosts."""
    return Signal(
        kind=PLANNED_RESTART if restart else "maintenance",
        family="maintenance",
        text=text,
        category_hint=Category.PLANNED,
        role="cause",
        severity=Severity.INFO,
        host=host,
        time=time,
        event_id=event_id,
    )


def scheduler_node_signals(
    *,
    host: str,
    state: str,
    reason: str = "",
    reason_by: str = "",
    reservation: str = "",
    maintenance: bool = False,
    time: datetime | None = None,
    event_id: str | None = None,
) -> list[Signal]:
    """The scheduler's view of a node (Slurm: DOWN, DRAIN with its reason, NOT_RESPONDING, a
    maintenance reservation) as evidence on that host. A maintenance reservation is planned
    work; a reason a pattern knows (NHC's checks, "Not responding") speaks for itself; any other
    drain or down is the host taken out of service by someone: a lead on that host."""
    text = f"Slurm: {host} {state}"
    if reason:
        text += f" Reason={reason}" + (f" [{reason_by}]" if reason_by else "")
    if reservation:
        text += f" Reservation={reservation}"
    if maintenance:
        return [maintenance_signal(text=text, host=host, time=time, event_id=event_id)]
    known = log_signals(text, host=host, time=time, event_id=event_id) if reason else []
    if any(s.role == "cause" for s in known):
        return known
    down = state.startswith("DOWN") or "NOT_RESPONDING" in state
    return [
        Signal(
            kind="scheduler_node",
            family="slurm",
            text=text,
            category_hint=Category.HOST_MAINTENANCE,
            role="cause",
            severity=Severity.ERROR if down else Severity.WARNING,
            host=host,
            time=time,
            event_id=event_id,
        )
    ]


def fr_verdict_signal(
    *,
    text: str,
    rank: int | None,
    host: str | None,
    mismatch: bool,
    gpu: str | None = None,
    time: datetime | None = None,
    event_id: str | None = None,
) -> Signal:
    """The flight recorder's verdict: a collective mismatch (a bug) or the rank that hung,
    on its host's GPU (from the job's rank map) where known."""
    if mismatch:
        return Signal(
            kind="fr_verdict",
            family="flight_recorder",
            text=text,
            category_hint=Category.SOFTWARE_BUG,
            role="cause",
            severity=Severity.ERROR,
            host=host,
            gpu=_gpu(gpu),
            rank=rank,
            time=time,
            event_id=event_id,
        )
    return Signal(
        kind="fr_verdict",
        family="flight_recorder",
        text=text,
        role="context",
        severity=Severity.INFO,
        host=host,
        gpu=_gpu(gpu),
        rank=rank,
        time=time,
        event_id=event_id,
        attrs={"stuck_rank": str(rank)},
    )


def log_signals(
    text: str,
    *,
    host: str | None = None,
    time: datetime | None = None,
    event_id: str | None = None,
    knowledge: Knowledge | None = None,
) -> list[Signal]:
    """Signals from one stored log record of a known host (time and id from the event).

    The record is the host's that sent it: a hostname inside its text (a syslog header, NCCL's
    `host:pid:tid`) is kept as the `line_host` attribute and never makes another host the one
    a signal is about. (A pasted excerpt keeps the hostnames it names: `extract_signals`.)
    """
    signals = extract_signals(text, default_host=host, knowledge=knowledge)
    # The agent's observed_at is when the line was read, in a known zone; a stamp inside the
    # line is the host's clock in the host's zone. Prefer the event's.
    return [
        replace(s, time=time or s.time, event_id=event_id)
        if host is None or s.host == host
        else replace(
            s,
            host=host,
            time=time or s.time,
            event_id=event_id,
            attrs={**s.attrs, "line_host": s.host} if s.host else s.attrs,
        )
        for s in signals
    ]


# ---------------------------------------------------------------- pasted excerpts


def _gpu(value: str | None) -> str | None:
    if value is None:
        return None
    return normalize_pci(value) if ":" in value else value.strip()


def _first_group(groups: Mapping[str, str | None], *names: str) -> str | None:
    return next((groups[n] for n in names if groups.get(n)), None)


def _match_line(
    line: Line, record_host: str | None, knowledge: Knowledge, families_done: set[str]
) -> list[Signal]:
    """Every pattern family's first match on one line."""
    signals = []
    for spec, match in knowledge.patterns.matcher.matches(line.body, skip=families_done):
        families_done.add(spec.family)
        signals.append(_signal_from_match(spec, match, line, record_host, knowledge))
    # "RuntimeError: NCCL error ..." is the NCCL error, not a separate application fault.
    if any(s.family != "python" for s in signals):
        signals = [s for s in signals if s.family != "python"]
    # A DCGM report is read by DCGM's table: the NVLink, ECC or remap words of its message and
    # NVIDIA's advice after it are not separate findings (an XID it names still is).
    if any(s.family == "dcgm" for s in signals):
        signals = [s for s in signals if s.family in {"dcgm", "kernel_xid"}]
    return signals


def _signal_from_match(
    spec: PatternSpec,
    match: re.Match[str],
    line: Line,
    record_host: str | None,
    knowledge: Knowledge,
) -> Signal:
    groups = match.groupdict()
    attrs = {k: v for k, v in groups.items() if v is not None and k not in {"rank", "xid"}}
    rank_text = groups.get("rank")
    rank = int(rank_text) if rank_text else line.rank
    gpu = _gpu(_first_group(groups, "pci", "gpu")) or line.gpu
    host = line.host or record_host
    category = spec.category
    if spec.refine:
        value = groups.get(spec.refine.group)
        refined = spec.refine.category_for(value) if value else None
        category = refined or category
    if spec.kind == "xid":
        xid = int(groups["xid"] or 0)
        base = xid_signal(
            xid, host=host, gpu=gpu, time=line.time, text=line.raw, knowledge=knowledge
        )
        severity = base.severity
        if spec.severity != Severity.ERROR and base.attrs.get("unknown_xid"):
            severity = spec.severity
        return replace(
            base, pattern=spec.name, rank=rank, severity=severity, attrs={**base.attrs, **attrs}
        )
    signal = Signal(
        kind=spec.kind,
        family=spec.family,
        text=line.raw,
        pattern=spec.name,
        category_hint=category,
        role=spec.role,
        severity=spec.severity,
        host=host,
        gpu=gpu,
        rank=rank,
        time=line.time,
        attrs=attrs,
    )
    if spec.family == "dcgm":
        return _dcgm_signal(signal, groups, line.body)
    if spec.family == "nvswitch":
        return _nvswitch_signal(signal, groups)
    return signal


def _dcgm_signal(signal: Signal, groups: Mapping[str, str | None], body: str) -> Signal:
    """What DCGM's table says of the code (else the health system) the line names; a software
    or configuration code is context. The GPU is DCGM's index; an NVSwitch is not a GPU."""
    reading = default_dcgm_catalog().read(
        body, system=groups.get("event"), entity=groups.get("dev"), status=groups.get("status")
    )
    attrs = dict(signal.attrs)
    if reading.code is not None:
        attrs |= {"dcgm_code": reading.code.name, "meaning": reading.code.summary}
        if reading.code.action:
            attrs["action"] = reading.code.action
    entity = groups.get("dev") or ""
    gpu = _GPU_INDEX.search(entity if entity else body)
    switch = entity.removeprefix("Switch ") if entity.startswith("Switch ") else None
    if reading.part == "nvswitch":
        named = _NVSWITCH_INDEX.search(body)
        switch = switch or (named.group("switch") if named else None)
        gpu = None
    if switch is not None:
        attrs["nvswitch"] = switch
    if reading.part:
        attrs["part"] = reading.part
    return replace(
        signal,
        category_hint=reading.category,
        role="cause" if reading.category else "context",
        severity=reading.severity,
        gpu=gpu.group("gpu") if gpu else None,
        attrs=attrs,
    )


def _nvswitch_signal(signal: Signal, groups: Mapping[str, str | None]) -> Signal:
    """An SXid or a Fabric Manager error: the switch (`dev`) and link (`port`), and what the
    catalog knows of the SXid."""
    attrs = {k: v for k, v in signal.attrs.items() if k not in {"dev", "port", "event"}}
    if groups.get("dev"):
        attrs["nvswitch"] = str(groups["dev"])
    if groups.get("port"):
        attrs["link"] = str(groups["port"])
    sxid = groups.get("event")
    if sxid:
        attrs["sxid"] = sxid
        entry = default_sxid_catalog().by_code.get(int(sxid))
        if entry is not None:
            attrs |= {"meaning": entry.meaning, "action": entry.action}
    return replace(signal, gpu=None, attrs=attrs)


def _traceback_signals(record: Record, knowledge: Knowledge) -> list[Signal]:
    """A traceback: its exception lines' own matches, plus the traceback as an app error."""
    host = record.host
    inner: list[Signal] = []
    for line in record.tail:
        inner.extend(_match_line(line, host, knowledge, {"python_traceback"}))
    first_tail = record.tail[0].body if record.tail else ""
    exception = _EXCEPTION_LINE.match(first_tail)
    exc_type = exception.group("type") if exception else ""
    message = (exception.group("message") or "") if exception else first_tail
    frames = [m for line in record.lines if (m := _FRAME_LINE.search(line.body))]
    last_frame = ""
    if frames:
        path = frames[-1].group("path").rsplit("/", 1)[-1]
        last_frame = f"{path}:{frames[-1].group('line')} in {frames[-1].group('func')}"
    short_type = exc_type.rsplit(".", 1)[-1]
    # A traceback whose exception another pattern explains (an NCCL error, a CUDA ECC
    # error...) is that pattern's evidence; only an unexplained one is an application fault.
    explained = any(s.family != "python" for s in inner)
    role: Role = "context" if explained or short_type in _NOT_A_FAULT else "cause"
    shown = record.lines[-len(record.tail) - 1 :] if record.tail else record.lines[:2]
    evidence = "\n".join(line.raw for line in shown)
    attrs = {
        "exc_type": exc_type,
        "message": message.strip()[:300],
        "last_frame": last_frame,
        "signature": _VOLATILE.sub("N", f"{short_type}: {message.strip()[:200]} @ {last_frame}"),
        "frames": str(len(frames)),
    }
    traceback = Signal(
        kind="log",
        family="python_traceback",
        text=evidence[:2000],
        pattern="python_traceback",
        category_hint=Category.SOFTWARE_BUG,
        role=role,
        severity=Severity.ERROR,
        host=host,
        rank=record.rank,
        time=record.time,
        attrs=attrs,
    )
    # The traceback already stands for a plain application exception; keep only other news.
    return [traceback, *(s for s in inner if s.family != "python")]


def _elastic_signals(
    record: Record, knowledge: Knowledge, default_host: str | None
) -> list[Signal]:
    fields = elastic_fields(record)
    rank_text = fields.get("rank", "").split(" ")[0]
    rank = int(rank_text) if rank_text.isdigit() else None
    host = fields.get("host") or default_host
    exitcode = (fields.get("exitcode") or "").split(" ")[0]
    text = "Root Cause (first observed failure): " + ", ".join(
        f"{k}={v}" for k, v in fields.items()
    )
    signals = [
        Signal(
            kind="log",
            family="launcher",
            text=text,
            pattern="elastic_root_cause",
            role="context",
            severity=Severity.INFO,
            host=host,
            rank=rank,
            time=record.time,
            attrs={"exitcode": exitcode},
        )
    ]
    traceback_field = fields.get("traceback", "")
    if traceback_field:
        line = Line(raw=traceback_field, body=traceback_field, host=host, rank=rank)
        signals.extend(_match_line(line, host, knowledge, set()))
    return signals


def extract_signals(
    text: str, default_host: str | None = None, *, knowledge: Knowledge | None = None
) -> list[Signal]:
    """Split a pasted excerpt into records and turn each pattern match into a Signal."""
    knowledge = knowledge or default_knowledge()
    # A pasted dcgmi health or diag report (table or JSON) reads one line per incident.
    text = readable(text)
    signals: list[Signal] = []
    # Multi-line driver reports name the GPU on one line and the fault on the next.
    last_gpu_line: dict[str | None, tuple[int, str]] = {}
    # An mcelog record names the CPU, bank, DIMM and correction on other lines than the one
    # that matched, before and after it: its signals are completed once all is read.
    mcelog: dict[str | None, McelogRecord] = {}
    in_record: list[tuple[int, McelogRecord]] = []
    sections = _Sections()
    for index, record in enumerate(split_records(text)):
        if record.kind == "traceback":
            produced = _traceback_signals(record, knowledge)
        elif record.kind == "elastic_root_cause":
            produced = _elastic_signals(record, knowledge, default_host)
        else:
            line = record.first
            produced = _match_line(line, None, knowledge, set())
            if "NVRM" in line.body:
                named = pci_addresses(line.body)
                if named:
                    last_gpu_line[line.host] = (index, named[0])
            sections.read(line.host, line.body)
            produced = [sections.complete(s) for s in produced]
            machine_check = mcelog[line.host] = mcelog.get(line.host, McelogRecord()).read(
                line.body
            )
            in_record.extend(
                (len(signals) + i, machine_check)
                for i, s in enumerate(produced)
                if s.pattern in MCELOG_PATTERNS
            )
        for signal in produced:
            if signal.gpu is None and signal.family in {"kernel_xid", "gsp"}:
                seen = last_gpu_line.get(signal.host)
                if seen and index - seen[0] <= _GPU_CONTEXT_LINES:
                    signal = replace(signal, gpu=seen[1])
            if signal.host is None and default_host:
                signal = replace(signal, host=default_host)
            signals.append(signal)
    for index, machine_check in in_record:
        signals[index] = _in_mcelog_record(signals[index], machine_check)
    return signals


class _Sections:
    """Where a line sits in a tool's per-part sections, per host: the GPU of the `nvidia-smi
    -q` section and the HCA and port of the `ibstat` section it is in."""

    def __init__(self) -> None:
        self._gpu: dict[str | None, str] = {}
        self._hca: dict[str | None, str] = {}
        self._port: dict[str | None, str] = {}

    def read(self, host: str | None, body: str) -> None:
        if found := _SMI_GPU_SECTION.match(body):
            self._gpu[host] = normalize_pci(found.group("pci"))
        elif found := _IBSTAT_CA.match(body):
            self._hca[host] = found.group("ca")
            self._port.pop(host, None)
        elif (found := _IBSTAT_PORT.match(body)) and host in self._hca:
            self._port[host] = found.group("port")

    def complete(self, signal: Signal) -> Signal:
        if signal.gpu is None and signal.category_hint in _GPU_CATEGORIES:
            gpu = self._gpu.get(signal.host)
            if gpu is not None and signal.family in {"nvidia_smi", "thermal"}:
                return replace(signal, gpu=gpu)
        if signal.pattern == "ib_port_state_down" and not signal.attrs.get("dev"):
            hca, port = self._hca.get(signal.host), self._port.get(signal.host)
            if hca is not None and port is not None:
                return replace(signal, attrs={**signal.attrs, "dev": hca, "port": port})
        return signal


def _in_mcelog_record(signal: Signal, record: McelogRecord) -> Signal:
    return replace(
        signal,
        severity=record.severity(signal.severity),
        attrs={**signal.attrs, **record.where()},
    )


def describe(signals: Sequence[Signal]) -> str:
    """A short account of what was seen, e.g. '3 nccl, 1 kernel_xid'."""
    counts: dict[str, int] = {}
    for signal in signals:
        counts[signal.family] = counts.get(signal.family, 0) + 1
    return ", ".join(f"{n} {family}" for family, n in sorted(counts.items(), key=lambda kv: -kv[1]))
