"""Version 1 of the batch an agent posts to ``POST /api/v1/reports``.

Strict on purpose: ``false`` is not an int, unknown fields are refused, and every
observation names its ``kind`` so the union is resolved without guessing. A change that
an old agent or service could misread gets a new version module, never an edit here.

Every value is also one the database can store: integers within their column (64-bit signed,
32-bit for ranks), text without NUL, times that stay within the calendar once converted to
UTC. A batch the service could never store is refused here, by name, rather than resent for
ever; that narrowing changes the meaning of nothing that could be stored before.

Additions within version 1 widen what may be sent and change the meaning of nothing sent
before: an older agent never sends them and keeps working; an older service refuses them (422),
so the service is upgraded first. `LOG_SOURCES_ADDED`, `FIELDS_ADDED` and `KINDS_ADDED` list
them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Final, Literal, get_args
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from sentinel.wire.severity import Severity

WIRE_VERSION: Final = 1
MAX_OBSERVATIONS_PER_BATCH: Final = 5_000

# The storage limits: BIGINT and INTEGER columns are signed; PostgreSQL text holds no NUL.
INT64_MAX: Final = 2**63 - 1
INT32_MAX: Final = 2**31 - 1
_NO_NUL = r"^[^\x00]*$"
# A day inside the calendar's ends, so that no UTC offset carries a time past them.
EARLIEST: Final = datetime(1, 1, 2, tzinfo=UTC)
LATEST: Final = datetime(9999, 12, 30, tzinfo=UTC)

# Host and job names end up in Slurm hostlists, URLs and labels: keep them to a safe alphabet.
Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$")]
# The job's code version (a git sha, an image tag or digest): it is handed back to the job's
# launcher in an environment variable and named in scheduler comments, so a safe alphabet too.
CodeVersion = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,127}$")]
PciBusId = Annotated[str, StringConstraints(max_length=32, pattern=_NO_NUL)]
Text = Annotated[str, StringConstraints(max_length=65_536, pattern=_NO_NUL)]
ShortText = Annotated[str, StringConstraints(max_length=512, pattern=_NO_NUL)]
GpuIndex = Annotated[int, Field(ge=0, le=255)]
Count = Annotated[int, Field(ge=0, le=INT64_MAX)]
Rank = Annotated[int, Field(ge=0, le=INT32_MAX)]
Timestamp = Annotated[AwareDatetime, Field(ge=EARLIEST, le=LATEST)]


LogSource = Literal[
    "kernel",
    "nccl",
    "application",
    "rasdaemon",
    "mcelog",
    "edac",
    "infiniband",
    "devlink",
    "redfish",
    "dcgm",
    "ipmi",
    "cloud",
]
# Sources added to version 1 (see the module docstring).
LOG_SOURCES_ADDED: Final = frozenset(
    {"rasdaemon", "mcelog", "edac", "infiniband", "devlink", "redfish", "dcgm", "ipmi", "cloud"}
)
# Optional fields added to version 1's observations (model.field), absent from older agents.
FIELDS_ADDED: Final = frozenset(
    {
        "GpuSample.serial",
        "HeartbeatSummary.code_version",
        "HeartbeatSummary.startup_s",
        "HeartbeatSummary.checkpoint_save_s",
        "HeartbeatSummary.checkpoint_write_s",
    }
)
# Observation kinds added to version 1.
KINDS_ADDED: Final = frozenset({"job_end"})


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class _Observation(_Strict):
    id: UUID = Field(description="Unique per event, chosen by the agent; the dedup key.")
    observed_at: Timestamp


class NvlinkCounters(_Strict):
    crc_flit: Count = 0
    crc_data: Count = 0
    replay: Count = 0
    recovery: Count = 0


class GpuSample(_Observation):
    """One GPU's periodic NVML reading. ``None`` means the GPU does not support the field."""

    kind: Literal["gpu_sample"] = "gpu_sample"
    gpu_index: GpuIndex
    uuid: ShortText | None = None
    pci_bus_id: PciBusId | None = None
    serial: ShortText | None = Field(
        None, description="nvmlDeviceGetSerial: the board serial an RMA asks for (added in v1)."
    )
    lost: bool = Field(False, description="The handle failed or NVML said GPU_IS_LOST.")
    temperature_c: float | None = None
    power_w: float | None = None
    clock_event_reasons: Count | None = Field(
        None, description="nvmlDeviceGetCurrentClocksEventReasons bitmask (throttle reasons)."
    )
    utilization_pct: float | None = None
    memory_used_bytes: Count | None = None
    ecc_volatile_corrected: Count | None = None
    ecc_volatile_uncorrected: Count | None = None
    ecc_aggregate_corrected: Count | None = None
    ecc_aggregate_uncorrected: Count | None = None
    remapped_rows_correctable: Count | None = None
    remapped_rows_uncorrectable: Count | None = None
    remap_pending: bool | None = None
    remap_failure: bool | None = None
    retired_pages_sbe: Count | None = None
    retired_pages_dbe: Count | None = None
    nvlink: NvlinkCounters | None = None
    pcie_replay_count: Count | None = None


