"""Typed settings for the scheduler adapter (the ``scheduler`` section of the settings tree)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, SecretStr, model_validator

from sentinel.schedulers.hostlist import HostlistError, expand


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SlurmSettings(_Section):
    bin_dir: Path | None = Field(
        None, description="Folder with scontrol, squeue and sinfo; default: found on PATH."
    )
    conf: Path | None = Field(
        None, description="SLURM_CONF for the commands; default: Slurm's own default."
    )
    timeout_s: float = Field(15.0, gt=0, le=300, description="Per command.")
    fast_requeue: bool = Field(
        True,
        description="Let a requeued job start 2 s after its old run is gone instead of after "
        "Slurm's cred_expire (120 s by default), which idles the whole job.",
    )
    nvidia_smi: str = Field(
        "nvidia-smi",
        min_length=1,
        description="nvidia-smi as the nodes find it, for a GPU reset run there with srun.",
    )


class WebhookSettings(_Section):
    url: AnyHttpUrl
    secret: SecretStr | None = Field(None, description="Shared HMAC-SHA256 key.")
    secret_file: Path | None = Field(None, description="File holding the shared key.")
    timeout_s: float = Field(5.0, gt=0, le=120, description="Per attempt.")
    retries: int = Field(4, ge=0, le=20, description="Attempts after the first.")
    backoff_initial_s: float = Field(0.5, ge=0)
    backoff_max_s: float = Field(30.0, ge=0, description="Also caps a receiver's Retry-After.")

    @model_validator(mode="after")
    def _one_secret(self) -> WebhookSettings:
        if (self.secret is None) == (self.secret_file is None):
            raise ValueError("webhook: give exactly one of 'secret' or 'secret_file'")
        if self.secret is not None and len(self.secret.get_secret_value()) < 16:
            raise ValueError("webhook: the secret needs at least 16 characters")
        return self

    def secret_bytes(self) -> bytes:
        """Read at start-up, so that a missing file stops the service with a clear message."""
        if self.secret is not None:
            return self.secret.get_secret_value().encode()
        assert self.secret_file is not None
        try:
            value = self.secret_file.read_bytes().strip()
        except OSError as exc:
            raise ValueError(f"webhook secret_file {self.secret_file}: {exc}") from exc
        if len(value) < 16:
            raise ValueError(f"webhook secret_file {self.secret_file}: needs 16+ characters")
        return value


class FakeSettings(_Section):
    nodes: str = Field("node[1-8]", description="Slurm hostlist of the fake cluster's nodes.")
    gpus_per_node: int = Field(8, ge=0)
    jobs: dict[str, str] = Field(
        default_factory=dict,
        description="Jobs the fake cluster runs from the start: job id -> Slurm hostlist of "
        "the nodes its allocation holds (some may run no rank: standby hosts).",
    )

    @model_validator(mode="after")
    def _hostlist(self) -> FakeSettings:
        try:
            nodes = set(expand(self.nodes))
        except HostlistError as exc:
            raise ValueError(f"fake.nodes: {exc}") from exc
        for job, hosts in self.jobs.items():
            try:
                unknown = sorted(set(expand(hosts)) - nodes)
            except HostlistError as exc:
                raise ValueError(f"fake.jobs[{job}]: {exc}") from exc
            if unknown:
                raise ValueError(f"fake.jobs[{job}]: not in fake.nodes: {unknown}")
        return self


class SchedulerSettings(_Section):
    kind: Literal["dryrun", "slurm", "webhook", "fake"] = Field(
        "dryrun", description="dryrun changes nothing and only records what it would do."
    )
    slurm: SlurmSettings = Field(default_factory=SlurmSettings)
    webhook: WebhookSettings | None = None
    fake: FakeSettings = Field(default_factory=FakeSettings)
    poll_nodes_s: float = Field(
        30.0,
        gt=0,
        description="How often the leader reads the scheduler's node states (down, drained and "
        "why, not responding, maintenance) as evidence for triage.",
    )

    @model_validator(mode="after")
    def _webhook_configured(self) -> SchedulerSettings:
        if self.kind == "webhook" and self.webhook is None:
            raise ValueError("scheduler.kind is 'webhook' but scheduler.webhook is not set")
        return self
