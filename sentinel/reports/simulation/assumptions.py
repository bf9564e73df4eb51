"""What the simulation rests on: every assumption with its printed source, and the variants
(which of Sentinel's mechanisms each run has)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Final

from sentinel.incidents.settings import TriageSettings
from sentinel.remediation.pool_sizing import CoverHostsOutAtQuantile, PoolAdvice, Record
from sentinel.remediation.settings import RemediationSettings
from sentinel.reports import draws
from sentinel.triage.taxonomy import (
    CATEGORIES,
    LLAMA3_PLANNED_INTERRUPTIONS,
    LLAMA3_TABLE5,
    Category,
)

START = datetime(2026, 1, 5, tzinfo=UTC)
JOB_ID = draws.JOB

L3_PAPER = "Llama 3 paper (Dubey et al. 2024"
L3 = L3_PAPER + ", sec. 3.3.4, Table 5)"
BR = "ByteRobust (Wan et al. 2025, arXiv:2509.16293)"
KK = 'Kokolis et al. 2025, "Revisiting reliability in large-scale ML research clusters"'
NV = "NVIDIA Resiliency Extension (NVRx) docs"
PT = "PyTorch docs"
JUDGEMENT = "assumption (a judgement, no published figure)"
POOL_SOURCE = (
    "Little's law: hosts out = drains a day x repair time; M/G/inf (Palm's theorem): the count "
    f"out at once is Poisson around it; {BR} keeps warm standbys to replace evicted machines "
    "at once; how it sizes them is not cited here"
)

# Hardware faults that show a leading indicator before they interrupt the job, by category.
PRECURSOR_SHARES: Final[dict[Category, float]] = {
    Category.GPU_HBM_MEMORY: 0.4,  # rows pending remap, correctable ECC rising
    Category.GPU_THERMAL: 0.5,  # slowdowns that repeat
    Category.POWER_SUPPLY: 0.5,  # a PSU that lost redundancy
    Category.SERVER_CHASSIS: 0.5,  # a fan at 0 RPM
    Category.NIC: 0.3,  # symbol errors rising
    Category.FAULTY_GPU: 0.15,  # an XID asking for a reset at the next opportunity
}


@dataclass(frozen=True)
class Assumptions:
    """Every figure the simulation rests on; printed with its source."""

    days: float = 54.0
    hosts: int = 2048
    gpus_per_host: int = 8
    step_time_s: float = 6.0
    checkpoint_interval_s: float = 600.0
    checkpoint_save_s: float = 0.2
    checkpoint_write_s: float = 3.3
    requeue_s: float = 120.0
    init_s: float = 180.0
    node_wait_s: float = 600.0
    in_place_restart_s: float = 60.0
    standby_hosts: int = 2
    watchdog_s: float = 600.0
    manual_triage_s: float = 1800.0
    baseline_crash_loops: int = 2
    event_detection_s: float = 2.0
    sdc_detection_s: float = 300.0
    execute_s: float = 1.0
    human_response_s: float = 1800.0
    software_fix_s: float = 3600.0
    crash_after_restart_s: float = 120.0
    deterministic_bug_share: float = 0.3
    new_version_bug_share: float = 0.5
    data_position_bug_share: float = 0.5
    repeat_share: float = 0.15
    planned_job_level_share: float = 0.5
    repair_s: float = 2 * 86400.0
    spare_pool: int | None = None  # None: sized by the product's rule (pool_advice)
    spare_quantile: float = 0.99  # the rule's quantile (the product's default)
    spare_pool_scale: float = 1.0  # x the rule's pool (the sensitivity table varies it)
    precursor_scale: float = 1.0  # x PRECURSOR_SHARES (the sensitivity table varies it)
    remediation: RemediationSettings = field(default_factory=RemediationSettings)
    triage: TriageSettings = field(default_factory=TriageSettings)

    @property
    def restart_s(self) -> float:
        return self.requeue_s + self.init_s

    @property
    def hang_detection_s(self) -> float:
        # Stalled heartbeats are a hang after the watchdog's threshold (its own rule: the
        # heartbeat intervals, 3 step times, twice the blocking save), seen at the next
        # heartbeat; a provisional verdict settles.
        t = self.triage
        stalled = t.stall_threshold_s(self.step_time_s, self.checkpoint_save_s)
        return stalled + t.heartbeat_interval_s + self.remediation.settle_s

    @property
    def pool_advice(self) -> PoolAdvice:
        """The product's sizing rule on the fleet's record: Table 5's faults that take a host
        out of the job (recurrences included) over the run, each out ``repair_s``."""
        leaving = sum(n for c, (n, _) in LLAMA3_TABLE5.items() if CATEGORIES[c].host_must_leave)
        rule = CoverHostsOutAtQuantile(self.spare_quantile, self.repair_s, min_repairs=1)
        return rule.advise(Record(leaving, self.days * 86400.0))

    @property
    def pool_size(self) -> int:
        if self.spare_pool is not None:
            return self.spare_pool
        return round(self.pool_advice.recommended * self.spare_pool_scale)

    def precursor_share(self, category: Category) -> float:
        return min(1.0, PRECURSOR_SHARES.get(category, 0.0) * self.precursor_scale)

    def lines(self) -> list[str]:
        """Each assumption with its value and its source (the same for every variant)."""
        s = {f.name: getattr(self, f.name) for f in fields(self)}
        mttf = self.days * 86400 / sum(n for n, _ in LLAMA3_TABLE5.values())
        sw = self.remediation.swap
        shares = ", ".join(f"{c.value} {v:.0%}" for c, v in PRECURSOR_SHARES.items())
        rows = [
            ("job", f"{self.hosts} hosts x {self.gpus_per_host} GPUs, {self.days:g} days", L3),
            ("faults", f"Table 5's 419 unexpected ({mttf / 3600:.2f} h MTTF) + "
             f"{LLAMA3_PLANNED_INTERRUPTIONS} planned, at uniformly random times", L3),
            ("planned interruptions", f"{s['planned_job_level_share']:.0%} job-level "
             "(configuration or dataset updates): where the launcher does in-place restarts, "
             "the operator restarts the ranks in place (POST /api/v1/jobs/{id}/restart-in-place"
             f", {s['in_place_restart_s']:g} s) at the job's next checkpoint, as the product "
             "does by default (held until a durable one, at most "
             f"{self.remediation.planned_checkpoint_wait_s:g} s): no work lost, and no time "
             "lost waiting, since the job trains meanwhile; else requeued; the rest host-level "
             "(firmware upgrades): requeued (requeue + init) as today",
             f"{JUDGEMENT}; {L3_PAPER}, sec. 3.3.4) names both kinds, 'automated maintenance "
             "operations such as firmware upgrades or operator-initiated operations like "
             "configuration or dataset updates', without counts"),
            ("step time", f"{s['step_time_s']:g} s", JUDGEMENT + " (405B, 16M-token batches)"),
            ("checkpoint interval (as configured)", f"{s['checkpoint_interval_s']:g} s",
             JUDGEMENT + "; Llama 3 gives none"),
            ("checkpoint save, blocking part", f"{s['checkpoint_save_s']:g} s",
             "the copy to host memory of the largest state a GPU holds in "
             f"{L3_PAPER}, sec. 3.3.1: 1 MB to 4 GB a GPU), 4 GB at 25 GB/s (H100's PCIe Gen5 "
             "x16: 64 GB/s a direction, NVIDIA H100 datasheet), rounded up; 405B params x 16 B "
             "of weights and Adam state / 16,384 GPUs is 0.4 GB a GPU, ten times less; "
             f"{PT}, DCP async_save: the state is copied to CPU buffers, then written in the "
             f"background; {NV}: async and local checkpointing; {BR}: near-zero checkpoint "
             "overhead"),
            ("checkpoint write, in the background", f"{s['checkpoint_write_s']:g} s: the "
             "cadence advice never checkpoints more often (the next save waits for it)",
             f"6.5 TB (405B params x 16 B) at Tectonic's 2 TB/s sustained ({L3_PAPER}, "
             "sec. 3.3.1: 2 TB/s sustained, 7 TB/s peak)"),
            ("requeue (scheduler, same nodes)", f"{s['requeue_s']:g} s", JUDGEMENT),
            ("init (NCCL at 16k ranks + checkpoint load)", f"{s['init_s']:g} s", JUDGEMENT),
            ("wait for a replacement host without a spare", f"{s['node_wait_s']:g} s",
             JUDGEMENT + f"; {BR} keeps warm standbys to avoid it"),
            ("hot spares", f"a pool of {self.pool_size} validated hosts; each spare taken is "
             "back once the host it replaced is repaired; the policy is told the pool's free "
             "spares as the scheduler's idle hosts, so an exclusion that finds the pool empty "
             "is escalated (WaitWhenNoSpareHost: a human drains the host, the job waits for a "
             "node from the queue); with the pool, each swap is decided by "
             f"the real DEFAULT_SWAP_POLICY (at most {sw.max_per_hour} an hour and "
             f"{sw.max_per_job} a job in {sw.job_window_s / 3600:g} h, refused while no spare "
             "is free and then decided again at the first checkpoint after one is back)",
             f"{JUDGEMENT}; {BR}: warm standby; {NV}: hot spares"),
            ("hot-spare pool size", self._pool_line(), f"the product's rule ({POOL_SOURCE})"),
            ("in-place restart (processes kept, no requeue)", f"{s['in_place_restart_s']:g} s "
             "where the policy decides restart_in_place (a software error, a hang or an "
             "unknown failure with no host to blame, once per fault; the same software error "
             "again is escalated as a crash loop, another fault requeued), and for a restart "
             "held while the fabric was down, once it is quiet",
             f"{JUDGEMENT}; {NV}: in-process and in-job restart, warm spares; an in-process "
             "restart skips the new scheduler job, the container, the interpreter, the imports "
             "and the CUDA context (no time published)"),
            ("standby hosts in the job's allocation", f"{s['standby_hosts']} (sbatch -N "
             f"{self.hosts + s['standby_hosts']} for {self.hosts} hosts' ranks, their GPUs idle "
             "and not charged); with in-place restarts on, an exclusion is carried out in the "
             f"job onto one (no requeue: init, {s['init_s']:g} s: every host's launcher restarts "
             "its command, the standby loads the checkpoint); the excluded host stays in the "
             "allocation, drained, and is a standby again once repaired; a requeue gives the "
             "job its full allocation again (the hosts still out are then found like excluded "
             "hosts, from the spare pool or the queue); none free: "
             "the requeue, a hot spare from the pool if one is free (requeue + init), else the "
             "wait for a node; a proactive swap is carried out in the job the same way "
             "onto a free standby (init, the pool's spare kept), else it is the requeue",
             f"the count {JUDGEMENT}; the mechanism the product's (remediation.in_place, "
             f"docs/launcher.md) and {NV}'s: ft_launcher --nnodes MIN:MAX admits the nodes "
             "past MIN as standbys, promoted to replace failed ones without resizing the job"),
            ("baseline detection + triage", f"NCCL watchdog {s['watchdog_s']:g} s + manual "
             f"triage {s['manual_triage_s']:g} s; the human always finds the host",
             "PyTorch ProcessGroupNCCL default timeout (600 s); triage time " + JUDGEMENT),
            ("sentinel detection", f"{s['event_detection_s']:g} s from events, "
             f"{self.hang_detection_s:g} s for hangs, {s['sdc_detection_s']:g} s for SDC",
             "DESIGN.md targets, measured by benchmarks/detect_to_restart.py; SDC " + JUDGEMENT),
            ("escalation", f"waits {s['human_response_s']:g} s for a human",
             f"{JUDGEMENT}; {L3_PAPER}, sec. 3.3.4): 'significant manual intervention' 3 times "
             "in 54 days, no response time published"),
            ("software bugs", f"{s['deterministic_bug_share']:.0%} repeat after a restart "
             f"({s['crash_after_restart_s']:g} s in) until fixed ({s['software_fix_s']:g} s); "
             f"{s['new_version_bug_share']:.0%} of those came with the code version deployed "
             "at the job's last restart, before any checkpoint on it: the repeat is rolled back "
             "to the version that trained (the policy's roll_back, from the heartbeats' code "
             "version), an in-place restart where those are on, else a requeue; the rest (but "
             "those tied to the data, below), and a repeat after the rollback, are escalated",
             f"{JUDGEMENT}; {BR}: a user-space error traced to the code "
             "(a Python exception) is answered by rolling the code back or hot-updating it in "
             "place, user code changing all through a months-long run"),
            ("software bugs tied to the data", f"{s['data_position_bug_share']:.0%} of the "
             "repeating bugs not from a new version fail at one step (a bad batch, a loss spike "
             "to NaN): they repeat when the restarted job reaches that step again; told the "
             "step the ranks last reported, the policy decides skip_data on the repeat (restart "
             "from the checkpoint skipping the batches up to that step + "
             f"{self.remediation.skip_data_margin_steps}), an in-place restart where those are "
             "on, else a requeue, and the bug does not come back; a repeat after the skip is "
             "escalated",
             f"the share {JUDGEMENT}; the remedy PaLM's (Chowdhery et al. 2022, sec. 5.1): ~20 "
             "loss spikes, each met by restarting ~100 steps before it and skipping ~200-500 "
             "batches; 'the loss did not spike again at the same point'"),
            ("a fault left in the job", f"fails the restart again {s['crash_after_restart_s']:g}"
             " s in (a faulty host kept, a fabric restarted before it is quiet)", JUDGEMENT),
            ("repeat offenders", f"{s['repeat_share']:.0%} of host faults on a host that "
             f"failed before; an excluded host is out {s['repair_s'] / 3600:g} h",
             f"{KK} (lemon nodes); share and repair time {JUDGEMENT}"),
            ("evidence", "host-hardware faults: 90% with their own evidence, 7% only the "
             "culprit's ranks stopping first, 3% nothing pointing at it", JUDGEMENT),
            ("NIC faults", "of those with their own evidence, half a link that stays down, half "
             "a link that flapped and is ACTIVE again (the agent's 'link flapped' report: the "
             "policy's link_flapped); a flap is transient, so an in-place restart clears it "
             "and the same link again excludes its host", JUDGEMENT),
            ("precursors (proactive swap)", f"{shares} (x{self.precursor_scale:g}), seen "
             "before the next checkpoint", f"{KK} and {BR} report proactive health checks; "
             "the shares are an " + JUDGEMENT),
        ]  # fmt: skip
        return [f"{name}: {value}  [{source}]" for name, value, source in rows]

    def _pool_line(self) -> str:
        advice = self.pool_advice
        if self.spare_pool is not None:
            return f"{self.spare_pool}, set (the rule would give {advice.recommended})"
        scale = f" x{self.spare_pool_scale:g}" if self.spare_pool_scale != 1 else ""
        return f"{self.pool_size}{scale}: {advice.rule}: {advice.reason}"


@dataclass(frozen=True)
class Mechanisms:
    """What a run has: Sentinel at all, and each of issue 17's mechanisms."""

    sentinel: bool = True
    proactive_swap: bool = False
    hot_spares: bool = False
    cadence: bool = False
    in_place: bool = False


VARIANTS: Final = (
    ("watchdog + manual triage", Mechanisms(sentinel=False)),
    ("Sentinel reactive (today)", Mechanisms()),
    ("+ proactive swap", Mechanisms(proactive_swap=True)),
    ("+ hot spares", Mechanisms(hot_spares=True)),
    ("+ checkpoint cadence advice", Mechanisms(cadence=True)),
    ("+ in-place restart", Mechanisms(in_place=True)),
    ("all together", Mechanisms(True, True, True, True, True)),
)
