"""Remediation settings (the ``remediation`` section): the mode, the caps, and proactive swaps."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class SwapSettings(BaseModel):
    """Proactive swap (issue 17): a host whose parts warn is swapped for a hot spare at the
    job's next durable checkpoint, within caps."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="Decide swaps on degraded findings.")
    window_s: float = Field(
        3600.0, gt=0, description="How far back leading indicators are read (a rate's window)."
    )
    ecc_corrected_per_window: int = Field(
        1000, ge=1, description="Correctable ECC errors on one GPU within window_s: degraded."
    )
    thermal_repeats: int = Field(
        3, ge=1, description="Thermal slowdowns of one host within window_s: degraded."
    )
    link_error_repeats: int = Field(
        2, ge=1, description="InfiniBand error-rate warnings of one host within window_s."
    )
    max_per_hour: int = Field(2, ge=0, description="Swaps decided per hour, fleet-wide.")
    max_per_job: int = Field(2, ge=0, description="Swaps decided per job within job_window_s.")
    job_window_s: float = Field(86400.0, gt=0)
    spares: list[str] = Field(
        default_factory=list,
        description="Hosts Sentinel may hold as hot spares, in the order it takes them.",
    )
    pool_size: int = Field(
        0, ge=0, description="Spares to hold; 0: none (no swap is decided without one)."
    )
    reservation: str = Field(
        "sentinel-spares",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
        description="The scheduler reservation that holds the spares.",
    )
    healthy_within_s: float = Field(
        300.0, gt=0, description="A spare is healthy if its agent reported this recently."
    )
    sizing_window_s: float = Field(
        14 * 86400.0,
        gt=0,
        description="The recommended pool size reads the hosts drained (exclusions and swaps) "
        "and their repairs over this window.",
    )
    sizing_quantile: float = Field(
        0.99,
        gt=0,
        lt=1,
        description="The recommended pool covers the hosts out at once at this quantile "
        "(Poisson, mean drains a day x repair time).",
    )
    repair_s: float = Field(
        2 * 86400.0,
        gt=0,
        description="How long a drained host takes to return, until the record measures it.",
    )
    sizing_min_repairs: int = Field(
        3, ge=1, description="Repairs measured in the window before their mean replaces repair_s."
    )
    planned_s: float = Field(
        900.0,
        gt=0,
        description="The swap's interruption of the job is announced as maintenance this "
        "long, so that it counts as planned.",
    )


class RemediationSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: Literal["auto", "approve", "dry_run"] = Field(
        "auto",
        description="auto: execute decisions at once; approve: wait for an operator; dry_run: "
        "record and show decisions, execute nothing.",
    )
    executor: Literal["scheduler", "pull"] = Field(
        "scheduler",
        description="scheduler: Sentinel carries decisions out through the scheduler adapter; "
        "pull: another system polls GET /api/v1/decisions?status=pending and acknowledges.",
    )
    settle_s: float = Field(
        20.0,
        ge=0,
        description="Wait this long before deciding on a provisional verdict (a watchdog "
        "timeout, unknown) in case its cause is still on its way.",
    )
    # At 16,384 GPUs a job fails every ~3 h (Llama 3), so the cap is per hour: it stops a
    # burst (a crash loop, a bad batch of hosts), not the ordinary rate of failures.
    max_restarts: int = Field(4, ge=1, description="Restarts per job in restart_window_s.")
    restart_window_s: float = Field(3600.0, gt=0)
    software_bug_restarts: int = Field(
        1, ge=0, description="Restarts for the same software error before escalating."
    )
    unknown_restarts: int = Field(1, ge=0)
    # PaLM (Chowdhery et al. 2022, sec. 5.1) restarted ~100 steps before a loss spike and
    # skipped ~200-500 data batches; the spikes did not recur.
    skip_data_tolerance_steps: int = Field(
        5,
        ge=0,
        description="The same software error again within this many steps of where it failed "
        "last time is tied to the data there: the job restarts skipping those batches.",
    )
    skip_data_margin_steps: int = Field(
        200,
        ge=0,
        description="A data skip covers the batches from the durable checkpoint up to this "
        "many steps past the failing one.",
    )
    max_drains_per_hour: int = Field(8, ge=0, description="Hosts drained per hour, fleet-wide.")
    max_reboots_per_hour: int = Field(
        4, ge=0, description="Drained hosts rebooted per hour, fleet-wide; 0: never."
    )
    max_gpu_resets_per_hour: int = Field(
        8, ge=0, description="GPUs reset on drained hosts per hour, fleet-wide; 0: never."
    )
    fabric_quiet_s: float = Field(
        120.0, gt=0, description="A held restart waits for this long without link errors."
    )
    lease_s: float = Field(
        300.0,
        gt=0,
        description="An execution not recorded this long after its claim is taken to have "
        "died with its process; the remediation loop takes the decision over.",
    )
    max_attempts: int = Field(
        3, ge=1, description="Executions of one decision (claims) before it fails."
    )
    in_place: bool = Field(
        False,
        description="Restart in place (the launcher restarts the ranks on the same hosts, no "
        "requeue) for a transient fault with no host to blame, once per fault (category and "
        "signature) in restart_window_s; needs a launcher that reads the advice "
        "(sentinel-agent launch).",
    )
    in_place_ack_s: float = Field(
        180.0,
        gt=0,
        description="How long an in-place restart waits for the launcher's acknowledgment "
        "(POST /api/v1/decisions/{id}/ack) before the job is requeued as without it.",
    )
    planned_checkpoint_wait_s: float = Field(
        900.0,
        gt=0,
        description="An operator's restart in place at the next checkpoint (the default) waits "
        "at most this long for the job's next durable checkpoint, the ranks asked to save one "
        "(checkpoint_now in the advice); then it restarts anyway, losing the steps since the "
        "last durable one (its reason says how many).",
    )
    swap: SwapSettings = Field(default_factory=SwapSettings)
