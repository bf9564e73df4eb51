"""Triage rules: small named decisions over an incident's signals, each giving a verdict.

A rule says when it applies and what it concludes; the policy (policy.py) tries them in
order and the first verdict wins. Rules never read raw text: pasted excerpts and live agent
events both arrive as Signals, so one policy serves the CLI, the service and replays.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import ClassVar, Final

from sentinel.knowledge import SEVERITY_RANK
from sentinel.knowledge.taxonomy import Category
from sentinel.triage.context import TriageContext
from sentinel.triage.signals import Signal, describe
from sentinel.triage.verdict import Verdict

WARNING: Final = SEVERITY_RANK["warning"]
ERROR: Final = SEVERITY_RANK["error"]
CRITICAL: Final = SEVERITY_RANK["critical"]

LINK_CATEGORIES: Final = frozenset({Category.NIC, Category.NETWORK_SWITCH_CABLE})
# Faults upstream of the GPUs: when one of these hits a host, its GPU errors are consequences.
UPSTREAM_CATEGORIES: Final = (Category.POWER_SUPPLY, Category.SERVER_CHASSIS)
# Other host parts, most specific first.
HOST_PART_CATEGORIES: Final = (
    Category.SYSTEM_MEMORY,
    Category.CPU,
    Category.IO_EXPANSION_BOARD,
    Category.GPU_THERMAL,
    Category.SSD,
)
# When one GPU reports several faults, the most specific names it: a DBE that makes the GPU
# fall off the bus is an HBM fault; GSP timeouts logged after a GPU vanished are not the cause.
GPU_PRECEDENCE: Final = (
    Category.GPU_HBM_MEMORY,
    Category.GPU_SRAM_MEMORY,
    Category.FAULTY_GPU,
    Category.GPU_SYSTEM_PROCESSOR,
)
COLLECTIVE_FAMILIES: Final = frozenset({"nccl", "pytorch"})
# Families whose `dev` and `port` groups name an HCA's port.
LINK_FAMILIES: Final = frozenset({"ib", "mlx5", "nccl"})
# Faults that take a host's ranks down (a dead GPU, a lost host, a crash): their peers' failed
# completions toward that host follow.
RANK_STOPPERS: Final = (
    *UPSTREAM_CATEGORIES,
    *GPU_PRECEDENCE,
    *HOST_PART_CATEGORIES,
    Category.HOST_MAINTENANCE,
    Category.SOFTWARE_BUG,
)
# How a host reports that its peer stopped answering (a failed completion, the transport's
# retries exhausted): the fault is at the far end or between, not on the reporter.
PEER_REPORTS: Final = frozenset(
    {
        "nccl_ib_completion_error",
        "nccl_ofi_completion_error",
        "ib_retry_exceeded",
        "mpi_ib_retry_exceeded",
        "ib_ucx_endpoint_timeout",
    }
)
# How long after a host failed its peers' failed completions toward it may still arrive: IB
# gives up after its retries, ~30 s at NCCL's defaults (NCCL_IB_TIMEOUT=20, NCCL_IB_RETRY_CNT=7)
# and a few minutes at the highest timeouts.
SHADOW_S: Final = 300.0
# Where the driver or NVML itself reports a GPU fault (as opposed to the CUDA runtime).
_DRIVER_FAMILIES: Final = frozenset({"kernel_xid", "gsp", "gpu_sample", "nvidia_smi"})


class Rule(ABC):
    """A named decision: `applies` is a cheap test, `verdict` the conclusion (or None)."""

    @property
    def name(self) -> str:
        return type(self).__name__

    @abstractmethod
    def applies(self, ctx: TriageContext) -> bool: ...

    @abstractmethod
    def verdict(self, ctx: TriageContext) -> Verdict | None: ...


# ---------------------------------------------------------------- shared pieces


def _order(ctx: TriageContext) -> dict[int, int]:
    return {id(s): i for i, s in enumerate(ctx.signals)}


def _strongest(
    signals: Iterable[Signal], ctx: TriageContext, precedence: Sequence[Category] = ()
) -> Signal:
    """Most severe first; then primary over secondary, category precedence, earliest seen."""
    order = _order(ctx)

    def key(s: Signal) -> tuple[int, int, int, float, int]:
        rank = (
            precedence.index(s.category_hint) if s.category_hint in precedence else len(precedence)
        )
        when = s.time.timestamp() if s.time else float("inf")
        return (
            -s.severity_rank,
            s.attrs.get("secondary") == "true",
            rank,
            when,
            order.get(id(s), 0),
        )

    return min(signals, key=key)


def _by_host(signals: Iterable[Signal]) -> dict[str | None, list[Signal]]:
    groups: dict[str | None, list[Signal]] = defaultdict(list)
    for signal in signals:
        groups[signal.host].append(signal)
    return groups


def _worst_group(
    groups: dict[str | None, list[Signal]], ctx: TriageContext, precedence: Sequence[Category] = ()
) -> tuple[str | None, list[Signal], Signal]:
    heads = {host: _strongest(group, ctx, precedence) for host, group in groups.items()}
    host = min(
        heads,
        key=lambda h: (
            -heads[h].severity_rank,
            precedence.index(heads[h].category_hint)
            if heads[h].category_hint in precedence
            else 99,
            -len(groups[h]),
        ),
    )
    return host, groups[host], heads[host]


def _where(signal: Signal) -> str:
    parts = []
    if signal.host:
        parts.append(f"host {signal.host}")
    if signal.gpu:
        parts.append(f"GPU {signal.gpu}")
    parts.extend(_part(signal))
    if signal.rank is not None:
        parts.append(f"rank {signal.rank}")
    return ", ".join(parts) if parts else "an unnamed host"


def _part(signal: Signal) -> list[str]:
    """The host part a line names: a DIMM, a CPU and its bank, an HCA's port."""
    found = signal.attrs
    parts = []
    if found.get("dimm"):
        parts.append(f"DIMM {found['dimm']}")
    if found.get("cpu"):
        bank = f" bank {_decimal(found['bank'])}" if found.get("bank") else ""
        parts.append(f"CPU {_decimal(found['cpu'])}{bank}")
    if found.get("dev") and found.get("port") and signal.family in LINK_FAMILIES:
        parts.append(f"port {found['dev']}/{found['port']}")
    if found.get("nvswitch"):
        link = f" link {found['link']}" if found.get("link") else ""
        parts.append(f"NVSwitch {found['nvswitch']}{link}")
    return parts


