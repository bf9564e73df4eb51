"""The category table: one row per category, Llama 3's figures, and the columns as the code had
them before they were one table (the sets and maps below are written out as they were)."""

from __future__ import annotations

import ast
import inspect

from sentinel.knowledge import taxonomy
from sentinel.knowledge.taxonomy import (
    CATEGORIES,
    LLAMA3_TABLE5,
    LLAMA3_UNEXPECTED_INTERRUPTIONS,
    Category,
    Scope,
    llama3_share,
)
from sentinel.triage.rules.base import GPU_PRECEDENCE, HOST_PART_CATEGORIES, UPSTREAM_CATEGORIES
from sentinel.wire.severity import Severity

C = Category


def _rows_written() -> list[str]:
    """The keys of CATEGORIES as written in the source (a dict literal keeps the last of two)."""
    tree = ast.parse(inspect.getsource(taxonomy))
    for node in ast.walk(tree):
        if isinstance(node, ast.AnnAssign) and ast.unparse(node.target) == "CATEGORIES":
            table = next(n for n in ast.walk(node) if isinstance(n, ast.Dict))
            return [ast.unparse(k) for k in table.keys if k is not None]
    raise AssertionError("no CATEGORIES table in taxonomy.py")


def test_every_category_has_exactly_one_row() -> None:
    written = _rows_written()
    assert sorted(written) == sorted(f"Category.{c.name}" for c in Category)
    assert list(CATEGORIES) == list(Category)  # and in the enum's order, Table 5's


def test_llama3s_counts_are_its_419_unexpected_interruptions() -> None:
    assert sum(n for n, _ in LLAMA3_TABLE5.values()) == LLAMA3_UNEXPECTED_INTERRUPTIONS == 419
    assert set(LLAMA3_TABLE5) == set(Category) - {C.PLANNED, C.UNKNOWN}
    assert llama3_share(C.FAULTY_GPU) == 30.1
    assert llama3_share(C.PLANNED) is None


def test_hardware_is_llama3s_78_percent_with_unplanned_host_maintenance() -> None:
    """The paper: "about 78% ... confirmed hardware issues ... or suspected hardware-related
    issues such as silent data corruption and unplanned individual host maintenance". Its
    printed shares of the hardware rows and host maintenance make 78% (70.8 + 7.6); by the
    counts the hardware rows are 318 of 419 (75.9%)."""
    hardware = [f for f in CATEGORIES.values() if f.hardware]
    printed = sum(f.llama3_share or 0 for f in hardware)
    assert round(printed, 1) == 70.8
    assert round(printed + (llama3_share(C.HOST_MAINTENANCE) or 0)) == 78
    assert sum(f.llama3_count or 0 for f in hardware) == 318


def test_the_columns_say_what_the_code_said_before() -> None:
    def having(column: str) -> frozenset[Category]:
        return frozenset(c for c, f in CATEGORIES.items() if getattr(f, column))

    # knowledge.taxonomy.HARDWARE_CATEGORIES
    assert having("hardware") == {
        C.FAULTY_GPU, C.GPU_HBM_MEMORY, C.NETWORK_SWITCH_CABLE, C.GPU_SRAM_MEMORY,
        C.GPU_SYSTEM_PROCESSOR, C.NIC, C.GPU_THERMAL, C.SSD, C.POWER_SUPPLY, C.SERVER_CHASSIS,
        C.IO_EXPANSION_BOARD, C.CPU, C.SYSTEM_MEMORY,
    }  # fmt: skip
    # remediation.policy.HOST_HARDWARE: faults in one host's hardware, which must leave the job
    assert having("host_must_leave") == {
        C.FAULTY_GPU, C.GPU_HBM_MEMORY, C.GPU_SRAM_MEMORY, C.GPU_SYSTEM_PROCESSOR, C.NIC,
        C.HOST_MAINTENANCE, C.GPU_THERMAL, C.SSD, C.POWER_SUPPLY, C.SERVER_CHASSIS,
        C.IO_EXPANSION_BOARD, C.CPU, C.SYSTEM_MEMORY,
    }  # fmt: skip
    # knowledge.taxonomy.GPU_CATEGORIES, "the parts of one GPU"
    assert having("in_one_gpu") == {
        C.FAULTY_GPU, C.GPU_HBM_MEMORY, C.GPU_SRAM_MEMORY, C.GPU_SYSTEM_PROCESSOR,
    }  # fmt: skip
    assert {c for c, f in CATEGORIES.items() if f.scope is Scope.FABRIC} == {C.NETWORK_SWITCH_CABLE}
    # alerting.incidents.SEVERITY_BY_CATEGORY
    assert {c.value: f.alert_severity.value for c, f in CATEGORIES.items()} == {
        "faulty_gpu": "critical",
        "gpu_hbm_memory": "critical",
        "gpu_sram_memory": "critical",
        "gpu_system_processor": "critical",
        "network_switch_cable": "critical",
        "nic": "critical",
        "silent_data_corruption": "critical",
        "power_supply": "critical",
        "server_chassis": "critical",
        "io_expansion_board": "critical",
        "cpu": "critical",
        "system_memory": "critical",
        "host_maintenance": "error",
        "gpu_thermal": "error",
        "ssd": "error",
        "software_bug": "error",
        "nccl_watchdog_timeout": "error",
        "dependency": "error",
        "unknown": "warning",
        "planned": "info",
    }
    assert all(isinstance(f.alert_severity, Severity) for f in CATEGORIES.values())
    # knowledge.taxonomy.LLAMA3_TABLE5, in its order
    assert list(LLAMA3_TABLE5.items()) == [
        (C.FAULTY_GPU, (148, 30.1)),
        (C.GPU_HBM_MEMORY, (72, 17.2)),
        (C.SOFTWARE_BUG, (54, 12.9)),
        (C.NETWORK_SWITCH_CABLE, (35, 8.4)),
        (C.HOST_MAINTENANCE, (32, 7.6)),
        (C.GPU_SRAM_MEMORY, (19, 4.5)),
        (C.GPU_SYSTEM_PROCESSOR, (17, 4.1)),
        (C.NIC, (7, 1.7)),
        (C.NCCL_WATCHDOG_TIMEOUT, (7, 1.7)),
        (C.SILENT_DATA_CORRUPTION, (6, 1.4)),
        (C.GPU_THERMAL, (6, 1.4)),
        (C.SSD, (3, 0.7)),
        (C.POWER_SUPPLY, (3, 0.7)),
        (C.SERVER_CHASSIS, (2, 0.5)),
        (C.IO_EXPANSION_BOARD, (2, 0.5)),
        (C.DEPENDENCY, (2, 0.5)),
        (C.CPU, (2, 0.5)),
        (C.SYSTEM_MEMORY, (2, 0.5)),
    ]


def test_the_triage_rules_orderings_cover_the_tables_scopes() -> None:
    """The rules keep their own orders of precedence, over exactly the table's rows."""
    assert set(GPU_PRECEDENCE) == {c for c, f in CATEGORIES.items() if f.in_one_gpu}
    assert {*UPSTREAM_CATEGORIES, *HOST_PART_CATEGORIES, C.NIC, C.HOST_MAINTENANCE} == {
        c for c, f in CATEGORIES.items() if f.scope is Scope.HOST
    }
