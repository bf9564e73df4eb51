"""What the NVML collector needs from a GPU provider.

Every method may raise the binding's own ``pynvml.NVMLError`` subclasses, the real provider
because NVML does and the fake because a scenario says so: ``NVMLError_NotSupported`` for a
field this GPU lacks, ``NVMLError_GpuIsLost`` for a GPU that fell off the bus.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class NvlinkTotals:
    """Error counters summed over the GPU's active NVLinks."""

    crc_flit: int
    crc_data: int
    replay: int
    recovery: int


@dataclass(frozen=True)
class RemappedRows:
    correctable: int
    uncorrectable: int
    pending: bool
    failure: bool


@dataclass(frozen=True)
class XidNotice:
    gpu_index: int
    xid: int


class XidEventSource(Protocol):
    def wait(self, timeout_ms: int) -> XidNotice | None:
        """Block up to timeout_ms for the next critical XID; None when none came."""
        ...

    def close(self) -> None: ...


class GpuProvider(Protocol):
    def init(self) -> None: ...

    def shutdown(self) -> None: ...

    def device_count(self) -> int: ...

    def handle(self, index: int) -> object: ...

    def uuid(self, handle: object) -> str: ...

    def pci_bus_id(self, handle: object) -> str: ...

    def serial(self, handle: object) -> str:
        """The board serial (what an RMA asks for); NotSupported on boards without an inforom."""
        ...

    def temperature_c(self, handle: object) -> float: ...

    def power_w(self, handle: object) -> float: ...

    def clock_event_reasons(self, handle: object) -> int: ...

    def utilization_pct(self, handle: object) -> float: ...

    def memory_used_bytes(self, handle: object) -> int: ...

    def ecc_errors(self, handle: object, *, uncorrected: bool, aggregate: bool) -> int: ...

    def remapped_rows(self, handle: object) -> RemappedRows: ...

    def retired_pages(self, handle: object, *, double_bit: bool) -> int: ...

    def retired_pages_pending(self, handle: object) -> bool:
        """Pages retired but still in use until the GPU is reset (pre-Ampere ECC)."""
        ...

    def nvlink_errors(self, handle: object) -> NvlinkTotals: ...

    def pcie_replay_count(self, handle: object) -> int: ...

    def xid_events(self, handles: dict[int, object]) -> XidEventSource: ...
