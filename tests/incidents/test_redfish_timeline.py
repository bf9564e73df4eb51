"""A timeline where the BMC reports over Redfish that a power supply failed, and the host's GPUs
fall off the bus and the job hangs after it: one power_supply incident on that host."""

from __future__ import annotations

import json

from builders import at, xid
from incidents.timeline import HOSTS, WATCHDOG, Timeline, log

from sentinel.incidents.verdicts import verdict_of
from sentinel.triage.classify import classify_text

SEL = "/redfish/v1/Managers/BMC/LogServices/SEL/Entries"
PSU = "/redfish/v1/Chassis/1U/Power#/PowerSupplies/1"
# What the agent's redfish collector ships: the SEL entry and the supply's status, each as
# the BMC serves it.
PSU_ENTRY = json.dumps(
    {
        "@odata.type": "#LogEntry.v1_15_0.LogEntry",
        "@odata.id": f"{SEL}/3",
        "Id": "3",
        "Name": "Log Entry 3",
        "EntryType": "SEL",
        "Severity": "Critical",
        "Created": "2026-01-01T00:00:05+00:00",
        "SensorType": "Power Supply",
        "Message": "Power Supply PSU1 Failure detected - Asserted",
        "MessageId": "OpenBMC.0.1.SELEntryAdded",
    }
)
PSU_STATUS = json.dumps(
    {
        "@odata.id": PSU,
        "MemberId": "1",
        "Name": "Power Supply Bay 2",
        "Status": {"State": "Enabled", "Health": "Critical"},
    }
)


def test_the_records_read_as_the_knowledge_says() -> None:
    assert classify_text(PSU_ENTRY).category.value == "power_supply"
    assert classify_text(PSU_STATUS).category.value == "power_supply"


async def test_a_failed_power_supply_then_its_gpus_and_the_hang_is_one_power_incident(
    timeline: Timeline,
) -> None:
    await timeline.at(5)
    await timeline.post(
        "h004",
        [log(PSU_ENTRY, at(5), source="redfish", pattern="psu_failure", family="power",
             severity="error", path=SEL),
         log(PSU_STATUS, at(5), source="redfish", pattern="redfish_psu_health", family="power",
             severity="error", path=PSU)],
    )  # fmt: skip
    await timeline.at(7)
    await timeline.post("h004", [xid(79, gpu=2, when=at(7)), xid(79, gpu=3, when=at(7))])
    await timeline.triage()
    await timeline.at(600)
    for n, host in enumerate(HOSTS):
        if host != "h004":
            message = WATCHDOG.format(rank=n * 8)
            await timeline.post(host, [log(message, at(600), source="application", rank=n * 8)])
    await timeline.triage(passes=2)
    [incident] = await timeline.incidents()
    assert (incident.category, incident.culprit_host) == ("power_supply", "h004")
    verdict = verdict_of(incident)
    assert verdict.rule == "BlamePowerOrChassisOverWhatItTookDown"
    assert verdict.symptoms_total >= len(HOSTS) - 1 + 2, "the GPUs and the hang follow the PSU"
    assert incident.opened_at == at(5)
