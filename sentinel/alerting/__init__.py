"""Alerts: route, group, inhibit, silence, dedup and send (Alertmanager's shape), exactly once.

Entry points: ``push_alerts`` (service), ``alerts_for_incident`` (incidents),
``Dispatcher.flush`` / ``flush_step`` (dispatcher, wiring), ``AlertingSettings`` (settings).
See docs/alerting.md.
"""