def _on(parts: Sequence[str]) -> str:
    return f" on {', '.join(parts)}" if parts else ""


def _decimal(number: str) -> str:
    """rasdaemon prints CPU and bank numbers in hex (cpu=0x0000000c), mcelog in decimal."""
    return str(int(number, 16)) if number.startswith("0x") else number


def _what(signal: Signal) -> str:
    if signal.xid is not None:
        meaning = signal.attrs.get("meaning", "unknown XID")
        action = signal.attrs.get("action")
        return f"XID {signal.xid} ({meaning}" + (f"; NVIDIA action {action})" if action else ")")
    if signal.family == "python_traceback":
        return f"a traceback ending in {signal.attrs.get('exc_type') or 'an exception'}"
    named = signal.attrs.get("dcgm_code") or (
        f"SXid {signal.attrs['sxid']}" if signal.attrs.get("sxid") else None
    )
    if named:
        said = signal.attrs.get("meaning")
        return f"{named} ({said})" if said else f"{named} ({signal.pattern})"
    return f"{signal.pattern or signal.kind} ({signal.family})"


def _hosts(hosts: Iterable[str]) -> str:
    """'3 hosts (a, b, c)', the first five named."""
    named = sorted(hosts)
    return f"{len(named)} hosts ({', '.join(named[:5])}{', ...' if len(named) > 5 else ''})"


def _symptom_note(symptoms: Sequence[Signal], culprit_host: str | None) -> str:
    if not symptoms:
        return ""
    hosts = {s.host for s in symptoms if s.host and s.host != culprit_host}
    where = f" on {len(hosts)} other host(s)" if hosts else ""
    return f"; {len(symptoms)} symptom(s){where} are its consequence"


def _same_host(ctx: TriageContext, host: str | None, used: Sequence[Signal]) -> list[Signal]:
    """Other signals from the culprit's host (a named one): consequences of the same fault. An
    outside service failing (shared storage down on every host) is not the host's doing."""
    if host is None:
        return []
    ids = {id(s) for s in used}
    return [
        s
        for s in ctx.signals
        if s.host == host
        and id(s) not in ids
        and not (s.role == "cause" and s.category_hint == Category.DEPENDENCY)
    ]


def _shadows(ctx: TriageContext, host: str, fault: Sequence[Signal]) -> list[Signal]:
    """Peers' failed completions after `host` failed: the dead end of their connections to it
    (its ranks and queue pairs are gone), not a fault of theirs nor of the fabric. NCCL names
    the peer by an address the job does not know; a report naming another known host is not
    this host's shadow, nor is one that cannot be placed after the fault (no time)."""
    times = [s.time for s in fault if s.time is not None]
    if not times:
        return []
    start = min(times)
    known = ctx.hosts | ctx.hosts_seen
    return [
        s
        for s in ctx.causes_in(LINK_CATEGORIES)
        if s.pattern in PEER_REPORTS
        and s.host != host
        and s.time is not None
        and 0 <= (s.time - start).total_seconds() <= SHADOW_S
        and not ((peer := s.attrs.get("peer")) is not None and peer != host and peer in known)
    ]


def _culprit_gpu(head: Signal, evidence: Sequence[Signal]) -> str | None:
    """The head's GPU; else the one GPU the rest of the evidence names (a rank's CUDA error
    names no PCI address, the ECC counter or Xid beside it does). Two GPUs: say neither."""
    if head.gpu:
        return head.gpu
    named = {s.gpu for s in evidence if s.gpu and s.category_hint == head.category_hint}
    return next(iter(named)) if len(named) == 1 else None


def _confidence(head: Signal, base: dict[int, float]) -> float:
    return base.get(head.severity_rank, 0.4)


# ---------------------------------------------------------------- planned work


class AnnouncedMaintenanceIsPlanned(Rule):
    """Maintenance was announced for the hosts involved: the interruption was planned."""

    def applies(self, ctx: TriageContext) -> bool:
        return bool(ctx.causes_in([Category.PLANNED]))

    def verdict(self, ctx: TriageContext) -> Verdict | None:
        planned = ctx.causes_in([Category.PLANNED])
        named = {s.host for s in planned if s.host}
        job_wide = any(s.host is None for s in planned)
        hard = [
            s
            for s in ctx.causes
            if s.category_hint not in {Category.PLANNED, Category.HOST_MAINTENANCE, None}
            and s.severity_rank >= ERROR
            and (job_wide or s.host not in named)
        ]
        if hard:
            return None  # a fault the announcement does not cover: let the fault rules speak
        culprit = next(iter(named)) if len(named) == 1 else None
        rest = [s for s in ctx.signals if s not in planned]
        return Verdict.build(
            category=Category.PLANNED,
            confidence=0.85,
            reason=f"Maintenance was announced ({planned[0].text.strip()[:120]}); "
            f"{len(rest)} other signal(s) are its expected effect.",
            rule=self.name,
            evidence=planned,
            symptoms=rest,
            culprit_host=culprit,
        )


