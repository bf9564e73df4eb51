"""The root-cause taxonomy: the categories a triage verdict can name, with Llama 3's shares."""

from __future__ import annotations

from enum import StrEnum
from typing import Final


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


# Llama 3 405B pre-training, Table 5: root causes of the 419 unexpected interruptions in
# 54 days. Reports compare a fleet's mix against this reference; the count is authoritative,
# the percentage is the paper's rounding of count / 419.
LLAMA3_UNEXPECTED_INTERRUPTIONS: Final = 419
LLAMA3_PLANNED_INTERRUPTIONS: Final = 47

LLAMA3_TABLE5: Final[dict[Category, tuple[int, float]]] = {
    Category.FAULTY_GPU: (148, 30.1),
    Category.GPU_HBM_MEMORY: (72, 17.2),
    Category.SOFTWARE_BUG: (54, 12.9),
    Category.NETWORK_SWITCH_CABLE: (35, 8.4),
    Category.HOST_MAINTENANCE: (32, 7.6),
    Category.GPU_SRAM_MEMORY: (19, 4.5),
    Category.GPU_SYSTEM_PROCESSOR: (17, 4.1),
    Category.NIC: (7, 1.7),
    Category.NCCL_WATCHDOG_TIMEOUT: (7, 1.7),
    Category.SILENT_DATA_CORRUPTION: (6, 1.4),
    Category.GPU_THERMAL: (6, 1.4),
    Category.SSD: (3, 0.7),
    Category.POWER_SUPPLY: (3, 0.7),
    Category.SERVER_CHASSIS: (2, 0.5),
    Category.IO_EXPANSION_BOARD: (2, 0.5),
    Category.DEPENDENCY: (2, 0.5),
    Category.CPU: (2, 0.5),
    Category.SYSTEM_MEMORY: (2, 0.5),
}

# Categories that the paper counts as confirmed or suspected hardware (about 78%).
HARDWARE_CATEGORIES: Final[frozenset[Category]] = frozenset(
    {
        Category.FAULTY_GPU,
        Category.GPU_HBM_MEMORY,
        Category.NETWORK_SWITCH_CABLE,
        Category.GPU_SRAM_MEMORY,
        Category.GPU_SYSTEM_PROCESSOR,
        Category.NIC,
        Category.GPU_THERMAL,
        Category.SSD,
        Category.POWER_SUPPLY,
        Category.SERVER_CHASSIS,
        Category.IO_EXPANSION_BOARD,
        Category.CPU,
        Category.SYSTEM_MEMORY,
    }
)

# The parts of one GPU; a fault here names the GPU as culprit.
GPU_CATEGORIES: Final[frozenset[Category]] = frozenset(
    {
        Category.FAULTY_GPU,
        Category.GPU_HBM_MEMORY,
        Category.GPU_SRAM_MEMORY,
        Category.GPU_SYSTEM_PROCESSOR,
    }
)


def llama3_share(category: Category) -> float | None:
    """Llama 3's percentage of unexpected interruptions for a category, or None if untracked."""
    entry = LLAMA3_TABLE5.get(category)
    return entry[1] if entry else None
