"""Timelines where a machine check, a memory error or a link fault is the cause and the job's
hang its symptom: one incident on the host (or the fabric), naming the part."""

from __future__ import annotations

from builders import at
from incidents.timeline import HOSTS, Timeline, hang, log

from sentinel.incidents.verdicts import verdict_of

DIMM = "CPU_SrcID#0_MC#1_Chan#0_DIMM#0"
# What the agent's rasdaemon collector ships for an mc_event row.
RAS_UE = (
    f"3 2026-01-01 00:00:05 +0000 1 Uncorrected error(s): memory read error at {DIMM} "
    "location: 0:1:0:-1, addr 8589934592, grain 6, syndrome 0  area:DRAM err_code:0001:0090"
)
# ...and its mcelog collector for one record.
MCELOG_UC = """Hardware event. This is not a software error.
MCE 0
CPU 13 BANK 7 TSC 2c2c2ee4b2c0e
MCG status:RIPV MCIP
MCi status:
Uncorrected error
Error enabled
MCA: MEMORY CONTROLLER RD_CHANNEL1_ERR
Transaction: Memory read error
STATUS bd800000000c0091 MCGSTATUS 5
Uncorrected DIMM memory error count exceeded threshold: 1 in 24h
Location SOCKET:1 CHANNEL:1 DIMM:0 [B2 CPU1_DIMM_B2]"""
IB_DOWN = (
    "/sys/class/infiniband/mlx5_3/ports/1: link down: state 4: ACTIVE -> 1: DOWN, "
    "phys_state 5: LinkUp -> 2: Polling, link_downed 0 -> 1"
)


async def test_an_uncorrected_dimm_error_then_a_hang_is_one_memory_incident(
    timeline: Timeline,
) -> None:
    await timeline.at(5)
    await timeline.post(
        "h003",
        [log(RAS_UE, at(5), source="rasdaemon", pattern="ras_mc_event_uncorrected",
             family="edac", severity="critical", path="/var/lib/rasdaemon/ras-mc_event.db")],
    )  # fmt: skip
    await timeline.triage()
    await hang(timeline, 600, besides={"h003"})
    await timeline.triage(passes=2)
    [incident] = await timeline.incidents()
    assert (incident.category, incident.culprit_host) == ("system_memory", "h003")
    verdict = verdict_of(incident)
    assert f"DIMM {DIMM}" in verdict.reason
    assert verdict.symptoms_total >= len(HOSTS) - 1, "the hang is the DIMM's consequence"
    assert incident.opened_at == at(5)


async def test_an_mcelog_uncorrected_error_on_a_dimm_names_the_dimm(timeline: Timeline) -> None:
    await timeline.at(5)
    await timeline.post(
        "h006",
        [log(MCELOG_UC, at(5), source="mcelog", pattern="mcelog_mca", family="mce",
             severity="error", path="/var/log/mcelog")],
    )  # fmt: skip
    await hang(timeline, 600, besides={"h006"})
    await timeline.triage(passes=2)
    [incident] = await timeline.incidents()
    assert (incident.category, incident.culprit_host) == ("system_memory", "h006")
    assert "DIMM B2 CPU1_DIMM_B2, CPU 13 bank 7" in verdict_of(incident).reason


async def test_one_host_losing_its_link_is_its_nic(timeline: Timeline) -> None:
    await timeline.at(5)
    await timeline.post(
        "h005",
        [log(IB_DOWN, at(5), source="infiniband", pattern="ib_sysfs_link_down", family="ib",
             severity="error", path="/sys/class/infiniband/mlx5_3/ports/1")],
    )  # fmt: skip
    await hang(timeline, 600, besides={"h005"})
    await timeline.triage(passes=2)
    [incident] = await timeline.incidents()
    assert (incident.category, incident.culprit_host) == ("nic", "h005")
    assert "port mlx5_3/1" in verdict_of(incident).reason


async def test_links_down_on_several_hosts_at_once_are_the_fabric(timeline: Timeline) -> None:
    await timeline.at(5)
    for host in ("h005", "h006", "h007"):
        await timeline.post(
            host,
            [log(IB_DOWN, at(5), source="infiniband", pattern="ib_sysfs_link_down", family="ib",
                 severity="error")],
        )  # fmt: skip
    await hang(timeline, 600, besides={"h005", "h006", "h007"})
    await timeline.triage(passes=2)
    [incident] = await timeline.incidents()
    assert incident.category == "network_switch_cable"
