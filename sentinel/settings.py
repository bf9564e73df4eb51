"""One typed settings tree: environment (SENTINEL_*), an optional YAML file, defaults.

Each domain owns its section (``sentinel/<domain>/settings.py``, or the module itself where
the domain is one: auth, logs); this module composes them and keeps the process's own
(``server``, the top-level keys) and the loading.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from sentinel.alerting.settings import AlertingSettings
from sentinel.auth import BOOTSTRAP_TOKENS_FILE, AuthSettings
from sentinel.db.settings import DatabaseSettings
from sentinel.incidents.settings import HealthSettings, TriageSettings
from sentinel.ingest.settings import IngestSettings
from sentinel.logs import LogSettings
from sentinel.remediation.settings import RemediationSettings
from sentinel.runtime.settings import RetentionSettings
from sentinel.schedulers.settings import SchedulerSettings

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

# The environment variable naming the settings file (YAML); the environment wins over it.
CONFIG_ENV = "SENTINEL_CONFIG"


class ServerSettings(BaseModel):
    """The HTTP server: where it listens, the body limits, how fast it stops."""

    model_config = ConfigDict(extra="forbid")

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
