"""A notifier that writes one log line per notification (planned work, or no credentials)."""

from __future__ import annotations

import logging

from sentinel.alerting.notifiers.base import (
    Notification,
    NotifyResult,
    cause_line,
    headline,
    truncate,
)

log = logging.getLogger("sentinel.alerts")
CAUSE_SHOWN = 300


class LogNotifier:
    name = "log"

    async def notify(self, group: Notification) -> NotifyResult:
        cause = cause_line(group.lead)
        log.warning(
            "alert %s [%s] %s: %d firing, %d resolved, %d muted (group %s)%s",
            group.receiver,
            group.kind,
            headline(group),
            len(group.firing),
            len(group.resolved),
            group.muted,
            group.group_key,
            # repr: one log line whatever the host printed (newlines, escape sequences).
            f"; cause {cause.where!r}: {truncate(cause.text, CAUSE_SHOWN)!r}" if cause else "",
        )
        return NotifyResult.success()
