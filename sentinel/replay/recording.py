"""The recording format (timestamped wire batches, log lines as hosts printed them, and API
calls) and the expectation file."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    model_validator,
)

from sentinel.wire import Batch


class ApiCall(BaseModel):
    model_config = ConfigDict(extra="forbid")

    method: Literal["GET", "POST", "DELETE"]
    path: str
    role: Literal["agent", "operator", "viewer"] = "operator"
    body: dict[str, Any] | None = None


# Where a host's lines are written, each read by the agent's collector for it:
# kernel: its kernel log; training: one of its training logs (`file`); mcelog: mcelog's log;
# ipmi_sel: entries its BMC adds to the SEL, as `ipmitool sel elist` prints them; redfish:
# LogEntry resources its BMC adds to its Redfish event log, one JSON object a line; infiniband:
# values written to files under /sys/class/infiniband, one `<path> <value>` a line
# ("mlx5_3/ports/1/state 1: DOWN"); dcgm_health: what `dcgmi health -c -j` answers from then on.
PrintedLog = Literal[
    "kernel", "training", "mcelog", "ipmi_sel", "redfish", "infiniband", "dcgm_health"
]


class Printed(BaseModel):
    """Lines a host printed at once into its kernel log or one of its training logs, raw (or
    another source's text as its tool or file has it, see `PrintedLog`).

    The replay writes them into real files (or the BMC's SEL, sysfs, dcgmi's answer) that the
    agent's own collectors read, so what reaches the service is what an agent would have
    shipped (see `sentinel.replay.agent`).
    """

    model_config = ConfigDict(extra="forbid")

    host: str
    log: PrintedLog
    # A training log's file name (a job may write several); the kernel log is one per host.
    file: str | None = Field(None, pattern=r"^\w[\w.-]*$")
    text: str

    @model_validator(mode="after")
    def _file_names_a_training_log(self) -> Printed:
        if (self.file is None) == (self.log == "training"):
            raise ValueError("a training log needs its file name; no other log has one")
        return self


class Line(BaseModel):
    """One line of recording.jsonl: at a time, a batch arrives, a host prints log lines,
    someone calls the API, or the scheduler's view of the nodes changes."""

    model_config = ConfigDict(extra="forbid")

    at: AwareDatetime
    batch: dict[str, Any] | None = None
    lines: Printed | None = None
    api: ApiCall | None = None
    nodes: str | None = Field(
        None,
        description="What `scontrol show nodes --json` (or `sinfo -N --json`) prints from then "
        "on, read by the leader's scheduler view every scheduler.poll_nodes_s.",
    )

    # The batch as JSON, encoded (and validated) once when the recording is loaded.
    _batch_json: str | None = PrivateAttr(default=None)

    @property
    def batch_json(self) -> str:
        if self._batch_json is None:
            self._batch_json = json.dumps(self.batch)
        return self._batch_json

    @batch_json.setter
    def batch_json(self, value: str) -> None:
        self._batch_json = value


class ExpectedIncident(BaseModel):
    model_config = ConfigDict(extra="forbid")

    category: str
    culprit_host: str | None = None
    culprit_gpu: str | None = None
    job_id: str | None = None
    by_s: float = Field(
        description="Seconds after the recording's first line by which it must be detected."
    )
    after_s: float = Field(0.0, description="...and not before this (no premature verdict).")
    reason_has: list[str] = Field(
        default_factory=list, description="Words the verdict's reason must hold (the part named)."
    )


class ExpectedDecision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Literal["none", "restart", "exclude_and_restart", "hold", "escalate"]
    exclude_hosts: list[str] = Field(default_factory=list)
    by_s: float


class Expectation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    description: str
    run_for_s: float = Field(
        30.0,
        description="Virtual time to run past the last line (keep it under the 60 s after "
        "which hosts that stopped reporting count as silent: the recording has ended).",
    )
    heartbeat_interval_s: float = 10.0
    incidents: list[ExpectedIncident]
    decisions: list[ExpectedDecision] | None = Field(
        None, description="When given: exactly these decisions, in this order."
    )
    exact: bool = Field(True, description="No incident beyond the expected ones may open.")


class RecordingError(ValueError):
    pass


def recording_path(case_dir: Path) -> Path:
    for name in ("recording.jsonl", "recording.jsonl.gz"):
        if (case_dir / name).exists():
            return case_dir / name
    raise RecordingError(f"{case_dir}: no recording.jsonl(.gz)")


def load_lines(path: Path) -> list[Line]:
    lines: list[Line] = []
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as f:
        for n, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                line = Line.model_validate(json.loads(raw))
                if line.batch is not None:
                    line.batch_json = json.dumps(line.batch)
                    Batch.model_validate_json(line.batch_json)
            except (json.JSONDecodeError, ValidationError) as exc:
                raise RecordingError(f"{path}:{n}: {exc}") from None
            lines.append(line)
    if not lines:
        raise RecordingError(f"{path}: empty recording")
    return sorted(lines, key=lambda x: x.at)


def load_expectation(path: Path) -> Expectation:
    try:
        return Expectation.model_validate(yaml.safe_load(path.read_text()))
    except (yaml.YAMLError, ValidationError) as exc:
        raise RecordingError(f"{path}: {exc}") from None