class XidEvent(_Observation):
    kind: Literal["xid"] = "xid"
    xid: Annotated[int, Field(ge=0, le=100_000)]
    gpu_index: GpuIndex | None = None
    pci_bus_id: PciBusId | None = None
    message: Text = ""
    pid: Count | None = None
    process_name: ShortText | None = None
    source: Literal["nvml", "kernel_log"] = "nvml"


# The GpuSample counters whose change between two samples is an event of its own (EccEvent).
EccCounter = Literal[
    "ecc_volatile_uncorrected",
    "ecc_volatile_corrected",
    "remapped_rows_uncorrectable",
    "remapped_rows_correctable",
    "remap_pending",
    "remap_failure",
    "retired_pages_dbe",
    "retired_pages_sbe",
]
ECC_COUNTERS: Final[tuple[EccCounter, ...]] = get_args(EccCounter)


class EccEvent(_Observation):
    """A change in ECC or row-remapping state noticed between two samples."""

    kind: Literal["ecc"] = "ecc"
    gpu_index: GpuIndex
    pci_bus_id: PciBusId | None = None
    counter: EccCounter
    previous: Count
    current: Count


class LogRecord(_Observation):
    """A log message (one line, or a multi-line one such as a traceback), as the host printed it.

    Either a knowledge pattern matched it (`pattern`, its `family` and `severity`), or it may
    matter though none did (`pattern` None, family `unmatched`: a kernel message at priority
    err or worse, a line that looks like an error), or it counts those a rate limit withheld
    (`pattern` None, family `suppressed`).
    """

    kind: Literal["log"] = "log"
    source: LogSource = Field(
        description="Where the record was read: a log (kernel, nccl, application) or a "
        "hardware-error source (rasdaemon's database, mcelog, EDAC counters in sysfs, "
        "InfiniBand ports in sysfs, devlink health reporters, DCGM's health watches and "
        "diagnostics, the BMC's SEL read with ipmitool, the BMC's log entries and its parts' "
        "health over Redfish; a cloud's scheduled maintenance from its instance metadata), "
        "written as that tool prints it (Redfish: the resource's JSON)."
    )
    pattern: ShortText | None = Field(None, description="The knowledge pattern that matched.")
    family: ShortText | None = None
    # Every member, as a Literal: the schema lists the values inline, as it always has.
    severity: Literal[Severity.CRITICAL, Severity.ERROR, Severity.WARNING, Severity.INFO] = (
        Severity.ERROR
    )
    message: Text
    path: ShortText | None = None
    gpu_index: GpuIndex | None = None
    pci_bus_id: PciBusId | None = None
    rank: Rank | None = None
    job_id: Name | None = None


