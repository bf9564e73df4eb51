"""Remediation: turn an incident into one decision with its reason, and carry it out once."""
