"""Incidents: the service side of triage — signals from stored events, correlation per job,
the lifecycle (open → mitigating → resolved), and the watchdogs that turn silence into signals."""
