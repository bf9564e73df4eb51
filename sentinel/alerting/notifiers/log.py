"""A notifier that writes one log line per notification (planned work, or no credentials)."""

from __future__ import annotations

import logging

from sentinel.alerting.notifiers.base import Notification, NotifyResult, headline

log = logging.getLogger("sentinel.alerts")


class LogNotifier:
    name = "log"

    async def notify(self, group: Notification) -> NotifyResult:
        log.warning(
            "alert %s [%s] %s: %d firing, %d resolved, %d muted (group %s)",
            group.receiver,
            group.kind,
            headline(group),
            len(group.firing),
            len(group.resolved),
            group.muted,
            group.group_key,
        )
        return NotifyResult.success()