# ---------------------------------------------------------------- hardware


class _HardwareOverSymptoms(Rule):
    """Name the worst hardware fault among `categories`; all else on its host follows from it."""

    categories: ClassVar[Sequence[Category]]
    confidence_by_severity: ClassVar[dict[int, float]] = {CRITICAL: 0.85, ERROR: 0.72}

    def candidates(self, ctx: TriageContext) -> list[Signal]:
        return ctx.causes_in(self.categories, ERROR)

    def applies(self, ctx: TriageContext) -> bool:
        return bool(self.candidates(ctx))

    def verdict(self, ctx: TriageContext) -> Verdict | None:
        host, group, head = _worst_group(_by_host(self.candidates(ctx)), ctx, self.categories)
        # Lesser reports of the same part on the same host (XID 45, a remap event) belong here too.
        related = [s for s in ctx.causes_in(self.categories) if s.host == host and s not in group]
        evidence = [head, *(s for s in [*group, *related] if s is not head)]
        symptoms = (
            [*_same_host(ctx, host, evidence), *ctx.others(evidence)]
            if host
            else ctx.others(evidence)
        )
        symptoms = list(
            {id(s): s for s in symptoms if s.role != "cause" or s.host == host}.values()
        )
        if host:
            symptoms += _shadows(ctx, host, evidence)
        confidence = _confidence(head, self.confidence_by_severity)
        if head.attrs.get("cause") == "either":
            confidence -= 0.1
        if len(evidence) > 1:
            confidence += 0.05
        category = head.category_hint or Category.UNKNOWN
        return Verdict.build(
            category=category,
            confidence=confidence,
            reason=f"{_what(head)} on {_where(head)}{_symptom_note(symptoms, host)}.",
            rule=self.name,
            evidence=evidence,
            symptoms=symptoms,
            culprit_host=host,
            culprit_gpu=_culprit_gpu(head, evidence),
            culprit_rank=head.rank,
        )


class BlamePowerOrChassisOverWhatItTookDown(_HardwareOverSymptoms):
    """A failing PSU or chassis takes its GPUs and NICs down with it: blame the box, not them."""

    categories = UPSTREAM_CATEGORIES


def _nvswitch(signal: Signal) -> bool:
    """An NVSwitch's own report: an SXid, Fabric Manager, DCGM's NVSwitch watch or code."""
    return signal.family == "nvswitch" or signal.attrs.get("part") == "nvswitch"


class BlameNvSwitchOverTheGpusOnItsBaseboard(_HardwareOverSymptoms):
    """A fatal NVSwitch error stops NVLink traffic across the host's GPU baseboard: its GPUs'
    NVLink XIDs (74, 79...) and the peers' timeouts follow. One verdict names the host and the
    switch (io_expansion_board, the baseboard that carries it: the host is drained and reset,
    NVIDIA's action for a fatal SXid), never a GPU. A GPU's own memory fault on that host is
    not the switch's doing and is left to the GPU rule."""

    categories = (Category.IO_EXPANSION_BOARD,)
    confidence_by_severity = {CRITICAL: 0.9, ERROR: 0.75}

    def candidates(self, ctx: TriageContext) -> list[Signal]:
        memory = {
            s.host
            for s in ctx.causes_in([Category.GPU_HBM_MEMORY, Category.GPU_SRAM_MEMORY], ERROR)
        }
        return [s for s in super().candidates(ctx) if _nvswitch(s) and s.host not in memory]


class BlamePcieSwitchOverTheGpusBehindIt(_HardwareOverSymptoms):
    """Several GPUs of one host failing together beside a fatal PCIe switch/port error: they
    sit behind that switch (an HGX board hangs two GPUs and two NICs off each), so it is the
    switch. One GPU with an AER line is left to the GPU rule: the port reports its GPU's fall."""

    categories = (Category.IO_EXPANSION_BOARD,)

    def candidates(self, ctx: TriageContext) -> list[Signal]:
        gpus: dict[str | None, set[str]] = defaultdict(set)
        for s in ctx.causes_in(GPU_PRECEDENCE, ERROR):
            if s.gpu:
                gpus[s.host].add(s.gpu)
        return [s for s in super().candidates(ctx) if s.host and len(gpus[s.host]) >= 2]


class BlameHardGpuXidOverPeerTimeouts(_HardwareOverSymptoms):
    """One GPU's hard fault (XID 79, DBE, GSP...) explains every peer's NCCL timeout."""

    categories = GPU_PRECEDENCE
    confidence_by_severity = {CRITICAL: 0.9, ERROR: 0.75}

    def candidates(self, ctx: TriageContext) -> list[Signal]:
        # A CUDA launch failure beside an app-caused XID (13, 31, 43) is that same
        # application fault seen from the runtime, not a failing GPU.
        app_hosts = {
            s.host
            for s in ctx.causes
            if s.xid is not None and s.attrs.get("cause") == "application"
        }
        found = [
            s
            for s in super().candidates(ctx)
            if not (s.family == "cuda" and (s.host in app_hosts or None in app_hosts))
        ]
        # CUDA reports what the runtime saw ("uncorrectable ECC error encountered" is the same
        # error for HBM and SRAM); where the driver (an Xid, NVML) says what failed on that
        # host, it names the part and the CUDA error is its evidence, not the head.
        driver_hosts = {s.host for s in found if s.family in _DRIVER_FAMILIES}
        return [s for s in found if s.family != "cuda" or s.host not in driver_hosts]


