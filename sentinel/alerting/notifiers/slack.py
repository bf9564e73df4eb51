"""Slack incoming webhook: a Block Kit message the person on call can act on.

Limits honoured (Slack's Block Kit reference): header text 150 characters, section text
3,000, at most 10 section fields of 2,000 each, 10 context elements, 50 blocks a message.
The top-level ``text`` is the fallback shown in notifications.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from sentinel.alerting.notifiers.base import (
    Notification,
    NotifyResult,
    evidence_lines,
    headline,
    truncate,
)
from sentinel.alerting.notifiers.http import post

HEADER_MAX = 150
SECTION_MAX = 3000
FIELD_MAX = 2000
FIELDS_MAX = 10
BLOCKS_MAX = 50
OTHERS_SHOWN = 10

_PREFIX = {
    "firing": ":rotating_light: FIRING",
    "repeat": ":rotating_light: STILL FIRING",
    "acknowledged": ":eyes: ACKNOWLEDGED",
    "resolved": ":white_check_mark: RESOLVED",
}


def _mrkdwn(text: str, limit: int = SECTION_MAX) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": truncate(text, limit)}


def _code_block(lines: list[str], limit: int = SECTION_MAX) -> str:
    """Lines in a code block that, fences and the "more" note included, stays within limit."""
    fence = "```"
    kept: list[str] = []
    used = len(fence) * 2 + 2
    for i, line in enumerate(lines):
        line = line.replace(fence, "'''")
        note = f"\n… {len(lines) - i} more lines"
        cost = len(line) + 1
        if used + cost + len(note) > limit:
            room = limit - used - len(note) - 1
            if room > 40 and not kept:
                kept.append(truncate(line, room))
                i += 1
            if i < len(lines):
                kept.append(f"… {len(lines) - i} more lines")
            break
        kept.append(line)
        used += cost
    return fence + "\n" + "\n".join(kept) + "\n" + fence


def build_message(group: Notification) -> dict[str, Any]:
    lead = group.lead
    labels = lead.labels
    title = f"{_PREFIX[group.kind]}: {headline(group)}"
    link = group.incident_url(lead)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": truncate(title, HEADER_MAX)}}
    ]
    summary = lead.annotations.get("summary") or lead.annotations.get("description")
    if group.kind == "acknowledged" and group.acked_by:
        summary = (
            f"Acknowledged by *{group.acked_by}*; no repeats until it resolves or fires again."
        )
    if summary:
        blocks.append({"type": "section", "text": _mrkdwn(str(summary))})
    culprit = labels.get("host", "—") + (f" / GPU {labels['gpu']}" if labels.get("gpu") else "")
    facts = [
        ("Category", labels.get("category") or labels.get("alertname", "—")),
        ("Severity", labels.get("severity", "—")),
        ("Culprit", culprit),
        ("Job", labels.get("job", "—")),
        ("Cluster", labels.get("cluster", "—")),
        (
            "Alerts",
            f"{len(group.firing)} firing, {len(group.resolved)} resolved"
            + (f", {group.muted} muted" if group.muted else ""),
        ),
    ]
    blocks.append(
        {
            "type": "section",
            "fields": [_mrkdwn(f"*{k}*\n{v}", FIELD_MAX) for k, v in facts[:FIELDS_MAX]],
        }
    )
    lines = evidence_lines(lead)
    if lines:
        title = "*Evidence*\n"
        code = _code_block(lines, SECTION_MAX - len(title))
        blocks.append({"type": "section", "text": _mrkdwn(title + code)})
    decision = lead.annotations.get("decision")
    if decision:
        blocks.append({"type": "section", "text": _mrkdwn(f"*Decision taken*\n{decision}")})
    others = [a for a in group.firing if a is not lead]
    if others:
        shown = [
            "• " + ", ".join(f"{k}={v}" for k, v in sorted(a.labels.items()))
            for a in others[:OTHERS_SHOWN]
        ]
        if len(others) > OTHERS_SHOWN:
            shown.append(f"… and {len(others) - OTHERS_SHOWN} more")
        blocks.append({"type": "section", "text": _mrkdwn("*Also firing*\n" + "\n".join(shown))})
    if link:
        blocks.append(
            {"type": "section", "text": _mrkdwn(f"<{link}|Open the incident in Sentinel>")}
        )
    blocks.append(
        {
            "type": "context",
            "elements": [
                _mrkdwn(f"Sentinel · group `{group.group_key}` · {group.at:%Y-%m-%d %H:%M:%S} UTC")
            ],
        }
    )
    fallback = f"[{group.kind.upper()}] {headline(group)}"
    if summary:
        fallback += f": {summary}"
    if link:
        fallback += f" {link}"
    return {"text": truncate(fallback, SECTION_MAX), "blocks": blocks[:BLOCKS_MAX]}


class SlackNotifier:
    name = "slack"

    def __init__(self, client: httpx.AsyncClient, webhook_url: str) -> None:
        self._client = client
        self._url = webhook_url

    async def notify(self, group: Notification) -> NotifyResult:
        body = json.dumps(build_message(group)).encode()
        return await post(self._client, self._url, body, {})
