"""The agent-to-service wire contract: pydantic models only, importable on GPU hosts."""

from sentinel.wire.v1 import (
    CRITICAL_KINDS,
    EVENT_KINDS,
    MAX_OBSERVATIONS_PER_BATCH,
    PERIODIC_KINDS,
    WIRE_VERSION,
    AgentStatus,
    Batch,
    BatchAck,
    EccEvent,
    FlightRecorderDump,
    GpuSample,
    HeartbeatSummary,
    LogRecord,
    NvlinkCounters,
    Observation,
    XidEvent,
)

__all__ = [
    "CRITICAL_KINDS",
    "EVENT_KINDS",
    "MAX_OBSERVATIONS_PER_BATCH",
    "PERIODIC_KINDS",
    "WIRE_VERSION",
    "AgentStatus",
    "Batch",
    "BatchAck",
    "EccEvent",
    "FlightRecorderDump",
    "GpuSample",
    "HeartbeatSummary",
    "LogRecord",
    "NvlinkCounters",
    "Observation",
    "XidEvent",
]
