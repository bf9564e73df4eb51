"""Triage rules for hardware faults: the worst failing part on a host explains its symptoms
and its peers' timeouts (power and chassis, NVSwitch, PCIe switch, GPU, other host parts)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import ClassVar

from sentinel.knowledge.taxonomy import Category
from sentinel.triage.context import TriageContext
from sentinel.triage.rules.base import (
    _DRIVER_FAMILIES,
    CRITICAL,
    ERROR,
    GPU_PRECEDENCE,
    HOST_PART_CATEGORIES,
    UPSTREAM_CATEGORIES,
    Rule,
    _by_host,
    _confidence,
    _culprit_gpu,
    _same_host,
    _shadows,
    _symptom_note,
    _what,
    _where,
    _worst_group,
)
from sentinel.triage.signals import Signal
from sentinel.triage.verdict import Verdict


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
