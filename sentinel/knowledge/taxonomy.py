"""The root-cause taxonomy: the categories a triage verdict can name, and one table of what each
means (hardware or not, where the fault lies, the alert it raises, Llama 3's count and share)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Final

from sentinel.wire.severity import Severity


class Category(StrEnum):
    """Root-cause categories; the values are a stable API (stored, sent, reported)."""

    FAULTY_GPU = "faulty_gpu"
    GPU_HBM_MEMORY = "gpu_hbm_memory"
    SOFTWARE_BUG = "software_bug"
    NETWORK_SWITCH_CABLE = "network_switch_cable"
    HOST_MAINTENANCE = "host_maintenance"
    GPU_SRAM_MEMORY = "gpu_sram_memory"
    GPU_SYSTEM_PROCESSOR = "gpu_system_processor"
    NIC = "nic"
    NCCL_WATCHDOG_TIMEOUT = "nccl_watchdog_timeout"
    SILENT_DATA_CORRUPTION = "silent_data_corruption"
    GPU_THERMAL = "gpu_thermal"
    SSD = "ssd"
    POWER_SUPPLY = "power_supply"
    SERVER_CHASSIS = "server_chassis"
    IO_EXPANSION_BOARD = "io_expansion_board"
    DEPENDENCY = "dependency"
    CPU = "cpu"
    SYSTEM_MEMORY = "system_memory"
    PLANNED = "planned"
    UNKNOWN = "unknown"


class Scope(StrEnum):
    """Where a category's fault lies, and so what must leave the job."""

    GPU = "gpu"  # one part of one GPU: the GPU is the culprit, and its host must leave
    HOST = "host"  # a host's other parts (or the host as a whole): the host must leave
    FABRIC = "fabric"  # the network between hosts: no one host is to blame
    JOB = "job"  # the job, its software or what it depends on; no hardware of ours


@dataclass(frozen=True)
class CategoryFacts:
    """One row of the category table."""

    # A part of ours that failed (the dashboard's "hardware" badge): 318 of Llama 3's 419.
    # The paper's "about 78%" also counts suspected hardware (see tests/knowledge).
    hardware: bool
    scope: Scope
    # The severity label of an incident's root-cause alert.
    alert_severity: Severity
    # Llama 3 405B pre-training, Table 5: the count of the 419 unexpected interruptions in
    # 54 days and the paper's percentage as printed; None for categories it does not list.
    llama3_count: int | None = None
    llama3_share: float | None = None

    @property
    def host_must_leave(self) -> bool:
        """The fault lives in one host's hardware: that host must leave the job."""
        return self.scope in (Scope.GPU, Scope.HOST)

    @property
    def in_one_gpu(self) -> bool:
        """The fault is in one part of one GPU, which is then named as the culprit."""
        return self.scope is Scope.GPU


_ = CategoryFacts
_GPU, _HOST, _FABRIC, _JOB = Scope.GPU, Scope.HOST, Scope.FABRIC, Scope.JOB
_CRITICAL, _ERROR, _WARNING, _INFO = (
    Severity.CRITICAL,
    Severity.ERROR,
    Severity.WARNING,
    Severity.INFO,
)

# Every category, in Table 5's order (reports list them so). A new category is one row here.
CATEGORIES: Final[Mapping[Category, CategoryFacts]] = MappingProxyType(
    {
        #                                    hardware scope   alert      Llama 3: n, %
        Category.FAULTY_GPU:             _(True,  _GPU,    _CRITICAL, 148, 30.1),
        Category.GPU_HBM_MEMORY:         _(True,  _GPU,    _CRITICAL, 72, 17.2),
        Category.SOFTWARE_BUG:           _(False, _JOB,    _ERROR,    54, 12.9),
        Category.NETWORK_SWITCH_CABLE:   _(True,  _FABRIC, _CRITICAL, 35, 8.4),
        Category.HOST_MAINTENANCE:       _(False, _HOST,   _ERROR,    32, 7.6),
        Category.GPU_SRAM_MEMORY:        _(True,  _GPU,    _CRITICAL, 19, 4.5),
        Category.GPU_SYSTEM_PROCESSOR:   _(True,  _GPU,    _CRITICAL, 17, 4.1),
        Category.NIC:                    _(True,  _HOST,   _CRITICAL, 7, 1.7),
        Category.NCCL_WATCHDOG_TIMEOUT:  _(False, _JOB,    _ERROR,    7, 1.7),
        Category.SILENT_DATA_CORRUPTION: _(False, _JOB,    _CRITICAL, 6, 1.4),
        Category.GPU_THERMAL:            _(True,  _HOST,   _ERROR,    6, 1.4),
        Category.SSD:                    _(True,  _HOST,   _ERROR,    3, 0.7),
        Category.POWER_SUPPLY:           _(True,  _HOST,   _CRITICAL, 3, 0.7),
        Category.SERVER_CHASSIS:         _(True,  _HOST,   _CRITICAL, 2, 0.5),
        Category.IO_EXPANSION_BOARD:     _(True,  _HOST,   _CRITICAL, 2, 0.5),
        Category.DEPENDENCY:             _(False, _JOB,    _ERROR,    2, 0.5),
        Category.CPU:                    _(True,  _HOST,   _CRITICAL, 2, 0.5),
        Category.SYSTEM_MEMORY:          _(True,  _HOST,   _CRITICAL, 2, 0.5),
        Category.PLANNED:                _(False, _JOB,    _INFO),
        Category.UNKNOWN:                _(False, _JOB,    _WARNING),
    }
)  # fmt: skip

# Llama 3's totals: the 419 unexpected interruptions of Table 5 and the 47 planned ones.
LLAMA3_UNEXPECTED_INTERRUPTIONS: Final = 419
LLAMA3_PLANNED_INTERRUPTIONS: Final = 47

# Table 5 as (count, percentage) by category, in its order: a view of CATEGORIES. Reports
# compare a fleet's mix against it; the count is authoritative.
LLAMA3_TABLE5: Final[Mapping[Category, tuple[int, float]]] = MappingProxyType(
    {
        c: (f.llama3_count, f.llama3_share)
        for c, f in CATEGORIES.items()
        if f.llama3_count is not None and f.llama3_share is not None
    }
)


def llama3_share(category: Category) -> float | None:
    """Llama 3's percentage of unexpected interruptions for a category, or None if untracked."""
    return CATEGORIES[category].llama3_share