class BlameHostHardwareOverPeerTimeouts(_HardwareOverSymptoms):
    """A host part failing (DIMM, CPU, PCIe switch, disk, cooling) explains its peers' timeouts."""

    categories = HOST_PART_CATEGORIES
    confidence_by_severity = {CRITICAL: 0.85, ERROR: 0.7}


# ---------------------------------------------------------------- software


def _software_faults(ctx: TriageContext) -> list[Signal]:
    return ctx.causes_in([Category.SOFTWARE_BUG], WARNING)


class SameTracebackOnManyRanksIsSoftwareBug(Rule):
    """Every rank failing the same way is the program, not one machine (even with XID 13)."""

    def groups(self, ctx: TriageContext) -> dict[str, list[Signal]]:
        groups: dict[str, list[Signal]] = defaultdict(list)
        for signal in _software_faults(ctx):
            if signal.xid is None:
                groups[signal.signature].append(signal)
        return groups

    @staticmethod
    def spread(group: Sequence[Signal]) -> int:
        streams = {(s.host, s.rank) for s in group if s.host or s.rank is not None}
        return len(streams) if streams else len(group)

    def applies(self, ctx: TriageContext) -> bool:
        return any(self.spread(g) >= 2 for g in self.groups(ctx).values())

    def verdict(self, ctx: TriageContext) -> Verdict | None:
        group = max(self.groups(ctx).values(), key=self.spread)
        spread = self.spread(group)
        # App-caused XIDs (13, 31, 43) are what the bad kernel did to the GPU: same evidence.
        app_xids = [s for s in _software_faults(ctx) if s.xid is not None]
        evidence = [*group, *app_xids]
        symptoms = ctx.others(evidence)
        # The app-caused XIDs count too: a bug seen on one host's tracebacks so far but
        # raising XIDs on several hosts is no single host's.
        hosts = {s.host for s in evidence if s.host}
        head = group[0]
        return Verdict.build(
            category=Category.SOFTWARE_BUG,
            confidence=0.9 if spread >= 4 else 0.82,
            reason=f"The same failure ({head.signature[:160]}) on {spread} ranks/processes: "
            f"the program, not one machine"
            + (f"; {len(app_xids)} app-caused XID(s) agree" if app_xids else "")
            + ".",
            rule=self.name,
            evidence=evidence,
            symptoms=symptoms,
            culprit_host=next(iter(hosts)) if len(hosts) == 1 else None,
        )


class ApplicationErrorIsSoftwareBug(Rule):
    """A traceback, OOM or illegal access with no hardware under it: the application failed."""

    def applies(self, ctx: TriageContext) -> bool:
        return bool(_software_faults(ctx))

    def verdict(self, ctx: TriageContext) -> Verdict | None:
        faults = _software_faults(ctx)
        head = _strongest(faults, ctx)
        evidence = [head, *(s for s in faults if s is not head)]
        symptoms = ctx.others(evidence)
        confidence = {CRITICAL: 0.8, ERROR: 0.75, WARNING: 0.5}.get(head.severity_rank, 0.4)
        if head.family == "oom":
            confidence += 0.05
        # The same fault (the same XID, the same message) on several hosts is the program
        # everywhere, not the first host that happened to report it.
        alike = [
            s
            for s in faults
            if (s.xid == head.xid if head.xid is not None else s.signature == head.signature)
        ]
        alone = len({s.host for s in alike}) == 1
        if alone and head.host:
            # A crashed rank's queue pairs are gone: its peers' failed completions follow it.
            symptoms = [*symptoms, *_shadows(ctx, head.host, evidence)]
        return Verdict.build(
            category=Category.SOFTWARE_BUG,
            confidence=confidence,
            reason=f"{_what(head)} on {_where(head)} with no hardware fault beneath it"
            + ("" if alone else f" (and on {len({s.host for s in alike}) - 1} more host(s))")
            + f"{_symptom_note(symptoms, head.host)}.",
            rule=self.name,
            evidence=evidence,
            symptoms=symptoms,
            culprit_host=head.host if alone else None,
            culprit_gpu=head.gpu if alone and len({s.gpu for s in alike}) == 1 else None,
            culprit_rank=head.rank if alone and len(alike) == 1 else None,
        )


# ---------------------------------------------------------------- hosts and links


class SilentHostIsHostLoss(Rule):
    """A host that went silent, panicked, rebooted or was lost by the scheduler: host loss."""

    def applies(self, ctx: TriageContext) -> bool:
        return bool(ctx.causes_in([Category.HOST_MAINTENANCE]))

    def verdict(self, ctx: TriageContext) -> Verdict | None:
        lost = ctx.causes_in([Category.HOST_MAINTENANCE])
        host, group, head = _worst_group(_by_host(lost), ctx)
        # Peers' link errors toward a vanished host are its shadow, not a fabric fault.
        shadows = [s for s in ctx.causes_in(LINK_CATEGORIES) if s.host != host]
        evidence = [head, *(s for s in group if s is not head)]
        symptoms = [*_same_host(ctx, host, evidence), *ctx.others(evidence), *shadows]
        symptoms = list({id(s): s for s in symptoms}.values())
        return Verdict.build(
            category=Category.HOST_MAINTENANCE,
            confidence={CRITICAL: 0.85, ERROR: 0.75, WARNING: 0.5}.get(head.severity_rank, 0.4),
            reason=f"Host loss: {_what(head)} on {_where(head)}{_symptom_note(symptoms, host)}.",
            rule=self.name,
            evidence=evidence,
            symptoms=symptoms,
            culprit_host=host,
        )


