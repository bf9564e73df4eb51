"""What every triage rule shares: the rule's shape, the category groups the rules name, and the
small functions they build verdicts with (the strongest signal, where and what it is, the peers'
failed completions that are a dead host's shadow)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Final

from sentinel.knowledge.taxonomy import Category
from sentinel.triage.context import TriageContext
from sentinel.triage.signals import Signal
from sentinel.triage.verdict import Verdict
from sentinel.wire.severity import Severity

# The ranks the rules compare signals' severities with.
WARNING: Final = Severity.WARNING.rank
ERROR: Final = Severity.ERROR.rank
CRITICAL: Final = Severity.CRITICAL.rank

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
    """A named decision: `applies` is a cheap test, `verdict` the conclusion (or None).

    The shape every rule in Sentinel shares: a sentence for a class name (the `rule` a verdict
    records) and a docstring that says why. Remediation's rules answer with one method
    (`propose`, None to pass); triage keeps two because a verdict lists the rules that applied
    and passed (`rules_fired`), which is how a reader sees why an earlier rule did not decide.
    """

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