class HeartbeatSummary(_Observation):
    """What one training rank on this host reported since the previous batch."""

    kind: Literal["heartbeat"] = "heartbeat"
    job_id: Name
    rank: Rank
    local_rank: Rank
    gpu_index: GpuIndex | None = None
    step: Count
    step_time_s: Annotated[float, Field(ge=0)] | None = None
    tokens: Count | None = None
    loss: float | None = None
    checkpoint_step: Count | None = None
    checkpoint_path: ShortText | None = None
    beats: Count = Field(1, description="Heartbeats folded into this summary.")
    last_beat_at: Timestamp
    world_size: Annotated[int, Field(ge=1, le=INT32_MAX)] | None = None
    code_version: CodeVersion | None = Field(
        None,
        description="The version of the training code the rank runs (SENTINEL_CODE_VERSION): "
        "a crash loop that came with a new version is rolled back to the last that trained.",
    )
    # The cadence advice's inputs, as the rank measured them (seconds, at most a week).
    startup_s: Annotated[float, Field(ge=0, le=7 * 86400)] | None = Field(
        None, description="From the launch (or restart) to the rank's first heartbeat."
    )
    checkpoint_save_s: Annotated[float, Field(ge=0, le=7 * 86400)] | None = Field(
        None, description="How long the last checkpoint save blocked training."
    )
    checkpoint_write_s: Annotated[float, Field(ge=0, le=7 * 86400)] | None = Field(
        None, description="How long the last checkpoint's background write took."
    )


class FlightRecorderDump(_Observation):
    """A flight-recorder dump the agent uploaded; the bytes travel separately."""

    kind: Literal["flight_recorder_dump"] = "flight_recorder_dump"
    job_id: Name | None = None
    rank: Rank
    file_name: ShortText
    size_bytes: Count
    sha256: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
    upload_id: ShortText | None = None


class AgentStatus(_Observation):
    kind: Literal["agent_status"] = "agent_status"
    version: ShortText
    collectors_ok: list[ShortText] = Field(default_factory=list, max_length=64)
    collectors_failing: list[ShortText] = Field(default_factory=list, max_length=64)
    outbox_depth: Count = 0
    outbox_dropped_samples: Count = 0


class JobEnd(_Observation):
    """A scheduler job ended on this host, as its epilog saw it (Slurm: SLURM_JOB_ID and the
    job script's exit code and signal, SLURM_JOB_EXIT_CODE2 ``3:0``)."""

    kind: Literal["job_end"] = "job_end"
    job_id: Name = Field(description="The scheduler's job id.")
    scheduler: Literal["slurm"] = "slurm"
    exit_code: Annotated[int, Field(ge=0, le=255)] | None = None
    signal: Annotated[int, Field(ge=0, le=255)] | None = None


Observation = Annotated[
    GpuSample
    | XidEvent
    | EccEvent
    | LogRecord
    | HeartbeatSummary
    | FlightRecorderDump
    | AgentStatus
    | JobEnd,
    Field(discriminator="kind"),
]

PERIODIC_KINDS: Final = frozenset({"gpu_sample", "heartbeat", "agent_status"})
EVENT_KINDS: Final = frozenset({"xid", "ecc", "log", "flight_recorder_dump", "job_end"})
# Critical observations skip the agent's send interval and wake triage at once.
CRITICAL_KINDS: Final = frozenset({"xid"})


class Batch(_Strict):
    """What an agent posts: one host, one monotonic sequence number, many observations."""

    version: Literal[1] = WIRE_VERSION
    host_id: Name
    agent_id: Name
    seq: Annotated[
        int, Field(ge=0, le=INT64_MAX, description="Per host, +1 for every batch, never reused.")
    ]
    sent_at: Timestamp
    observations: list[Observation] = Field(max_length=MAX_OBSERVATIONS_PER_BATCH)


class BatchAck(BaseModel):
    """The service's answer to a batch (202)."""

    host_id: str
    seq: int
    duplicate: bool = Field(description="The batch (host, seq) was stored before.")
    accepted: int = Field(description="Observations stored now.")
    duplicates: int = Field(description="Observations whose id was already stored.")
    received_at: datetime