def _link_faults(ctx: TriageContext) -> list[Signal]:
    """Link errors that may be a link's fault: not a lesser sign far from the trouble, nor the
    peers' failed completions toward the one host whose ranks a fault of its own took down."""
    dead_ends = {id(s) for s in _dead_host_shadows(ctx)}
    return [
        s
        for s in ctx.causes_in(LINK_CATEGORIES, WARNING)
        if ctx.explains_effects(s) and id(s) not in dead_ends
    ]


def _dead_host_shadows(ctx: TriageContext) -> list[Signal]:
    faults = ctx.causes_in(RANK_STOPPERS, ERROR)
    hosts = {s.host for s in faults}
    if len(hosts) != 1 or None in hosts:
        return []
    host = faults[0].host
    assert host is not None
    return _shadows(ctx, host, faults)


def _port_shadow(ctx: TriageContext) -> tuple[str | None, list[Signal]]:
    """One host's own port failing (link down, a module event) and, after it, its peers'
    failed completions: those are the port's shadow, not link errors of theirs."""
    own = [
        s
        for s in _link_faults(ctx)
        if s.host and s.pattern not in PEER_REPORTS and s.severity_rank >= ERROR
    ]
    hosts = {s.host for s in own}
    if len(hosts) != 1:
        return None, []
    host = own[0].host
    assert host is not None
    return host, _shadows(ctx, host, own)


def _link_hosts(ctx: TriageContext) -> set[str]:
    """Hosts whose links failed, less peers that only report one failed host's port."""
    shadows = {id(s) for s in _port_shadow(ctx)[1]}
    return {s.host for s in _link_faults(ctx) if s.host and id(s) not in shadows}


class PeersBlamingOneHostIsItsNic(Rule):
    """Several hosts' completion errors all name the same peer: that peer's NIC (or link)."""

    @staticmethod
    def blamed(ctx: TriageContext) -> tuple[str | None, list[Signal]]:
        reports = [s for s in _link_faults(ctx) if s.attrs.get("peer")]
        peers = Counter(s.attrs["peer"] for s in reports)
        reporters = {s.host for s in reports if s.host}
        if len(peers) == 1 and len(reporters) >= 2:
            peer = next(iter(peers))
            return peer, reports
        return None, []

    @staticmethod
    def own_port_faults(ctx: TriageContext, peer: str) -> list[Signal]:
        """NCCL names a peer by its address; a host the job knows by name whose own port
        failed (link down, module event) while it was blamed is that address."""
        if peer in ctx.hosts or peer in ctx.hosts_seen:
            return []
        own = [s for s in _link_faults(ctx) if s.host and not s.attrs.get("peer")]
        return own if len({s.host for s in own}) == 1 else []

    def applies(self, ctx: TriageContext) -> bool:
        return self.blamed(ctx)[0] is not None

    def verdict(self, ctx: TriageContext) -> Verdict | None:
        peer, reports = self.blamed(ctx)
        assert peer is not None
        reporters = {s.host for s in reports if s.host}
        own = self.own_port_faults(ctx, peer)
        culprit = own[0].host if own else peer
        return Verdict.build(
            category=Category.NIC,
            confidence=0.8 if own else 0.65,
            reason=f"{len(reporters)} hosts report failed completions, all from peer {peer}: "
            "its NIC or link is the common factor"
            + (f"; {culprit} reports its own port failing ({_what(own[0])})." if own else "."),
            rule=self.name,
            evidence=[*own, *reports],
            symptoms=ctx.others(reports),
            culprit_host=culprit,
        )


class LinkErrorsOnManyHostsAreTheFabric(Rule):
    """Link errors on several hosts at once point at the switches and cables between them."""

    def applies(self, ctx: TriageContext) -> bool:
        return len(_link_hosts(ctx)) >= 2

    def verdict(self, ctx: TriageContext) -> Verdict | None:
        faults = _link_faults(ctx)
        hosts = _link_hosts(ctx)
        return Verdict.build(
            category=Category.NETWORK_SWITCH_CABLE,
            confidence=min(0.9, 0.6 + 0.05 * len(hosts)),
            reason=f"Link errors on {_hosts(hosts)}: the fabric, not one NIC.",
            rule=self.name,
            evidence=faults,
            symptoms=ctx.others(faults),
        )


class LinkErrorsOnOneHostAreItsNic(Rule):
    """Link errors from one host only: its NIC, transceiver or port."""

    def applies(self, ctx: TriageContext) -> bool:
        return len(_link_hosts(ctx)) == 1

    def verdict(self, ctx: TriageContext) -> Verdict | None:
        _, shadows = _port_shadow(ctx)
        ids = {id(s) for s in shadows}
        faults = [s for s in _link_faults(ctx) if id(s) not in ids]
        head = _strongest([s for s in faults if s.host], ctx)
        evidence = [head, *(s for s in faults if s is not head)]
        return Verdict.build(
            category=Category.NIC,
            confidence=0.75 if head.severity_rank >= ERROR else 0.55,
            reason=f"{_what(head)}: link errors on {_where(head)} only, so its NIC or port"
            + (f"; {len(shadows)} peer report(s) after it are its shadow." if shadows else "."),
            rule=self.name,
            evidence=evidence,
            symptoms=[*shadows, *ctx.others(evidence)],
            culprit_host=head.host,
            culprit_gpu=None,
        )


