"""A scripted GPU provider: plays a scenario file and raises the binding's own errors.

A scenario is data (agents/sentinel_agent/scenarios/*.yaml)::

    description: GPU 3 falls off the bus
    gpus: 8
    baseline: {temperature_c: 41, power_w: 310}     # every GPU starts from these
    unsupported: [retired_pages]                    # raise NVMLError_NotSupported
    serials: ["1652221034501", "1652221034502"]     # board serials by index (else derived)
    timeline:                                       # seconds since the provider started
      - {at: 2.0, gpu: 3, xid: 79}
      - {at: 2.0, gpu: 3, lost: true}
      - {at: 5.0, gpu: 1, set: {nvlink_crc_flit: 40}, add: {pcie_replay_count: 3}}
"""

from __future__ import annotations

import collections
import threading
import uuid
from pathlib import Path
from typing import Literal

import pynvml
import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from sentinel_agent.clock import Clock
from sentinel_agent.providers.base import NvlinkTotals, RemappedRows, XidNotice

# Bus ids of the eight GPUs of a typical HGX H100 board, in NVML's format.
_BUS_IDS = ("18", "2A", "3A", "5D", "9A", "AB", "BA", "DB")

Capability = Literal[
    "temperature_c",
    "power_w",
    "clock_event_reasons",
    "utilization_pct",
    "memory_used_bytes",
    "ecc_errors",
    "remapped_rows",
    "retired_pages",
    "nvlink_errors",
    "pcie_replay_count",
    "xid_events",
    "serial",
]


