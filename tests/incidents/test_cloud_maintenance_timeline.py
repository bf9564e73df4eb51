"""A timeline where the cloud announced maintenance of one instance (what the agent's cloud
collector ships from the metadata service) and the job then hangs: one planned incident on
that host, the hang its consequence, not a fault to exclude the host for."""

from __future__ import annotations

from builders import at
from incidents.timeline import HOSTS, Timeline, hang, log

from sentinel.incidents.verdicts import verdict_of
from sentinel_agent.collectors.cloud import aws_events, gcp_events

AWS_EVENT = """[{"NotBefore": "01 Jan 2026 00:05:00 GMT", "Code": "system-reboot",
"Description": "scheduled reboot", "EventId": "instance-event-0d59937288b749b32",
"NotAfter": "01 Jan 2026 00:20:00 GMT", "State": "active"}]"""


IMDS = "http://169.254.169.254/latest/meta-data/events/maintenance/scheduled"


def _announced(line: str, seconds: float) -> dict[str, object]:
    return log(line, at(seconds), source="cloud", pattern="cloud_scheduled_maintenance",
               family="maintenance", severity="info", path=IMDS)  # fmt: skip


async def test_an_announced_cloud_reboot_then_the_hang_is_planned(timeline: Timeline) -> None:
    [event] = aws_events(AWS_EVENT)
    await timeline.at(5)
    await timeline.post("h005", [_announced(event.line, 5)])
    await timeline.triage()
    await hang(timeline, 300, besides={"h005"})
    await timeline.triage(passes=2)
    [incident] = await timeline.incidents()
    assert (incident.category, incident.culprit_host) == ("planned", "h005")
    assert verdict_of(incident).symptoms_total >= len(HOSTS) - 1


async def test_a_gcp_termination_notice_alone_is_planned_work_on_that_host(
    timeline: Timeline,
) -> None:
    [event] = gcp_events("TERMINATE_ON_HOST_MAINTENANCE")
    await timeline.at(5)
    await timeline.post("h002", [_announced(event.line, 5)])
    await hang(timeline, 300, besides={"h002"})
    await timeline.triage(passes=2)
    [incident] = await timeline.incidents()
    assert (incident.category, incident.culprit_host) == ("planned", "h002")