class LinkErrorsWithoutHostsFollowTheirPattern(Rule):
    """Link errors with no host named: trust what each pattern says (fabric vs. NIC)."""

    def applies(self, ctx: TriageContext) -> bool:
        return bool(_link_faults(ctx)) and not _link_hosts(ctx)

    def verdict(self, ctx: TriageContext) -> Verdict | None:
        faults = _link_faults(ctx)
        votes = Counter(s.category_hint for s in faults if s.severity_rank >= ERROR) or Counter(
            s.category_hint for s in faults
        )
        category = max(votes, key=lambda c: (votes[c], c == Category.NETWORK_SWITCH_CABLE))
        head = _strongest([s for s in faults if s.category_hint == category], ctx)
        return Verdict.build(
            category=category or Category.UNKNOWN,
            confidence=0.6 if head.severity_rank >= ERROR else 0.45,
            reason=f"{_what(head)}{_on(_part(head))}; no host names in the excerpt, so its "
            "pattern decides.",
            rule=self.name,
            evidence=[head, *(s for s in faults if s is not head)],
            symptoms=ctx.others(faults),
        )


# ---------------------------------------------------------------- outside the job


class UnreachableServiceIsDependency(Rule):
    """Shared storage, the rendezvous store or the scheduler failing: an outside dependency."""

    def applies(self, ctx: TriageContext) -> bool:
        return bool(ctx.causes_in([Category.DEPENDENCY], WARNING))

    def verdict(self, ctx: TriageContext) -> Verdict | None:
        faults = ctx.causes_in([Category.DEPENDENCY], WARNING)
        head = _strongest(faults, ctx)
        server = head.attrs.get("server")
        hosts = len({s.host for s in faults}) or 1
        return Verdict.build(
            category=Category.DEPENDENCY,
            confidence=0.7 if head.severity_rank >= ERROR else 0.5,
            reason=f"{_what(head)}"
            + (f" (server {server})" if server else "")
            + f": a service the job depends on failed, seen from {hosts} host(s).",
            rule=self.name,
            evidence=[head, *(s for s in faults if s is not head)],
            symptoms=ctx.others(faults),
        )


class NumericBlowupWithoutHardwareIsSilentDataCorruption(Rule):
    """NaNs, loss spikes or replicas that disagree, with no hardware error: silent corruption."""

    def applies(self, ctx: TriageContext) -> bool:
        return bool(ctx.causes_in([Category.SILENT_DATA_CORRUPTION], WARNING))

    def verdict(self, ctx: TriageContext) -> Verdict | None:
        faults = ctx.causes_in([Category.SILENT_DATA_CORRUPTION], WARNING)
        head = _strongest(faults, ctx)
        return Verdict.build(
            category=Category.SILENT_DATA_CORRUPTION,
            confidence=0.6 if head.severity_rank >= ERROR else 0.5,
            reason=f"{_what(head)} on {_where(head)} and no hardware error reported: "
            "suspect silent data corruption (rerun the step on other hosts to confirm).",
            rule=self.name,
            evidence=[head, *(s for s in faults if s is not head)],
            symptoms=ctx.others(faults),
            culprit_host=head.host,
            culprit_rank=head.rank,
        )


class MostSevereRemainingCauseWins(Rule):
    """Any other cause a pattern names (a warning-level XID, correctable errors...): weakly."""

    @staticmethod
    def leads(ctx: TriageContext) -> list[Signal]:
        # Info-level causes (a corrected PCIe error, "machine check events logged") happen on
        # healthy hosts all day: never a lead, else any hang would be blamed on them. A
        # warning-level one (a corrected DIMM error) is a lead only where the trouble is.
        return [
            s
            for s in ctx.causes
            if s.category_hint and s.severity_rank >= WARNING and ctx.explains_effects(s)
        ]

    def applies(self, ctx: TriageContext) -> bool:
        return bool(self.leads(ctx))

    def verdict(self, ctx: TriageContext) -> Verdict | None:
        causes = self.leads(ctx)
        head = _strongest(causes, ctx)
        same = [s for s in causes if s.category_hint == head.category_hint]
        return Verdict.build(
            category=head.category_hint or Category.UNKNOWN,
            confidence=0.3 + 0.07 * head.severity_rank,
            reason=f"Only lesser signs: {_what(head)} on {_where(head)}; a lead, not proof.",
            rule=self.name,
            evidence=[head, *(s for s in same if s is not head)],
            symptoms=ctx.others(same),
            culprit_host=head.host,
            culprit_gpu=head.gpu,
            culprit_rank=head.rank,
        )


# ---------------------------------------------------------------- symptoms only


@dataclass(frozen=True)
class _Laggard:
    """Where a hang began, by what evidence (none found: no host, no note)."""

    host: str | None = None
    rank: int | None = None
    note: str = ""
    evidence: tuple[Signal, ...] = ()


def _stragglers(ctx: TriageContext) -> list[Signal]:
    return [s for s in ctx.symptoms if s.kind == "straggler"]


def _one_host(signals: Sequence[Signal]) -> str | None:
    hosts = {s.host for s in signals}
    return next(iter(hosts)) if len(hosts) == 1 else None


