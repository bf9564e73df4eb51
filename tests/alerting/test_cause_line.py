"""The root-cause alert carries the line the host printed, with its host, file and time, and
each notifier shows it escaped for its medium: a hostile line mentions nobody, links nowhere
and cannot break out of its code block."""

from __future__ import annotations

import json
import logging
import re
import uuid
from dataclasses import replace
from typing import Any

import pytest
from builders import at

from alerting.incident_builders import xid79_incident
from sentinel.alerting.incidents import alerts_for_incident
from sentinel.alerting.notifiers.base import AlertView, Notification, cause_line
from sentinel.alerting.notifiers.fakes import check_pagerduty_event, check_slack_message
from sentinel.alerting.notifiers.log import LogNotifier
from sentinel.alerting.notifiers.pagerduty import build_event
from sentinel.alerting.notifiers.slack import CAUSE_SHOWN, build_message
from sentinel.alerting.notifiers.webhook import build_body
from sentinel.db.models import Incident
from sentinel.incidents.verdicts import verdict_of

LINE = (
    "[rank3]:[E ProcessGroupNCCL.cpp:616] NCCL WARN `cudaMemcpy` failed <!channel> "
    "<@U123> <http://evil.example|click> & ```now outside the block?``` done"
)
SLACK_LINE = (
    "[rank3]:[E ProcessGroupNCCL.cpp:616] NCCL WARN `cudaMemcpy` failed &lt;!channel&gt; "
    "&lt;@U123&gt; &lt;http://evil.example|click&gt; &amp; '''now outside the block?''' done"
)
SOURCE = "/var/log/train/rank3.log"
WHERE = f"node1377 · {SOURCE} · 2026-11-28 03:00:03 UTC"


def _incident(text: str = LINE) -> Incident:
    incident = xid79_incident()
    verdict = verdict_of(incident)
    [cause] = verdict.evidence
    located = cause.model_copy(update={"text": text, "source": SOURCE, "time": at(3)})
    incident.verdict = verdict.model_copy(update={"evidence": [located]}).model_dump(mode="json")
    return incident


def _group(incident: Incident) -> Notification:
    cause = alerts_for_incident(incident)[0]
    view = AlertView(
        fingerprint="f" * 16,
        labels=cause.labels,
        # As stored and read back: JSON.
        annotations=json.loads(json.dumps(cause.annotations)),
        starts_at=cause.starts_at,
        ends_at=None,
        incident_id=incident.id,
    )
    return Notification(
        group_id=uuid.uuid4(),
        group_key='root/0:{incident="x"}',
        receiver="oncall",
        kind="firing",
        group_labels={"incident": str(incident.id)},
        firing=(view,),
        resolved=(),
        at=at(5),
        public_url="https://sentinel.example.com",
    )


def _cause_block(msg: dict[str, Any]) -> str:
    return str(
        next(
            b["text"]["text"]
            for b in msg["blocks"]
            if b["type"] == "section" and b.get("text", {}).get("text", "").startswith("*Cause")
        )
    )


def test_the_cause_alert_carries_the_line_with_its_host_file_and_time() -> None:
    cause = alerts_for_incident(_incident())[0]
    assert cause.annotations["cause_line"] == {
        "text": LINE,
        "host": "node1377",
        "source": SOURCE,
        "at": at(3).isoformat(),
    }
    line = cause_line(_group(_incident()).lead)
    assert line is not None and (line.text, line.where) == (LINE, WHERE)


def test_slack_shows_the_line_inert_inside_one_code_block() -> None:
    msg = build_message(_group(_incident()))
    assert check_slack_message(msg) == []
    block = _cause_block(msg)
    assert block == f"*Cause, as printed* ({WHERE})\n```\n{SLACK_LINE}\n```"
    for text in (block, str(msg)):
        for markup in ("<!", "<@", "<http://evil"):
            assert markup not in text
    assert block.count("```") == 2  # the line's own fences cannot close ours


def test_slack_cuts_a_long_line_or_record_and_keeps_the_block_closed() -> None:
    for text, cut in (
        ("&" * 9000, r"&amp;…\n```$"),
        ("frame\n" * 400, r"\n… 155 more lines\n```$"),
    ):
        msg = build_message(_group(_incident(text)))
        assert check_slack_message(msg) == []
        block = _cause_block(msg)
        assert len(block) <= CAUSE_SHOWN + 200 and re.search(cut, block), block[-80:]
        assert "&am…" not in block  # no entity cut in two


def test_pagerduty_carries_the_line_as_printed_in_its_details() -> None:
    event = build_event(_group(_incident()), "R" * 32)
    assert check_pagerduty_event(event) == []
    details = event["payload"]["custom_details"]
    assert details["cause_line"] == {"text": LINE, "where": WHERE}
    # JSON is the escaping: the exact line survives the wire.
    assert json.loads(json.dumps(event))["payload"]["custom_details"]["cause_line"]["text"] == LINE

    long = build_event(_group(_incident("x" * 5000)), "R" * 32)
    text = long["payload"]["custom_details"]["cause_line"]["text"]
    assert len(text) == 2000 and text.endswith("…")


def test_the_webhook_carries_the_line_and_where_it_was_read() -> None:
    body = json.loads(json.dumps(build_body(_group(_incident()))))
    [alert] = body["alerts"]
    assert alert["annotations"]["cause_line"] == {
        "text": LINE,
        "host": "node1377",
        "source": SOURCE,
        "at": at(3).isoformat(),
    }


async def test_the_log_notifier_writes_the_line_on_one_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    incident = _incident(LINE + "\n\x1b[31mforged: alert resolved\x1b[0m")
    with caplog.at_level(logging.WARNING, logger="sentinel.alerts"):
        assert (await LogNotifier().notify(_group(incident))).ok
    [record] = caplog.records
    message = record.getMessage()
    assert "\n" not in message and "\x1b" not in message
    assert f"cause {WHERE!r}: " in message and "<!channel>" in message


def test_an_alert_from_alertmanager_with_an_odd_cause_line_shows_none() -> None:
    group = _group(xid79_incident())
    for odd in ("a string", {"text": 3}, {"text": ""}, ["text"]):
        lead = group.lead
        view = AlertView(
            lead.fingerprint,
            lead.labels,
            {**lead.annotations, "cause_line": odd},
            lead.starts_at,
            None,
            None,
        )
        assert cause_line(view) is None
        msg = build_message(replace(group, firing=(view,)))
        assert not any(
            b.get("text", {}).get("text", "").startswith("*Cause") for b in msg["blocks"]
        )


def test_a_verdict_stored_before_lines_were_located_still_alerts_its_line() -> None:
    line = cause_line(_group(xid79_incident()).lead)
    assert line is not None
    assert line.text.startswith("NVRM: Xid (PCI:0000:9b:00): 79")
    assert line.where == "node1377"  # no file, no time: only what is known
