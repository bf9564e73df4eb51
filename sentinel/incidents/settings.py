"""Incident settings: triage's windows and loops (``triage``) and when a host is silent or
healthy again (``health``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class HealthSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    silent_after_s: float = Field(
        60.0, gt=0, description="A host whose agent sent nothing for this long is 'silent'."
    )
    critical_clear_s: float = Field(
        3600.0,
        gt=0,
        description="A critical event stops marking its host unhealthy after this long, "
        "unless the condition is still present in the latest samples.",
    )


# A rank stands still for its blocking checkpoint saves: it is stalled only once it has stood
# still this many times its job's longest measured save (and the heartbeat threshold).
SAVES_PER_STALL = 2.0


class TriageSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    window_s: float = Field(
        900.0, gt=0, description="Signals of one job this close together belong to one incident."
    )
    lookback_s: float = Field(
        120.0, ge=0, description="How far before an incident's opening its evidence may lie."
    )
    poll_s: float = Field(0.25, gt=0, description="How often the leader looks for new events.")
    heartbeat_interval_s: float = Field(
        10.0, gt=0, description="How often agents report their ranks' heartbeats."
    )
    stall_intervals: float = Field(
        1.5,
        gt=0,
        description="A rank whose step has not moved for this many heartbeat intervals (or "
        "3 median step times, or twice its job's longest measured blocking checkpoint save, "
        "if longer) is stalled: a hang, opened at once.",
    )
    straggler_factor: float = Field(
        1.5, gt=1, description="A rank whose step time stays this far above the median straggles."
    )
    fr_settle_s: float = Field(
        10.0,
        gt=0,
        description="Analyse a job's flight-recorder dumps once none came for so long.",
    )
    fr_workers: int = Field(
        2,
        ge=1,
        le=64,
        description="Processes that parse one job's flight-recorder dumps, besides the job's "
        "own process; the leader analyses one job at a time.",
    )
    fr_memory_budget_bytes: int = Field(
        8 * 1024**3,
        ge=0,
        description="Address space each process of a flight-recorder analysis may take beyond "
        "its imports; a job over it fails alone (an fr_error event, reason 'memory'). 0: none.",
    )
    fr_timeout_s: float = Field(
        300.0, gt=0, description="A flight-recorder analysis still running after this long fails."
    )
    resolve_fraction: float = Field(
        0.9, gt=0, le=1, description="Share of ranks that must advance to resolve an incident."
    )
    progress_sample_s: float = Field(
        60.0,
        gt=0,
        description="How often a training job's progress (its median rank's step) is sampled "
        "for goodput accounting; a restart or a resumption is sampled at once.",
    )
    max_verdicts: int = Field(
        16,
        ge=1,
        description="Most verdicts (the primary and unrelated secondary ones) one evaluation of "
        "a job gives: several faults may be open in one job at once.",
    )
    accountable_s: float = Field(
        60.0,
        gt=0,
        description="A hard-fault event still neither linked to an incident nor dismissed this "
        "long after triage first weighed it is listed as unaccounted.",
    )
    lag_alert_s: float = Field(
        30.0,
        gt=0,
        description="Triage lag (oldest event waiting to be weighed) above which an alert fires.",
    )

    def stall_threshold_s(self, median_step_s: float | None, save_s: float | None) -> float:
        """How long a rank's step may stand still before it is stalled: the heartbeat
        intervals, 3 step times, and twice the job's longest measured blocking checkpoint save
        (no beats come while a synchronous save runs; a save that runs slow, the storage busy,
        is still not a hang), whichever is longest. The watchdog's rule, and the goodput
        simulation's time to see a hang."""
        base = self.stall_intervals * self.heartbeat_interval_s
        return max(base, 3 * (median_step_s or 0.0), SAVES_PER_STALL * (save_s or 0.0))
