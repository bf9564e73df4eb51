"""Integrations behind one protocol: ``async def notify(group) -> NotifyResult``."""

from sentinel.alerting.notifiers.base import AlertView, Notification, Notifier, NotifyResult

__all__ = ["AlertView", "Notification", "Notifier", "NotifyResult"]
