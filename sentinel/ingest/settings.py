"""Ingest settings (the ``ingest`` section): the writer's groups, the uploads admitted at once."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class IngestSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

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
