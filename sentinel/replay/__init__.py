"""Replay recorded failures through the real ingest API and triage on a virtual clock."""