def _laggard(ctx: TriageContext, timeouts: Sequence[Signal]) -> _Laggard:
    """The rank the others waited for: the flight recorder's, else the odd sequence number out,
    else the one host whose ranks stopped well before the rest (heartbeats), else the one host
    that straggled. Several hosts stopping first, or straggling, name none."""
    stuck = [s for s in ctx.signals if s.kind == "fr_verdict" and s.rank is not None]
    if stuck:
        head = stuck[0]
        return _Laggard(
            head.host, head.rank, f"; the flight recorder names rank {head.rank}", (head,)
        )
    by_seq: dict[str, list[Signal]] = defaultdict(list)
    for s in timeouts:
        if s.attrs.get("seqnum") and s.rank is not None:
            by_seq[s.attrs["seqnum"]].append(s)
    if len(by_seq) >= 2:
        streams = {seq: {(s.host, s.rank) for s in g} for seq, g in by_seq.items()}
        seq = min(streams, key=lambda k: len(streams[k]))
        odd = by_seq[seq]
        if len(streams[seq]) == 1 and sum(map(len, streams.values())) >= 3:
            rank = odd[0].rank
            return _Laggard(
                odd[0].host,
                rank,
                f"; rank {rank} timed out on a different collective than the rest",
                tuple(odd),
            )
    first = [s for s in ctx.symptoms if s.attrs.get("stopped_first")]
    if first:
        host = _one_host(first)
        if host is None:
            named = {s.host for s in first if s.host}
            return _Laggard(
                note=f"; ranks on {_hosts(named)} stopped before the rest, none clearly first"
            )
        # The latest report compares it with where the rest of the job stopped in the end.
        latest = first[-1]
        return _Laggard(host, latest.rank, f"; the heartbeats show {latest.text}", tuple(first))
    slow = _stragglers(ctx)
    host = _one_host(slow)
    if host is not None:
        return _Laggard(host, slow[0].rank, f"; {slow[0].text} before the hang", tuple(slow))
    return _Laggard()


def _hang(timeouts: Sequence[Signal]) -> str:
    """What a hang looked like: the NCCL watchdog's timeouts, heartbeats that stopped, or both."""
    nccl = [s for s in timeouts if s.family != "heartbeat"]
    seen = []
    if nccl:
        ranks = {s.rank for s in nccl if s.rank is not None}
        seen.append(f"NCCL watchdog timeouts on {len(ranks) or len(nccl)} rank(s)")
    if len(nccl) < len(timeouts):
        seen.append("ranks stopped making progress (heartbeats)")
    return " and ".join(seen)


class WatchdogTimeoutWithNothingDeeper(Rule):
    """NCCL watchdog timeouts (or stalled heartbeats) and no deeper cause anywhere: a collective
    hang, named as such, on the rank or host where it began when the evidence shows it."""

    @staticmethod
    def timeouts(ctx: TriageContext) -> list[Signal]:
        return [
            s
            for s in ctx.symptoms
            if s.category_hint == Category.NCCL_WATCHDOG_TIMEOUT and s.kind != "straggler"
        ]

    def applies(self, ctx: TriageContext) -> bool:
        return bool(self.timeouts(ctx))

    def verdict(self, ctx: TriageContext) -> Verdict | None:
        timeouts = self.timeouts(ctx)
        laggard = _laggard(ctx, timeouts)
        evidence = list({id(s): s for s in [*laggard.evidence, *timeouts]}.values())
        # Nothing known explains the hang: what the hosts printed that no pattern knows is
        # the lead a human follows next.
        seen = ctx.unrecognized()
        unknown = f"; {len(seen)} error line(s) no pattern knows are attached" if seen else ""
        return Verdict.build(
            category=Category.NCCL_WATCHDOG_TIMEOUT,
            confidence=0.65 if laggard.host else 0.6,
            reason=f"The job hung: {_hang(timeouts)}, and no hardware, network or application "
            f"fault was found beneath it{laggard.note}{unknown}.",
            rule=self.name,
            evidence=evidence,
            symptoms=[*ctx.others(evidence), *seen],
            culprit_host=laggard.host,
            culprit_rank=laggard.rank,
        )


class StragglersSlowEveryCollective(Rule):
    """Ranks far slower than the rest, no error anywhere and the job still running: every
    collective waits on them. Named like a hang (nccl_watchdog_timeout), on their host when
    they are one host's, whose exclusion at the next restart is the remedy; a thermal, power or
    link sign on that host names the part instead (the rules above)."""

    def applies(self, ctx: TriageContext) -> bool:
        return bool(_stragglers(ctx)) and not WatchdogTimeoutWithNothingDeeper.timeouts(ctx)

    def verdict(self, ctx: TriageContext) -> Verdict | None:
        slow = _stragglers(ctx)
        host = _one_host(slow)
        worst = max(slow, key=lambda s: float(s.attrs.get("step_time_s", 0)))
        ranks = {s.rank for s in slow if s.rank is not None}
        where = host or _hosts({s.host for s in slow if s.host})
        return Verdict.build(
            category=Category.NCCL_WATCHDOG_TIMEOUT,
            confidence=0.55 if host else 0.45,
            reason=f"{len(ranks) or len(slow)} rank(s) on {where} straggle ({worst.text}) and "
            "no hardware, network or application fault explains it: every collective waits "
            "on them.",
            rule=self.name,
            evidence=slow,
            symptoms=ctx.others(slow),
            culprit_host=host,
            culprit_rank=worst.rank if host and len(ranks) == 1 else None,
        )


