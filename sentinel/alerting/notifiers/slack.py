"""Slack incoming webhook: a Block Kit message the person on call can act on.

Limits honoured (Slack's Block Kit reference): header text 150 characters, section text
3,000, at most 10 section fields of 2,000 each, 10 context elements, 50 blocks a message.
The top-level ``text`` is the fallback shown in notifications.

Every text Slack reads is escaped as Slack asks (``&``, ``<``, ``>`` as entities), in mrkdwn,
plain_text and the fallback alike: exception text from a training log and label values are
not ours, and unescaped they could form ``<!channel>``, ``<@U…>`` or a disguised
``<http://…|click>``. Only the link to the incident is markup we write.
"""

from __future__ import annotations

import json
import re
from typing import Any

import httpx

from sentinel.alerting.notifiers.base import (
    Notification,
    NotifyResult,
    cause_line,
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
# The cause's line leads the message; the evidence block below still has its own 3,000.
CAUSE_SHOWN = 1500
WHERE_SHOWN = 300

_PREFIX = {
    "firing": ":rotating_light: FIRING",
    "repeat": ":rotating_light: STILL FIRING",
    "acknowledged": ":eyes: ACKNOWLEDGED",
    "resolved": ":white_check_mark: RESOLVED",
}


# An entity cut by truncation ("&am…") is harmless but garbled: cut before it instead.
_CUT_ENTITY = re.compile(r"&[a-z]{0,3}…$")


def escape(text: object) -> str:
    """Text Slack shows as it is: no mention, link or special command can form in it."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _fit(text: str, limit: int) -> str:
    """Escaped text truncated to ``limit`` characters without cutting an entity in two."""
    return _CUT_ENTITY.sub("…", truncate(text, limit))


def _mrkdwn(text: str, limit: int = SECTION_MAX) -> dict[str, Any]:
    """A mrkdwn object from text whose parts the caller escaped."""
    return {"type": "mrkdwn", "text": _fit(text, limit)}


def _code_block(lines: list[str], limit: int = SECTION_MAX) -> str:
    """Lines in a code block that, fences and the "more" note included, stays within limit."""
    fence = "```"
    kept: list[str] = []
    used = len(fence) * 2 + 2
    for i, line in enumerate(lines):
        line = escape(line.replace(fence, "'''"))
        note = f"\n… {len(lines) - i} more lines"
        cost = len(line) + 1
        if used + cost + len(note) > limit:
            room = limit - used - len(note) - 1
            if room > 40 and not kept:
                kept.append(_fit(line, room))
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
    title = f"{_PREFIX[group.kind]}: {escape(headline(group))}"
    url = group.incident_url(lead)
    link = escape(url) if url else None
    # Slack renders entities in plain_text too, so the header is escaped like the rest.
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _fit(title, HEADER_MAX)}}
    ]
    raw_summary = lead.annotations.get("summary") or lead.annotations.get("description")
    summary = escape(raw_summary) if raw_summary else None
    if group.kind == "acknowledged" and group.acked_by:
        summary = (
            f"Acknowledged by *{escape(group.acked_by)}*; "
            "no repeats until it resolves or fires again."
        )
    if summary:
        blocks.append({"type": "section", "text": _mrkdwn(summary)})
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
            "fields": [_mrkdwn(f"*{k}*\n{escape(v)}", FIELD_MAX) for k, v in facts[:FIELDS_MAX]],
        }
    )
    cause = cause_line(lead)
    if cause:
        where = f" ({_fit(escape(cause.where), WHERE_SHOWN)})" if cause.where else ""
        blocks.append(
            {
                "type": "section",
                "text": _mrkdwn(
                    f"*Cause, as printed*{where}\n"
                    + _code_block(cause.text.splitlines() or [cause.text], CAUSE_SHOWN)
                ),
            }
        )
    lines = evidence_lines(lead)
    if lines:
        title = "*Evidence*\n"
        code = _code_block(lines, SECTION_MAX - len(title))
        blocks.append({"type": "section", "text": _mrkdwn(title + code)})
    decision = lead.annotations.get("decision")
    if decision:
        blocks.append({"type": "section", "text": _mrkdwn(f"*Decision taken*\n{escape(decision)}")})
    others = [a for a in group.firing if a is not lead]
    if others:
        shown = [
            "• " + escape(", ".join(f"{k}={v}" for k, v in sorted(a.labels.items())))
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
                _mrkdwn(
                    f"Sentinel · group `{escape(group.group_key)}` · "
                    f"{group.at:%Y-%m-%d %H:%M:%S} UTC"
                )
            ],
        }
    )
    fallback = f"[{group.kind.upper()}] {escape(headline(group))}"
    if summary:
        fallback += f": {summary}"
    if link:
        fallback += f" {link}"
    return {"text": _fit(fallback, SECTION_MAX), "blocks": blocks[:BLOCKS_MAX]}


class SlackNotifier:
    name = "slack"

    def __init__(self, client: httpx.AsyncClient, webhook_url: str) -> None:
        self._client = client
        self._url = webhook_url

    async def notify(self, group: Notification) -> NotifyResult:
        body = json.dumps(build_message(group)).encode()
        return await post(self._client, self._url, body, {})
