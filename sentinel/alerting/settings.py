"""Alerting settings: where the routing file is, the integrations' secrets, the retry policy."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from sentinel.alerting.notifiers.pagerduty import DEFAULT_URL as PAGERDUTY_URL
from sentinel.retry import Backoff


class RetryPolicy(BaseModel):
    """Backoff between attempts of one notification; a 429's Retry-After wins when given."""

    model_config = ConfigDict(extra="forbid")

    initial_backoff_s: float = Field(5.0, gt=0)
    max_backoff_s: float = Field(300.0, gt=0)
    max_attempts: int = Field(6, ge=1, le=100)
    jitter_s: float = Field(
        0.0,
        ge=0,
        description="A random 0 to this many seconds added to each backoff, so that groups "
        "that failed together (one receiver's outage) are not all retried together.",
    )

    def backoff_s(self, attempt: int, retry_after_s: float | None = None) -> float:
        """Wait before attempt ``attempt + 1``: the receiver's Retry-After, else 5, 10, 20, ...
        seconds, capped (the service's one backoff, sentinel.retry)."""
        return Backoff(self.initial_backoff_s, self.max_backoff_s, self.jitter_s).wait_s(
            attempt, retry_after_s
        )


class AlertingSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    routes_file: Path | None = Field(
        None, description="Routing YAML; default: sentinel/alerting/default_routes.yaml."
    )
    public_url: str = Field(
        "http://127.0.0.1:8600", description="Dashboard base URL used in links (/incidents/ID)."
    )
    slack_webhook_url: SecretStr | None = None
    pagerduty_routing_key: SecretStr | None = None
    pagerduty_url: str = PAGERDUTY_URL
    webhook_url: str | None = None
    webhook_secret: SecretStr | None = None
    alertmanager_url: str | None = Field(
        None, description="A site's Alertmanager (http://am:9093) for receivers of that type."
    )
    alertmanager_basic_auth_file: Path | None = Field(
        None, description="One line user:password, for an Alertmanager behind basic auth."
    )
    alertmanager_bearer_token_file: Path | None = Field(
        None, description="A bearer token, for an Alertmanager behind a token proxy."
    )
    alertmanager_valid_for_s: float = Field(
        900.0,
        gt=0,
        description="endsAt of a firing alert is now + this: Alertmanager resolves an alert "
        "not posted again by then, so its route's repeat_interval must be shorter.",
    )
    http_timeout_s: float = Field(10.0, gt=0, le=120)
    flush_interval_s: float = Field(1.0, gt=0, description="How often the leader flushes.")
    lease_ttl_s: float = Field(
        60.0, gt=0, description="A sender owns a group this long; longer than one send."
    )
    max_concurrent_sends: int = Field(8, ge=1, le=256)
    retry: RetryPolicy = Field(default_factory=RetryPolicy)

    @model_validator(mode="after")
    def _one_alertmanager_credential(self) -> AlertingSettings:
        if self.alertmanager_basic_auth_file and self.alertmanager_bearer_token_file:
            raise ValueError(
                "set one of alertmanager_basic_auth_file and alertmanager_bearer_token_file"
            )
        return self

    @model_validator(mode="after")
    def _lease_outlives_a_send(self) -> AlertingSettings:
        # A lease that expired mid-send would let a second replica send the same thing.
        if self.lease_ttl_s <= 2 * self.http_timeout_s:
            raise ValueError("lease_ttl_s must be more than twice http_timeout_s")
        return self
