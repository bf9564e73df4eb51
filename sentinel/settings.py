"""One typed settings tree: environment (SENTINEL_*), an optional YAML file, defaults."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from sentinel.alerting.settings import AlertingSettings
from sentinel.schedulers.settings import SchedulerSettings

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

Role = Literal["agent", "operator", "viewer"]


# The environment variable naming the settings file (YAML); the environment wins over it.
CONFIG_ENV = "SENTINEL_CONFIG"

# The bootstrapped operator token's digest, in data_dir unless auth.bootstrap_file says where.
BOOTSTRAP_TOKENS_FILE = "bootstrap-tokens.yml"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TokenSpec(_Section):
    """A bearer token. Give ``sha256`` (hex digest) in files; ``token`` is hashed at load."""

    name: str = Field(min_length=1, max_length=64)
    role: Role
    sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    token: SecretStr | None = None
    hosts: list[Annotated[str, Field(min_length=1, max_length=128)]] | None = Field(
        None,
        description="Agent tokens: the hosts (glob patterns, e.g. 'gpu-0[0-3]*') it may post "
        "for; ['*'] for the whole fleet. Unset, an agent token is fleet-wide as before and the "
        "service warns at start.",
    )

    @model_validator(mode="after")
    def _one_secret(self) -> TokenSpec:
        if (self.sha256 is None) == (self.token is None):
            raise ValueError(f"token {self.name!r}: give exactly one of 'sha256' or 'token'")
        if self.token is not None and len(self.token.get_secret_value()) < 16:
            raise ValueError(f"token {self.name!r}: a token needs at least 16 characters")
        if self.hosts is not None and self.role != "agent":
            raise ValueError(f"token {self.name!r}: only an agent token speaks for hosts")
        return self

    def digest(self) -> str:
        if self.sha256 is not None:
            return self.sha256
        assert self.token is not None
        return hashlib.sha256(self.token.get_secret_value().encode()).hexdigest()


class DatabaseSettings(_Section):
    url: str | None = Field(
        None,
        description="sqlite:///PATH or postgresql://USER@HOST:PORT/DB; default: a SQLite file "
        "in data_dir.",
    )
    pool_size: int = Field(10, ge=1, le=200)
    echo: bool = False


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8600, ge=0, le=65535)
    max_body_bytes: int = Field(
        8 * 1024 * 1024,
        ge=1024,
        description="Agent batches, Alertmanager posts, classify, maintenance.",
    )
    shutdown_timeout_s: float = Field(
        3.0,
        gt=0,
        description="On Ctrl-C or SIGTERM, requests still running after this long are cancelled "
        "(then the loop services stop): the service is down within seconds.",
    )
    max_dump_bytes: int = Field(256 * 1024 * 1024, ge=1024)
    max_api_body_bytes: int = Field(
        1024 * 1024, ge=1024, description="Every other request body (the API's small JSON)."
    )


class LogSettings(_Section):
    """The service's log lines (sentinel/logs.py); `sentinel serve --log-level/--log-format`
    override them."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["text", "json"] = Field(
        "text", description="text: one line per record; json: one JSON object per line."
    )


class AuthSettings(_Section):
    tokens: list[TokenSpec] = Field(default_factory=list)
    tokens_file: Path | None = Field(None, description="YAML list of {name, role, sha256} entries.")
    bootstrap_operator: bool = Field(
        True,
        description="At a start with no operator token configured, `sentinel serve` makes one, "
        "prints it once, and keeps its digest in bootstrap_file (so that someone can log in to "
        "a fresh install); false: start without one.",
    )
    bootstrap_file: Path | None = Field(
        None,
        description="Where the bootstrapped operator token's digest is kept (a tokens file, "
        "read with the others); default: data_dir/bootstrap-tokens.yml.",
    )

    def all_tokens(self) -> list[TokenSpec]:
        specs = list(self.tokens)
        # The bootstrap file exists only once `sentinel serve` made a token.
        for name, path in (
            ("tokens_file", self.tokens_file),
            ("bootstrap_file", self.bootstrap_file),
        ):
            if path is None or (name == "bootstrap_file" and not path.exists()):
                continue
            try:
                raw = yaml.safe_load(path.read_text()) or []
            except (OSError, yaml.YAMLError) as exc:
                raise ValueError(f"{name} {path}: {exc}") from exc
            if not isinstance(raw, list):
                raise ValueError(f"{name} {path}: expected a list of tokens")
            specs.extend(TokenSpec.model_validate(item) for item in raw)
        return specs