class SymptomPointsToACause(Rule):
    """Only symptoms, but some hint at a cause (NCCL 'unhandled cuda error' suggests the GPU)."""

    @staticmethod
    def hinted(ctx: TriageContext) -> list[Signal]:
        return [s for s in ctx.symptoms if s.category_hint and s.family != "launcher"]

    def applies(self, ctx: TriageContext) -> bool:
        return bool(self.hinted(ctx))

    def verdict(self, ctx: TriageContext) -> Verdict | None:
        hinted = self.hinted(ctx)
        votes = Counter(s.category_hint for s in hinted)
        category = votes.most_common(1)[0][0]
        evidence = [s for s in hinted if s.category_hint == category]
        return Verdict.build(
            category=category or Category.UNKNOWN,
            confidence=0.35,
            reason=f"No direct cause; {len(evidence)} symptom(s) such as {_what(evidence[0])} "
            f"usually come from this.",
            rule=self.name,
            evidence=evidence,
            symptoms=ctx.others(evidence),
            culprit_host=evidence[0].host,
        )


class CollectiveErrorWithNothingDeeper(Rule):
    """NCCL/ProcessGroup errors with nothing under them: the collective layer failed."""

    @staticmethod
    def errors(ctx: TriageContext) -> list[Signal]:
        return [s for s in ctx.symptoms if s.family in COLLECTIVE_FAMILIES]

    def applies(self, ctx: TriageContext) -> bool:
        return bool(self.errors(ctx))

    def verdict(self, ctx: TriageContext) -> Verdict | None:
        errors = self.errors(ctx)
        return Verdict.build(
            category=Category.NCCL_WATCHDOG_TIMEOUT,
            confidence=0.35,
            reason=f"{len(errors)} NCCL/ProcessGroup error(s) such as {_what(errors[0])}, "
            "with no deeper cause in the excerpt (a peer may have died silently).",
            rule=self.name,
            evidence=errors,
            symptoms=ctx.others(errors),
        )


# Exits by which the program stopped itself (abort, crash): its own fault. Exit code 1 or a
# SIGKILL/SIGTERM from outside says nothing about why.
_SELF_INFLICTED: Final = frozenset(
    {"SIGABRT", "SIGSEGV", "SIGBUS", "SIGFPE", "SIGILL", "-6", "-11", "-7", "-8", "-4", "6", "11"}
)


class CrashedWorkerBeforeAnyTimeout(Rule):
    """A worker died before any collective timed out, and nothing says why: the stalls and
    timeouts that followed are its shadow. An abort or crash of its own is the program's
    fault; a bare non-zero exit is not enough to name a cause (unknown, on that host)."""

    @staticmethod
    def crashes(ctx: TriageContext) -> list[Signal]:
        return [s for s in ctx.symptoms if s.family == "launcher" and s.category_hint]

    @staticmethod
    def first(ctx: TriageContext, crashes: Sequence[Signal]) -> bool:
        """No timeout is known to precede the first crash (a watchdog timeout kills its rank
        with SIGABRT: that crash follows the hang and explains nothing)."""
        timeouts = [
            s
            for s in ctx.symptoms
            if s.category_hint == Category.NCCL_WATCHDOG_TIMEOUT and s.family != "heartbeat"
        ]
        if not timeouts:
            return True
        times = [s.time for s in crashes if s.time]
        return bool(times) and all(t.time is not None and t.time > min(times) for t in timeouts)

    def applies(self, ctx: TriageContext) -> bool:
        crashes = self.crashes(ctx)
        # A symptom that hints at a cause (NCCL's "unhandled cuda error") says more.
        hinted = [
            s
            for s in SymptomPointsToACause.hinted(ctx)
            if s.category_hint != Category.NCCL_WATCHDOG_TIMEOUT
        ]
        return bool(crashes) and not hinted and self.first(ctx, crashes)

    def verdict(self, ctx: TriageContext) -> Verdict | None:
        crashes = self.crashes(ctx)
        roots = [s for s in ctx.signals if s.pattern == "elastic_root_cause"]
        root = roots[0] if roots else None
        exits = [
            s for s in ctx.signals if s.family == "launcher" or s.pattern == "elastic_root_cause"
        ]
        codes = {v for s in exits for k in ("exitcode", "status", "event") if (v := s.attrs.get(k))}
        evidence = [*crashes, *roots]
        where = root or crashes[0]
        shown = f" ({root.text[:160]})" if root else f" ({crashes[0].text.strip()[:160]})"
        if codes & _SELF_INFLICTED:
            return Verdict.build(
                category=Category.SOFTWARE_BUG,
                confidence=0.3,
                reason="A worker process aborted or crashed by itself and nothing shows a cause "
                f"beneath it{shown}; look for the first rank's traceback.",
                rule=self.name,
                evidence=evidence,
                symptoms=ctx.others(crashes),
                culprit_host=where.host,
                culprit_rank=where.rank,
            )
        return Verdict.build(
            category=Category.UNKNOWN,
            confidence=0.15,
            reason="A worker process exited"
            + (f" with code {', '.join(sorted(codes))}" if codes else "")
            + f" before anything timed out, and nothing says why{shown}: not enough evidence "
            "to name a cause. Its host's logs around the exit are the next place to look.",
            rule=self.name,
            evidence=evidence,
            symptoms=ctx.others(crashes),
            culprit_host=where.host,
            culprit_rank=where.rank,
        )


class ThinEvidenceIsUnknown(Rule):
    """Nothing that names a cause: say so, with what was seen."""

    def applies(self, ctx: TriageContext) -> bool:
        return True

    def verdict(self, ctx: TriageContext) -> Verdict | None:
        seen = describe(ctx.signals)
        return Verdict.build(
            category=Category.UNKNOWN,
            confidence=0.0 if not ctx.signals else 0.1,
            reason=f"Not enough evidence to name a cause; seen: {seen}."
            if seen
            else "Not enough evidence to name a cause; no known failure pattern was found.",
            rule=self.name,
            evidence=list(ctx.signals),
        )
