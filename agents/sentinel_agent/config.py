"""The agent's typed configuration: a YAML file, overridden by SENTINEL_AGENT_* variables.

Nested fields use a double underscore: ``SENTINEL_AGENT_SERVICE__URL=http://...`` sets
``service.url``. Values are parsed as YAML scalars, so ``...__ENABLED=false`` is a bool.
Everything is validated once at start-up; nothing is read at import time.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, HttpUrl, field_validator, model_validator

from sentinel.wire.v1 import Name
from sentinel_agent.collectors.cloud import Provider as CloudProvider
from sentinel_agent.collectors.edac import DEFAULT_ROOT as EDAC_ROOT
from sentinel_agent.collectors.infiniband import DEFAULT_ROOT as INFINIBAND_ROOT
from sentinel_agent.collectors.infiniband import DEFAULT_THRESHOLDS as IB_THRESHOLDS
from sentinel_agent.collectors.ipmi import Bmc
from sentinel_agent.collectors.logs import RateLimit
from sentinel_agent.collectors.mcelog import DEFAULT_PATH as MCELOG_LOG
from sentinel_agent.collectors.rasdaemon import DEFAULT_PATH as RASDAEMON_DB
from sentinel_agent.metrics import DEFAULT_PORT, SENTINEL, MetricsMode

ENV_PREFIX = "SENTINEL_AGENT_"
MiB = 1024 * 1024


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ServiceConfig(_Section):
    url: HttpUrl
    token: str | None = Field(None, min_length=1, repr=False)
    token_file: Path | None = None
    timeout_s: float = Field(10.0, gt=0)
    compress: bool = True

    @model_validator(mode="after")
    def _one_token_source(self) -> ServiceConfig:
        if (self.token is None) == (self.token_file is None):
            raise ValueError("set exactly one of service.token and service.token_file")
        return self

    def read_token(self) -> str:
        if self.token is not None:
            return self.token
        assert self.token_file is not None
        return self.token_file.read_text().strip()

    @property
    def base_url(self) -> str:
        return str(self.url).rstrip("/")


class Intervals(_Section):
    gpu_s: float = Field(10.0, gt=0, description="NVML sampling.")
    logs_s: float = Field(1.0, gt=0, description="Kernel and training log tailing.")
    heartbeat_s: float = Field(5.0, gt=0, description="Folding rank heartbeats into summaries.")
    flight_recorder_s: float = Field(2.0, gt=0, description="Looking for new dumps.")
    status_s: float = Field(60.0, gt=0, description="AgentStatus observations.")
    hardware_s: float = Field(
        10.0, gt=0, description="rasdaemon, mcelog, EDAC, InfiniBand, devlink health, the IPMI SEL."
    )
    redfish_s: float = Field(30.0, gt=0, description="Polling the BMC over Redfish.")
    send_s: float = Field(5.0, gt=0, description="Shipping non-critical observations.")


class NvmlCollectorConfig(_Section):
    enabled: bool = True
    provider: Literal["nvml", "fake"] = "nvml"
    scenario: Path | None = Field(None, description="Scenario file for the fake provider.")
    xid_events: bool = True

    @model_validator(mode="after")
    def _fake_needs_scenario(self) -> NvmlCollectorConfig:
        if self.enabled and self.provider == "fake" and self.scenario is None:
            raise ValueError("collectors.nvml.scenario is required with provider: fake")
        return self


class UnmatchedLimit(_Section):
    """How many messages no pattern knows (errors by their priority or their look) are
    shipped, per source: `per_s` sustained, up to `burst` at once; a count of the rest is."""

    per_s: float = Field(RateLimit.per_s, gt=0)
    burst: int = Field(RateLimit.burst, ge=1)

    def limit(self) -> RateLimit:
        return RateLimit(per_s=self.per_s, burst=self.burst)


class KernelLogConfig(_Section):
    enabled: bool = True
    path: Path = Path("/dev/kmsg")
    from_start: bool = False
    unmatched: UnmatchedLimit = Field(default_factory=UnmatchedLimit)


class TrainingLogsConfig(_Section):
    enabled: bool = False
    paths: list[str] = Field(default_factory=list, description="Files or glob patterns.")
    from_start: bool = False
    unmatched: UnmatchedLimit = Field(default_factory=UnmatchedLimit)


class HeartbeatConfig(_Section):
    enabled: bool = True
    address: str = Field(
        "unix:///run/sentinel-agent/heartbeat.sock",
        description="unix:///path (datagram socket) or udp://127.0.0.1:PORT.",
    )

    @field_validator("address")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if not value.startswith(("unix://", "udp://")):
            raise ValueError("must start with unix:// or udp://")
        return value


class FlightRecorderConfig(_Section):
    enabled: bool = True
    prefix: str = Field(
        "/tmp/nccl_trace_rank_",  # noqa: S108 - PyTorch's own default TORCH_FR_DUMP_TEMP_FILE
        description="TORCH_FR_DUMP_TEMP_FILE of the job; dumps are named PREFIX<rank>.",
    )
    max_bytes: int = Field(256 * MiB, gt=0, description="Larger dumps are refused.")
    settle_s: float = Field(2.0, ge=0, description="A dump is complete once its size is stable.")
    job_id: Name | None = Field(None, description="Default: the job seen in heartbeats.")


class RasdaemonConfig(_Section):
    enabled: bool = True
    path: Path = RASDAEMON_DB
    from_start: bool = Field(False, description="First start: ship the rows already recorded.")


class McelogConfig(_Section):
    enabled: bool = True
    path: Path = MCELOG_LOG
    from_start: bool = False


class EdacConfig(_Section):
    enabled: bool = True
    root: Path = EDAC_ROOT


class InfinibandConfig(_Section):
    enabled: bool = True
    root: Path = INFINIBAND_ROOT
    window_s: float = Field(60.0, gt=0, description="The span an error rate is measured over.")
    thresholds: dict[str, float] = Field(
        default_factory=lambda: dict(IB_THRESHOLDS),
        description="Errors per minute above which a port counter's climb is reported.",
    )

    @field_validator("thresholds")
    @classmethod
    def _known_counters(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(value) - set(IB_THRESHOLDS))
        if unknown:
            raise ValueError(f"unknown counters {unknown}; known: {sorted(IB_THRESHOLDS)}")
        if any(limit < 0 for limit in value.values()):
            raise ValueError("a threshold must be 0 or more")
        return value


class DevlinkConfig(_Section):
    enabled: bool = Field(True, description="Runs `devlink -j health show` where installed.")


class DcgmConfig(_Section):
    """DCGM's health watches and quick diagnostic, where dcgmi is installed and nv-hostengine
    runs (with health watches set, e.g. `dcgmi health -s a`)."""

    enabled: bool = Field(True, description="Runs `dcgmi health -c -j` where dcgmi is installed.")
    health_s: float = Field(30.0, gt=0, description="How often the health watches are read.")
    diag_s: float = Field(
        0.0,
        ge=0,
        description="How often `dcgmi diag -r 1 -j` runs (0: never); it takes the GPUs for "
        "seconds, so run it where jobs allow it.",
    )


class RedfishConfig(_Section):
    """The BMC's Redfish service: its logs (SEL, event log) and the health of its power
    supplies, fans and chassis. Off unless a BMC is named; the credentials live in a file."""

    enabled: bool = False
    url: HttpUrl | None = Field(None, description="The BMC, e.g. https://10.1.0.17.")
    credentials_file: Path | None = Field(None, description="One line: user:password.")
    ca_bundle: Path | None = Field(None, description="CAs the BMC's certificate is checked by.")
    insecure: bool = Field(False, description="Skip TLS verification (warned at start).")
    timeout_s: float = Field(10.0, gt=0)
    from_start: bool = Field(False, description="First start: ship the entries already logged.")

    @model_validator(mode="after")
    def _a_bmc_to_reach(self) -> RedfishConfig:
        if self.enabled and (self.url is None or self.credentials_file is None):
            raise ValueError("collectors.redfish needs url and credentials_file")
        if self.insecure and self.ca_bundle is not None:
            raise ValueError("collectors.redfish: set ca_bundle or insecure, not both")
        return self


class IpmiConfig(_Section):
    """The BMC's SEL read with ipmitool: this host's BMC through /dev/ipmi0 (no host), or one
    over lanplus, its password in a file ipmitool reads (-f)."""

    enabled: bool = Field(True, description="Where ipmitool is installed and a BMC is reachable.")
    host: str | None = Field(None, description="A BMC over lanplus; unset: this host's, -I open.")
    port: int = Field(623, ge=1, le=65535)
    username: str | None = None
    password_file: Path | None = Field(None, description="The password alone, mode 0600.")
    cipher_suite: int | None = Field(
        None, ge=0, le=255, description="RMCP+ cipher suite (-C); for BMCs that do not list theirs."
    )
    from_start: bool = Field(False, description="First start: ship the entries already logged.")
    sensors_s: float = Field(
        60.0, ge=0, description="The sensors' states (`sdr elist`, read whole) every (0: never)."
    )

    @model_validator(mode="after")
    def _lanplus_needs_credentials(self) -> IpmiConfig:
        if self.host is not None and (self.username is None or self.password_file is None):
            raise ValueError("collectors.ipmi.host needs username and password_file")
        return self

    def bmc(self) -> Bmc:
        return Bmc(
            host=self.host,
            port=self.port,
            username=self.username,
            password_file=self.password_file,
            cipher_suite=self.cipher_suite,
        )


class CloudConfig(_Section):
    """A cloud's scheduled maintenance of this instance, from its instance metadata service
    (AWS scheduled events over IMDSv2, GCP's maintenance-event, Azure Scheduled Events). Off
    by default: the metadata address means nothing outside that cloud."""

    enabled: bool = False
    provider: CloudProvider | None = Field(None, description="aws, gcp or azure.")
    endpoint: HttpUrl | None = Field(
        None, description="The metadata service; unset: the provider's own address."
    )
    interval_s: float = Field(60.0, gt=0, description="How often the metadata is read.")
    timeout_s: float = Field(2.0, gt=0)

    @model_validator(mode="after")
    def _a_provider_to_ask(self) -> CloudConfig:
        if self.enabled and self.provider is None:
            raise ValueError("collectors.cloud needs provider: aws, gcp or azure")
        return self


# The collectors of machine checks, memory errors, link faults and the BMC (collectors.<name>).
HARDWARE_COLLECTORS: Final = (
    "rasdaemon", "mcelog", "edac", "infiniband", "devlink", "ipmi", "dcgm"
)  # fmt: skip


class CollectorsConfig(_Section):
    nvml: NvmlCollectorConfig = Field(default_factory=NvmlCollectorConfig)
    kernel_log: KernelLogConfig = Field(default_factory=KernelLogConfig)
    training_logs: TrainingLogsConfig = Field(default_factory=TrainingLogsConfig)
    heartbeat: HeartbeatConfig = Field(default_factory=HeartbeatConfig)
    flight_recorder: FlightRecorderConfig = Field(default_factory=FlightRecorderConfig)
    rasdaemon: RasdaemonConfig = Field(default_factory=RasdaemonConfig)
    mcelog: McelogConfig = Field(default_factory=McelogConfig)
    edac: EdacConfig = Field(default_factory=EdacConfig)
    infiniband: InfinibandConfig = Field(default_factory=InfinibandConfig)
    devlink: DevlinkConfig = Field(default_factory=DevlinkConfig)
    redfish: RedfishConfig = Field(default_factory=RedfishConfig)
    ipmi: IpmiConfig = Field(default_factory=IpmiConfig)
    dcgm: DcgmConfig = Field(default_factory=DcgmConfig)
    cloud: CloudConfig = Field(default_factory=CloudConfig)


class OutboxConfig(_Section):
    path: Path = Path("/var/lib/sentinel-agent/outbox.db")
    max_bytes: int = Field(64 * MiB, ge=64 * 1024, description="Soft cap of queued JSON.")
    max_batch_observations: int = Field(1000, ge=1, le=5000)
    max_batch_bytes: int = Field(4 * MiB, ge=64 * 1024)
    backoff_initial_s: float = Field(1.0, gt=0)
    backoff_max_s: float = Field(60.0, gt=0)
    spill_max_bytes: int = Field(
        16 * MiB,
        ge=64 * 1024,
        description="Memory for observations while the outbox refuses writes (a full disk).",
    )


class MetricsConfig(_Section):
    """The agent's /metrics (sentinel_agent/metrics.py): its own names and port by default,
    beside a dcgm-exporter; or dcgm-exporter's names and port where it replaces one."""

    enabled: bool = True
    mode: MetricsMode = Field(
        SENTINEL,
        description="sentinel: sentinel_agent_gpu_* names on port 8601; replace-dcgm-exporter: "
        "dcgm-exporter's DCGM_FI_* names and labels on its port, 9400.",
    )
    address: str = "127.0.0.1"
    port: int = Field(
        DEFAULT_PORT[SENTINEL], ge=0, le=65535, description="Default: the mode's (8601 or 9400)."
    )

    @model_validator(mode="before")
    @classmethod
    def _the_modes_port(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("port") is None:
            data = {**data, "port": DEFAULT_PORT.get(data.get("mode") or SENTINEL)}
            if data["port"] is None:  # an unknown mode: its own error, not the port's
                del data["port"]
        return data


class AgentConfig(_Section):
    host_id: Name = Field(default_factory=lambda: socket.gethostname().split(".")[0])
    service: ServiceConfig
    intervals: Intervals = Field(default_factory=Intervals)
    collectors: CollectorsConfig = Field(default_factory=CollectorsConfig)
    outbox: OutboxConfig = Field(default_factory=OutboxConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


def _set_path(tree: dict[str, Any], path: list[str], value: Any) -> None:
    for key in path[:-1]:
        child = tree.get(key)
        if not isinstance(child, dict):
            child = tree[key] = {}
        tree = child
    tree[path[-1]] = value


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or name == ENV_PREFIX + "CONFIG":
            continue
        path = [part.lower() for part in name[len(ENV_PREFIX) :].split("__")]
        _set_path(tree, path, yaml.safe_load(raw) if raw else raw)
    return tree


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_tree(path: Path | None, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The configuration file's tree with the SENTINEL_AGENT_* variables over it,
    unvalidated; raises ValueError when the file is not a mapping."""
    raw: Any = {}
    if path is not None:
        raw = yaml.safe_load(path.read_text()) or {}
        if not isinstance(raw, dict):
            raise ValueError(f"{path}: the top level must be a mapping")
    return _merge(raw, env_overrides(os.environ if environ is None else environ))


def load_config(path: Path | None, environ: Mapping[str, str] | None = None) -> AgentConfig:
    """Raises pydantic.ValidationError (names the field) or ValueError (unreadable file)."""
    return AgentConfig.model_validate(load_tree(path, environ))