class IngestSettings(_Section):
    max_group: int = Field(
        256, ge=1, le=10_000, description="Batches committed together by the ingest writer."
    )
    queue_limit: int = Field(
        20_000, ge=1, description="Batches waiting for the writer before new ones get 503."
    )
    linger_ms: float = Field(
        4.0, ge=0, le=1000, description="How long the writer waits to gather a bigger group."
    )
    max_inflight_requests: int = Field(
        64,
        ge=1,
        description="Most agent uploads (batches, dumps, Alertmanager posts) admitted at once, "
        "from their headers to their answer; one more gets 429 before its body is read. The "
        "limit in force adapts below this to keep admitted uploads within target_latency_s.",
    )
    start_inflight_requests: int = Field(
        8,
        ge=1,
        description="Uploads admitted at once by a fresh service, before it has measured "
        "itself (at most max_inflight_requests).",
    )
    target_latency_s: float = Field(
        0.25,
        gt=0,
        description="Admitted uploads slower than this shrink the number admitted at once; "
        "faster ones let it grow back.",
    )
    max_inflight_bytes: int = Field(
        256 * 1024 * 1024,
        ge=1024,
        description="Body bytes those admitted uploads may declare together (a body without "
        "Content-Length counts as its route's limit); one upload alone is always admitted.",
    )
    retry_after_s: int = Field(
        10,
        ge=1,
        le=600,
        description="A shed upload is told to retry after a random 1 to this many seconds, "
        "so that a crowd of agents does not come back at one moment.",
    )


class RetentionSettings(_Section):
    samples_hours: float = Field(
        24.0, gt=0, description="Periodic samples (GPU readings, heartbeats) older than this go."
    )
    events_days: float = Field(
        90.0, gt=0, description="XID, ECC and log events older than this go."
    )
    interval_s: float = Field(300.0, gt=0)


class HealthSettings(_Section):
    silent_after_s: float = Field(
        60.0, gt=0, description="A host whose agent sent nothing for this long is 'silent'."
    )
    critical_clear_s: float = Field(
        3600.0,
        gt=0,
        description="A critical event stops marking its host unhealthy after this long, "
        "unless the condition is still present in the latest samples.",
    )


class TriageSettings(_Section):
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
        "3 median step times, if longer) is stalled: a hang, opened at once.",
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


class SwapSettings(_Section):
    """Proactive swap (issue 17): a host whose parts warn is swapped for a hot spare at the
    job's next durable checkpoint, within caps."""

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
    planned_s: float = Field(
        900.0,
        gt=0,
        description="The swap's interruption of the job is announced as maintenance this "
        "long, so that it counts as planned.",
    )


class RemediationSettings(_Section):
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
    swap: SwapSettings = Field(default_factory=SwapSettings)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SENTINEL_", env_nested_delimiter="__", extra="forbid"
    )

    data_dir: Path = Path("./data")
    auto_migrate: bool = Field(
        False, description="Upgrade the schema at start instead of refusing."
    )
    run_loops: bool = Field(
        True,
        description="Take part in the leader election; the leader runs the loop services.",
    )
    leader_ttl_s: float = Field(15.0, gt=1, description="Leader lease; failover takes this long.")
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    health: HealthSettings = Field(default_factory=HealthSettings)
    triage: TriageSettings = Field(default_factory=TriageSettings)
    remediation: RemediationSettings = Field(default_factory=RemediationSettings)
    scheduler: SchedulerSettings = Field(default_factory=SchedulerSettings)
    alerting: AlertingSettings = Field(default_factory=AlertingSettings)

    @field_validator("data_dir")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser()

    @model_validator(mode="after")
    def _bootstrap_file_in_data_dir(self) -> Settings:
        if self.auth.bootstrap_file is None:
            self.auth.bootstrap_file = self.data_dir / BOOTSTRAP_TOKENS_FILE
        return self

    def database_url(self) -> str:
        return self.database.url or f"sqlite:///{(self.data_dir / 'sentinel.db').resolve()}"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _ConfigFile(settings_cls), file_secret_settings)


class _ConfigFile(YamlConfigSettingsSource):
    """pydantic-settings' YAML source on the file SENTINEL_CONFIG names, when set (read at
    load, never at import); the environment wins over it. Unlike the stock source, a file that
    is missing, unreadable, not YAML or not a mapping stops the start with its name."""

    def __init__(self, settings_cls: type[BaseSettings]) -> None:
        path = os.environ.get(CONFIG_ENV)
        file = Path(path).expanduser() if path else None
        # The stock source skips a file that is not there; a misspelt path must not start
        # the service on defaults.
        if file is not None and not file.is_file():
            problem = "not a file" if file.exists() else "no such file"
            raise ValueError(f"{CONFIG_ENV}={path}: {problem}")
        super().__init__(settings_cls, yaml_file=file)

    def _read_file(self, file_path: Path | Traversable) -> dict[str, Any]:
        try:
            data = super()._read_file(file_path)
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise ValueError(f"{CONFIG_ENV}={file_path}: {exc}") from exc
        if not isinstance(data, dict):
            raise ValueError(f"{CONFIG_ENV}={file_path}: expected a mapping at the top level")
        return data


def load_settings(**overrides: Any) -> Settings:
    """Build the settings now (never at import): overrides > environment > file > defaults."""
    return Settings(**overrides)
