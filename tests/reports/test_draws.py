"""Simulated faults drawn as real-format events and weighed by the real triage."""

from __future__ import annotations

import pytest

from sentinel.reports import draws
from sentinel.triage.taxonomy import CATEGORIES, LLAMA3_TABLE5, Category

HOSTS = 32  # small: the same events as at 2,048 hosts, fewer peers


def test_every_table5_category_is_drawn_and_its_shares_add_up() -> None:
    assert set(draws.VARIANTS) == set(LLAMA3_TABLE5)
    for category, variants in draws.VARIANTS.items():
        assert sum(v.share for v in variants) == pytest.approx(1.0), category
        assert all(v.culprit == CATEGORIES[category].host_must_leave for v in variants), category


def test_a_draw_is_stored_events_in_the_wire_format() -> None:
    scene = draws.Scene(HOSTS, culprit=9, gpu=3)
    draws.VARIANTS[Category.FAULTY_GPU][0].build(scene)
    kinds = {e.kind for e in scene.events}
    assert {"log", "xid", "heartbeat_stall"} <= kinds
    xid = next(e for e in scene.events if e.kind == "xid")
    assert xid.host_id == "gpu-host-0009" and xid.payload["xid"] == 79
    # The peers' symptom: every other host's NCCL watchdog timeout.
    timeouts = [e for e in scene.events if "Watchdog caught collective" in str(e.payload)]
    assert len(timeouts) == HOSTS - 1


@pytest.mark.parametrize(
    ("category", "variant"),
    [
        (Category.FAULTY_GPU, "XID 79 (log and NVML)"),
        (Category.GPU_HBM_MEMORY, "XID 64, remap failure"),
        (Category.HOST_MAINTENANCE, "host goes silent"),
        (Category.POWER_SUPPLY, "power brake on 8 GPUs + PSU SEL"),
        (Category.SYSTEM_MEMORY, "EDAC UE"),
    ],
)
def test_a_host_fault_with_its_own_evidence_names_its_host(
    category: Category, variant: str
) -> None:
    chosen = next(v for v in draws.VARIANTS[category] if v.name == variant)
    weighed = draws.weigh(chosen, HOSTS, culprit=9, gpu=3)
    assert weighed.category == category
    assert weighed.names_culprit()


def test_a_hang_where_nothing_points_names_no_host() -> None:
    chosen = next(v for v in draws.VARIANTS[Category.SSD] if v.name.startswith("hang: nothing"))
    weighed = draws.weigh(chosen, HOSTS, culprit=9, gpu=3)
    assert weighed.culprit is None and weighed.category != Category.SSD


def test_a_job_wide_bug_names_no_host() -> None:
    chosen = draws.VARIANTS[Category.SOFTWARE_BUG][0]
    weighed = draws.weigh(chosen, HOSTS, culprit=9, gpu=3)
    assert weighed.category == Category.SOFTWARE_BUG and weighed.culprit is None


@pytest.mark.parametrize("category", sorted(draws.PRECURSORS))
def test_a_precursor_names_its_host_while_the_job_trains(category: Category) -> None:
    weighed = draws.weigh_precursor(category, HOSTS, culprit=9, gpu=3)
    assert weighed is not None
    assert CATEGORIES[weighed.category].host_must_leave and weighed.names_culprit()
    assert draws.weigh_precursor(Category.CPU, HOSTS, culprit=9, gpu=3) is None


def test_a_flapped_link_is_read_as_the_service_reads_it() -> None:
    """The agent's 'link flapped' report names the NIC's host and says link_flapped, which
    lets the policy restart in place; a link that stays down does not."""
    nic = {v.name: v for v in draws.VARIANTS[Category.NIC]}
    flap, down = (
        draws.weigh(nic[name], HOSTS, culprit=9, gpu=3)
        for name in (
            "IB port flapped, ACTIVE again (agent's sysfs poll)",
            "mlx5 cable unplugged, link down",
        )
    )
    assert flap.category == Category.NIC and flap.names_culprit() and flap.link_flapped
    assert down.category == Category.NIC and down.names_culprit() and not down.link_flapped
