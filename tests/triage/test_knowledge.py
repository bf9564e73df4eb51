"""The knowledge files load, cover what triage needs, and refuse bad entries by name."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from sentinel.knowledge import (
    FAMILIES,
    Knowledge,
    KnowledgeError,
    load_pattern_catalog,
    load_xid_catalog,
)
from sentinel.knowledge.taxonomy import LLAMA3_TABLE5, Category, llama3_share


def test_packaged_knowledge_loads(knowledge: Knowledge) -> None:
    assert len(knowledge.xids.xids) >= 40
    assert len(knowledge.patterns.patterns) >= 80


@pytest.mark.parametrize(
    ("code", "category", "memory"),
    [
        (79, Category.FAULTY_GPU, "none"),
        (48, Category.GPU_HBM_MEMORY, "hbm"),
        (63, Category.GPU_HBM_MEMORY, "hbm"),
        (64, Category.GPU_HBM_MEMORY, "hbm"),
        (92, Category.GPU_HBM_MEMORY, "hbm"),
        (140, Category.GPU_HBM_MEMORY, "hbm"),
        (94, Category.GPU_SRAM_MEMORY, "sram"),
        (95, Category.GPU_SRAM_MEMORY, "sram"),
        (119, Category.GPU_SYSTEM_PROCESSOR, "none"),
        (120, Category.GPU_SYSTEM_PROCESSOR, "none"),
        (13, Category.SOFTWARE_BUG, "none"),
        (31, Category.SOFTWARE_BUG, "none"),
        (43, Category.SOFTWARE_BUG, "none"),
        (61, Category.FAULTY_GPU, "none"),
        (62, Category.FAULTY_GPU, "none"),
        (74, Category.FAULTY_GPU, "none"),
    ],
)
def test_xid_catalog_maps_the_well_known_xids(
    knowledge: Knowledge, code: int, category: Category, memory: str
) -> None:
    entry = knowledge.xids.get(code)
    assert entry is not None
    assert entry.category == category
    assert entry.memory == memory


def test_xid_catalog_uses_nvidia_actions(knowledge: Knowledge) -> None:
    assert knowledge.xids.by_code[79].action == "RESTART_BM"
    assert knowledge.xids.by_code[48].action == "WORKFLOW_XID_48"
    assert knowledge.xids.by_code[95].action == "RESET_GPU"
    assert knowledge.xids.by_code[13].cause == "application"
    assert knowledge.xids.by_code[45].secondary
    assert knowledge.xids.by_code[154].secondary


def test_every_pattern_family_has_a_pattern(knowledge: Knowledge) -> None:
    used = {p.family for p in knowledge.patterns.patterns}
    assert used == FAMILIES


def test_every_pattern_carries_a_real_example(knowledge: Knowledge) -> None:
    missing = [p.name for p in knowledge.patterns.patterns if not p.examples]
    assert missing == []


def test_llama3_table5_shares_cover_the_taxonomy() -> None:
    assert sum(count for count, _ in LLAMA3_TABLE5.values()) == 419
    assert llama3_share(Category.FAULTY_GPU) == 30.1
    assert llama3_share(Category.PLANNED) is None
    assert {c.value for c in Category} >= {
        "faulty_gpu",
        "gpu_hbm_memory",
        "software_bug",
        "network_switch_cable",
        "host_maintenance",
        "gpu_sram_memory",
        "gpu_system_processor",
        "nic",
        "nccl_watchdog_timeout",
        "silent_data_corruption",
        "gpu_thermal",
        "ssd",
        "power_supply",
        "server_chassis",
        "io_expansion_board",
        "dependency",
        "cpu",
        "system_memory",
        "planned",
        "unknown",
    }
    assert len(Category) == 20


GOOD_PATTERN = """
patterns:
  - name: good_one
    family: nccl
    regex: 'NCCL WARN (?P<peer>\\S+) failed'
    role: symptom
    severity: error
    examples: ['NCCL WARN 10.0.0.1 failed']
"""


@pytest.mark.parametrize(
    ("entry", "complaint"),
    [
        ("regex: 'Xid ((unclosed'", "does not compile"),
        ("category: not_a_category", "category"),
        ("family: astrology", "unknown family"),
        ("regex: '(?P<colour>red)'", "unknown named groups"),
        ("examples: ['this line does not match']", "example does not match"),
        ("role: culprit", "role"),
    ],
)
def test_bad_pattern_is_refused_naming_the_entry(
    write_yaml: Callable[[str, str], Path], entry: str, complaint: str
) -> None:
    key = entry.split(":", 1)[0]
    lines = [line for line in GOOD_PATTERN.splitlines() if not line.strip().startswith(f"{key}:")]
    lines.insert(3, f"    {entry}")
    path = write_yaml("patterns.yaml", "\n".join(lines).replace("good_one", "bad_one"))
    with pytest.raises(KnowledgeError, match="bad_one") as caught:
        load_pattern_catalog(path)
    assert complaint in str(caught.value)


def test_good_pattern_file_loads(write_yaml: Callable[[str, str], Path]) -> None:
    catalog = load_pattern_catalog(write_yaml("patterns.yaml", GOOD_PATTERN))
    assert catalog.by_name["good_one"].compiled.search("NCCL WARN x failed")


def test_duplicate_pattern_names_are_refused(write_yaml: Callable[[str, str], Path]) -> None:
    body = GOOD_PATTERN + GOOD_PATTERN.split("patterns:\n", 1)[1]
    with pytest.raises(KnowledgeError, match="duplicate pattern names"):
        load_pattern_catalog(write_yaml("patterns.yaml", body))


@pytest.mark.parametrize(
    ("yaml_text", "complaint"),
    [
        (
            "xids:\n  - {code: 79, mnemonic: X, meaning: m, action: REBOOT_IT, cause: hardware, "
            "category: faulty_gpu, severity: critical}",
            "code=79",
        ),
        (
            "xids:\n  - {code: 48, mnemonic: X, meaning: m, action: RESET_GPU, cause: hardware, "
            "category: gpu_dram, severity: critical}",
            "code=48",
        ),
        (
            "xids:\n  - {code: 5, mnemonic: X, meaning: m, action: RESET_GPU, cause: cosmic, "
            "category: faulty_gpu, severity: critical}",
            "code=5",
        ),
        ("not a catalog", "expected a mapping"),
        ("xids: [\n", "not valid YAML"),
    ],
)
def test_bad_xid_catalog_is_refused(
    write_yaml: Callable[[str, str], Path], yaml_text: str, complaint: str
) -> None:
    with pytest.raises(KnowledgeError, match=complaint):
        load_xid_catalog(write_yaml("xid.yaml", yaml_text))


def test_missing_file_is_a_knowledge_error(tmp_path: Path) -> None:
    with pytest.raises(KnowledgeError, match="cannot read"):
        load_xid_catalog(tmp_path / "absent.yaml")
