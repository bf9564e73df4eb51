"""A timeline where the BMC's SEL, read over IPMI, records a power supply failure, and the job
hangs after it: one power_supply incident on that host; when the supply takes GPUs off the
bus first, they are its symptoms too."""

from __future__ import annotations

from builders import at, xid
from incidents.timeline import HOSTS, Timeline, hang, log

from sentinel.incidents.verdicts import verdict_of
from sentinel.triage.classify import classify_text

# What the agent's IPMI collector ships: the SEL entries as `ipmitool sel elist` prints them.
PSU_FAILED = (
    "  1a | 01/01/2026 | 00:00:05 | Power Supply PS1 Status | Failure detected () | Asserted"
)
REDUNDANCY_LOST = (
    "  1b | 01/01/2026 | 00:00:05 | Power Unit Pwr Unit Redund | Redundancy Lost | Asserted"
)
PATH = "ipmitool -I open sel elist"


def _sel(message: str, seconds: float) -> dict[str, object]:
    return log(message, at(seconds), source="ipmi", pattern="psu_failure", family="power",
               severity="error", path=PATH)  # fmt: skip


def test_the_entries_read_as_the_knowledge_says() -> None:
    assert classify_text(PSU_FAILED).category.value == "power_supply"
    assert classify_text(REDUNDANCY_LOST).category.value == "power_supply"


async def test_a_sel_power_supply_failure_then_the_hang_is_one_power_incident(
    timeline: Timeline,
) -> None:
    await timeline.at(5)
    await timeline.post("h004", [_sel(PSU_FAILED, 5), _sel(REDUNDANCY_LOST, 5)])
    await timeline.triage()
    await hang(timeline, 600, besides={"h004"})
    await timeline.triage(passes=2)
    [incident] = await timeline.incidents()
    assert (incident.category, incident.culprit_host) == ("power_supply", "h004")
    verdict = verdict_of(incident)
    assert verdict.symptoms_total >= len(HOSTS) - 1, "the hang follows the power supply"
    assert incident.opened_at == at(5)


async def test_the_gpus_a_failed_supply_takes_off_the_bus_are_its_symptoms(
    timeline: Timeline,
) -> None:
    await timeline.at(5)
    await timeline.post("h004", [_sel(PSU_FAILED, 5)])
    await timeline.at(7)
    await timeline.post("h004", [xid(79, gpu=g, when=at(7)) for g in range(4)])
    await timeline.triage()
    await hang(timeline, 600, besides={"h004"})
    await timeline.triage(passes=2)
    [incident] = await timeline.incidents()
    assert (incident.category, incident.culprit_host) == ("power_supply", "h004")
    verdict = verdict_of(incident)
    assert verdict.rule == "BlamePowerOrChassisOverWhatItTookDown"
    assert verdict.symptoms_total >= len(HOSTS) - 1 + 4
