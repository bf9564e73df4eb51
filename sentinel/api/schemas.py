"""Response models of the read API (what the OpenAPI schema shows)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field


class HostOut(BaseModel):
    id: str
    agent_id: str
    first_seen: datetime
    last_seen: datetime
    last_seq: int
    health: str
    health_reason: str
    drain_state: str
    gpus: int


class GpuOut(BaseModel):
    gpu_index: int
    uuid: str | None
    pci_bus_id: str | None
    serial: str | None = Field(
        None, description="The board serial NVML reports: what an RMA asks for."
    )
    lost: bool
    remap_failure: bool
    temperature_c: float | None
    updated_at: datetime
    sample: dict[str, Any]


class HostDetail(HostOut):
    gpu_list: list[GpuOut]
    last_critical_at: datetime | None
    last_critical: str | None


class ObservationOut(BaseModel):
    id: str
    kind: str
    observed_at: datetime
    seq: int
    data: dict[str, Any]


class RankOut(BaseModel):
    rank: int
    host_id: str
    local_rank: int
    gpu_index: int | None
    step: int
    step_time_s: float | None
    checkpoint_step: int | None
    last_beat_at: datetime
    code_version: str | None = None
    checkpoint_version: str | None = None
    startup_s: float | None = None
    checkpoint_save_s: float | None = None
    checkpoint_write_s: float | None = None


class JobOut(BaseModel):
    id: str
    state: str
    first_seen: datetime
    last_seen: datetime
    world_size: int | None
    ranks_reporting: int
    hosts: int
    min_step: int | None
    max_step: int | None
    durable_checkpoint_step: int | None
    code_version: str | None = Field(
        None, description="The code version the job's latest heartbeat reported."
    )
    trained_version: str | None = Field(
        None,
        description="The code version the durable checkpoint was written under: the last "
        "version that trained (what a crash loop is rolled back to).",
    )
    startup_s: float | None = Field(
        None, description="Seconds from the launch to the first heartbeat (the slowest rank's)."
    )
    checkpoint_save_s: float | None = Field(
        None, description="Seconds the last checkpoint save blocked training (slowest rank)."
    )
    checkpoint_write_s: float | None = Field(
        None, description="Seconds the last checkpoint's background write took (slowest rank)."
    )


class JobDetail(JobOut):
    ranks: list[RankOut]


class FlightRecorderUploadOut(BaseModel):
    upload_id: str
    size_bytes: int
    duplicate: bool


class FlightRecorderAnalysisOut(BaseModel):
    """One analysis of a job's dumps: its verdict, or why there is none."""

    event_id: str = Field(
        description="The analysis's event, named by the job and the digest of its set of dumps "
        "(the id a verdict's incident names in its evidence)."
    )
    job_id: str
    kind: Literal["fr_verdict", "fr_error"] = Field(
        description="fr_verdict: the dumps were analysed; fr_error: the analysis failed."
    )
    observed_at: datetime = Field(description="When the analysis ended.")
    summary: str = Field(description="One line: the verdict and where, or the failure.")
    verdict: dict[str, Any] | None = Field(
        None, description="fr_verdict: the verdict as `sentinel fr analyze --json` prints it."
    )
    reason: str | None = Field(
        None,
        description="fr_error: why, as sentinel_flightrec_failures_total's reason label "
        "(unreadable_dump, memory, timeout...); the summary has the message.",
    )
    dumps: int | None = Field(None, description="fr_error: how many dumps it tried to read.")