class GpuState(BaseModel):
    """One GPU's readings; a timeline step sets or adds to these by name."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    temperature_c: float = 38.0
    power_w: float = 120.0
    clock_event_reasons: int = 0
    utilization_pct: float = 0.0
    memory_used_bytes: int = 0
    ecc_volatile_corrected: int = 0
    ecc_volatile_uncorrected: int = 0
    ecc_aggregate_corrected: int = 0
    ecc_aggregate_uncorrected: int = 0
    remapped_rows_correctable: int = 0
    remapped_rows_uncorrectable: int = 0
    remap_pending: bool = False
    remap_failure: bool = False
    retired_pages_sbe: int = 0
    retired_pages_dbe: int = 0
    retired_pages_pending: bool = False
    nvlink_crc_flit: int = 0
    nvlink_crc_data: int = 0
    nvlink_replay: int = 0
    nvlink_recovery: int = 0
    pcie_replay_count: int = 0


_NUMERIC = frozenset(
    name for name, info in GpuState.model_fields.items() if info.annotation in (int, float)
)


class Step(BaseModel):
    model_config = ConfigDict(extra="forbid")

    at: float = Field(ge=0)
    gpu: int = Field(ge=0, le=255)
    set: dict[str, float | int | bool] = Field(default_factory=dict)
    add: dict[str, float | int] = Field(default_factory=dict)
    xid: int | None = Field(None, ge=0)
    lost: bool | None = None

    @model_validator(mode="after")
    def _known_fields(self) -> Step:
        for name in (*self.set, *self.add):
            if name not in GpuState.model_fields:
                raise ValueError(f"unknown GPU field {name!r}")
        for name in self.add:
            if name not in _NUMERIC:
                raise ValueError(f"cannot add to {name!r}")
        return self


class Scenario(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: str = ""
    gpus: int = Field(8, ge=1, le=64)
    baseline: dict[str, float | int | bool] = Field(default_factory=dict)
    unsupported: list[Capability] = Field(default_factory=list)
    # Board serials by GPU index, as printed on the board's label; GPUs past the list get one
    # derived from the provider's seed, so that every fake GPU has a serial to RMA by.
    serials: list[str] = Field(default_factory=list)
    timeline: list[Step] = Field(default_factory=list)

    @model_validator(mode="after")
    def _steps_fit(self) -> Scenario:
        GpuState.model_validate(self.baseline)
        if len(self.serials) > self.gpus:
            raise ValueError(f"{len(self.serials)} serials for {self.gpus} gpus")
        for step in self.timeline:
            if step.gpu >= self.gpus:
                raise ValueError(f"step at {step.at}: gpu {step.gpu} of {self.gpus}")
        self.timeline.sort(key=lambda s: s.at)
        return self

    @classmethod
    def load(cls, path: Path) -> Scenario:
        return cls.model_validate(yaml.safe_load(path.read_text()))


def _error(code: int) -> pynvml.NVMLError:
    return pynvml.NVMLError(code)


class FakeProvider:
    """Thread-safe: the sampling thread and the XID event thread both read it."""

    def __init__(self, scenario: Scenario, clock: Clock, *, seed: str = "fake") -> None:
        self.scenario = scenario
        self._clock = clock
        self._seed = seed
        self._lock = threading.Lock()
        self._started_at: float | None = None
        self._next_step = 0
        self._gpus = [GpuState.model_validate(scenario.baseline) for _ in range(scenario.gpus)]
        self._lost = [False] * scenario.gpus
        self._xids: collections.deque[XidNotice] = collections.deque()
        self._closed = threading.Event()
        self.calls = 0

    # -- the timeline -------------------------------------------------------------------

    def _advance(self) -> None:
        if self._started_at is None:
            self._started_at = self._clock.monotonic()
        elapsed = self._clock.monotonic() - self._started_at
        steps = self.scenario.timeline
        while self._next_step < len(steps) and steps[self._next_step].at <= elapsed:
            step = steps[self._next_step]
            self._next_step += 1
            gpu = self._gpus[step.gpu]
            for name, value in step.set.items():
                setattr(gpu, name, value)
            for name, value in step.add.items():
                setattr(gpu, name, getattr(gpu, name) + value)
            if step.lost is not None:
                self._lost[step.gpu] = step.lost
            if step.xid is not None:
                self._xids.append(XidNotice(gpu_index=step.gpu, xid=step.xid))

    def play_to_end(self) -> None:
        """Play the whole timeline now: a one-shot health check sees the state the scenario
        ends in (the GPU's history has happened), not its first second."""
        with self._lock:
            end = self.scenario.timeline[-1].at if self.scenario.timeline else 0.0
            self._started_at = self._clock.monotonic() - end
            self._advance()

    def _seconds_to_next_xid(self) -> float | None:
        assert self._started_at is not None
        elapsed = self._clock.monotonic() - self._started_at
        for step in self.scenario.timeline[self._next_step :]:
            if step.xid is not None:
                return max(0.0, step.at - elapsed)
        return None

    def _read(self, handle: object, capability: Capability) -> GpuState:
        with self._lock:
            self.calls += 1
            self._advance()
            index = _index(handle)
            if self._lost[index]:
                raise _error(pynvml.NVML_ERROR_GPU_IS_LOST)
            if capability in self.scenario.unsupported:
                raise _error(pynvml.NVML_ERROR_NOT_SUPPORTED)
            return self._gpus[index].model_copy()

    # -- the provider protocol ------------------------------------------------------------

    def init(self) -> None:
        with self._lock:
            self._advance()

    def shutdown(self) -> None:
        self._closed.set()

    def device_count(self) -> int:
        return self.scenario.gpus

    def handle(self, index: int) -> object:
        if not 0 <= index < self.scenario.gpus:
            raise _error(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        with self._lock:
            self._advance()
            if self._lost[index]:
                raise _error(pynvml.NVML_ERROR_GPU_IS_LOST)
        return _Handle(index)

    def uuid(self, handle: object) -> str:
        self._read(handle, "temperature_c")
        return "GPU-" + str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{self._seed}/{_index(handle)}"))

    def pci_bus_id(self, handle: object) -> str:
        self._read(handle, "temperature_c")
        index = _index(handle)
        bus = _BUS_IDS[index] if index < len(_BUS_IDS) else f"{index:02X}"
        return f"00000000:{bus}:00.0"

    def serial(self, handle: object) -> str:
        self._read(handle, "serial")
        index = _index(handle)
        if index < len(self.scenario.serials):
            return self.scenario.serials[index]
        # NVIDIA's board serials are 13 digits; this one is stable per seed and index.
        digest = uuid.uuid5(uuid.NAMESPACE_DNS, f"{self._seed}/serial/{index}").int
        return f"{digest % 10**13:013d}"

    def temperature_c(self, handle: object) -> float:
        return self._read(handle, "temperature_c").temperature_c

    def power_w(self, handle: object) -> float:
        return self._read(handle, "power_w").power_w

    def clock_event_reasons(self, handle: object) -> int:
        return self._read(handle, "clock_event_reasons").clock_event_reasons

    def utilization_pct(self, handle: object) -> float:
        return self._read(handle, "utilization_pct").utilization_pct

    def memory_used_bytes(self, handle: object) -> int:
        return self._read(handle, "memory_used_bytes").memory_used_bytes

    def ecc_errors(self, handle: object, *, uncorrected: bool, aggregate: bool) -> int:
        gpu = self._read(handle, "ecc_errors")
        name = "ecc_{}_{}".format(
            "aggregate" if aggregate else "volatile", "uncorrected" if uncorrected else "corrected"
        )
        return int(getattr(gpu, name))

    def remapped_rows(self, handle: object) -> RemappedRows:
        gpu = self._read(handle, "remapped_rows")
        return RemappedRows(
            gpu.remapped_rows_correctable,
            gpu.remapped_rows_uncorrectable,
            gpu.remap_pending,
            gpu.remap_failure,
        )

    def retired_pages(self, handle: object, *, double_bit: bool) -> int:
        gpu = self._read(handle, "retired_pages")
        return gpu.retired_pages_dbe if double_bit else gpu.retired_pages_sbe

    def retired_pages_pending(self, handle: object) -> bool:
        return self._read(handle, "retired_pages").retired_pages_pending

    def nvlink_errors(self, handle: object) -> NvlinkTotals:
        gpu = self._read(handle, "nvlink_errors")
        return NvlinkTotals(
            gpu.nvlink_crc_flit, gpu.nvlink_crc_data, gpu.nvlink_replay, gpu.nvlink_recovery
        )

    def pcie_replay_count(self, handle: object) -> int:
        return self._read(handle, "pcie_replay_count").pcie_replay_count

    def xid_events(self, handles: dict[int, object]) -> FakeXidEvents:
        if "xid_events" in self.scenario.unsupported:
            raise _error(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return FakeXidEvents(self)


class FakeXidEvents:
    def __init__(self, provider: FakeProvider) -> None:
        self._provider = provider

    def wait(self, timeout_ms: int) -> XidNotice | None:
        provider = self._provider
        with provider._lock:
            provider._advance()
            if provider._xids:
                return provider._xids.popleft()
            until_next = provider._seconds_to_next_xid()
        pause = timeout_ms / 1000 if until_next is None else min(timeout_ms / 1000, until_next)
        if provider._closed.wait(pause):
            return None
        with provider._lock:
            provider._advance()
            return provider._xids.popleft() if provider._xids else None

    def close(self) -> None:
        pass


class _Handle:
    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index

    def __repr__(self) -> str:
        return f"<fake GPU handle {self.index}>"


def _index(handle: object) -> int:
    if not isinstance(handle, _Handle):
        raise _error(pynvml.NVML_ERROR_INVALID_ARGUMENT)
    return handle.index
