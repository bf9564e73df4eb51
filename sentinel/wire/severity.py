"""How bad a fact is, one word for both sides: the agent labels what it ships with it, the
knowledge base, triage and alerting rank by it. The values are stored and sent unchanged.
"""

from __future__ import annotations

from enum import StrEnum
from typing import overload


class Severity(StrEnum):
    """A severity, its members in rising order: ``rank`` is a member's place in it."""

    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        """0 for info up to 3 for critical: compare severities by it."""
        return _RANK[self]

    @overload
    @classmethod
    def parse(cls, text: str | None) -> Severity | None: ...
    @overload
    @classmethod
    def parse(cls, text: str | None, default: Severity) -> Severity: ...
    @classmethod
    def parse(cls, text: str | None, default: Severity | None = None) -> Severity | None:
        """A label arriving from outside (an alert's, a stored record's) read as a severity,
        spelt exactly as a value; anything else is `default`."""
        try:
            return cls(text or "")
        except ValueError:
            return default


_RANK = {severity: rank for rank, severity in enumerate(Severity)}
