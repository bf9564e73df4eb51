"""Timelines where an NVSwitch or DCGM's health watch is the cause: a fatal SXid and the NVLink
XIDs it causes on its host's GPUs are one incident naming the switch, not a GPU; a DCGM health
failure then the job's hang is one incident on the GPU DCGM names."""

from __future__ import annotations

from builders import at, xid
from incidents.timeline import Timeline, hang, log

from sentinel.incidents.verdicts import verdict_of

# What the agent's kernel-log collector ships for the switch's line.
SXID_FATAL = (
    "nvidia-nvswitch3: SXid (PCI:0000:c8:00.0): 24007, Fatal, Link 44 sourcetrack timeout "
    "error (First)"
)
# ...and its DCGM collector for a health incident.
DCGM_DBE = (
    "dcgmi health: GPU 4: Memory system: Failure: Detected 2 volatile double-bit ECC error(s) "
    "in GPU 4. Drain the GPU and reset it or reboot the node."
)


async def test_a_fatal_sxid_and_the_nvlink_xids_it_causes_are_one_nvswitch_incident(
    timeline: Timeline,
) -> None:
    await timeline.at(5)
    await timeline.post(
        "h003",
        [log(SXID_FATAL, at(5), pattern="nvswitch_sxid_fatal", family="nvswitch",
             severity="critical")],
    )  # fmt: skip
    await timeline.at(6)
    xids = [xid(74, gpu=g, when=at(6)) for g in (1, 2, 5)]
    await timeline.post("h003", xids)
    await timeline.triage()
    await hang(timeline, 600, besides={"h003"})
    await timeline.triage(passes=2)
    [incident] = await timeline.incidents()
    assert (incident.category, incident.culprit_host) == ("io_expansion_board", "h003")
    assert incident.culprit_gpu is None, "an NVSwitch is not a GPU"
    verdict = verdict_of(incident)
    assert verdict.rule == "BlameNvSwitchOverTheGpusOnItsBaseboard"
    assert "NVSwitch 3 link 44" in verdict.reason
    assert incident.opened_at == at(5)
    dispositions = await timeline.dispositions()
    for hard in xids:
        assert dispositions[hard["id"]].incident_id == incident.id, "the XIDs are its symptoms"


async def test_a_dcgm_health_failure_then_a_hang_is_one_incident_on_that_gpu(
    timeline: Timeline,
) -> None:
    await timeline.at(5)
    await timeline.post(
        "h006",
        [log(DCGM_DBE, at(5), source="dcgm", pattern="dcgm_health_incident", family="dcgm",
             severity="critical", path="dcgmi health -c -j")],
    )  # fmt: skip
    await timeline.triage()
    await hang(timeline, 600, besides={"h006"})
    await timeline.triage(passes=2)
    [incident] = await timeline.incidents()
    assert (incident.category, incident.culprit_host) == ("gpu_hbm_memory", "h006")
    assert incident.culprit_gpu == "4"
    assert "DCGM_FR_VOLATILE_DBE_DETECTED" in verdict_of(incident).reason
