"""Builders for wire batches and observations, shared by the tests (fixtures are builders)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

T0 = datetime(2026, 11, 28, 3, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def obs(kind: str, when: datetime = T0, **fields: Any) -> dict[str, Any]:
    return {
        "kind": kind,
        "id": str(fields.pop("id", uuid.uuid4())),
        "observed_at": when.isoformat(),
        **fields,
    }


def gpu_sample(gpu: int = 0, when: datetime = T0, **fields: Any) -> dict[str, Any]:
    return obs(
        "gpu_sample",
        when,
        gpu_index=gpu,
        pci_bus_id=fields.pop("pci_bus_id", f"00000000:{0x18 + gpu * 0x10:02X}:00.0"),
        temperature_c=fields.pop("temperature_c", 55.0),
        **fields,
    )


def xid(code: int = 79, gpu: int = 0, when: datetime = T0, **fields: Any) -> dict[str, Any]:
    return obs("xid", when, xid=code, gpu_index=gpu, **fields)


def heartbeat(
    job: str = "job-1", rank: int = 0, step: int = 100, when: datetime = T0, **fields: Any
) -> dict[str, Any]:
    return obs(
        "heartbeat",
        when,
        job_id=job,
        rank=rank,
        local_rank=fields.pop("local_rank", rank % 8),
        step=step,
        last_beat_at=when.isoformat(),
        **fields,
    )


def batch(
    host: str = "h001",
    seq: int = 1,
    observations: list[dict[str, Any]] | None = None,
    when: datetime = T0,
) -> dict[str, Any]:
    return {
        "version": 1,
        "host_id": host,
        "agent_id": f"{host}-agent",
        "seq": seq,
        "sent_at": when.isoformat(),
        "observations": observations or [],
    }
