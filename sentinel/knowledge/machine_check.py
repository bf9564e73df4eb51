"""How an mcelog record reads over its lines: which CPU and bank, and how bad the error was.

mcelog prints a machine check over a dozen lines; the `MCA:` line says what failed (the
`mcelog_mca` pattern), the others where (`CPU 13 BANK 1`) and whether it was corrected
(`Uncorrected error`, `Processor context corrupt`). Shared by the agent's mcelog collector and
triage, so that both give the record the same severity.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

from sentinel.knowledge import SEVERITY_RANK, Severity

MCELOG_PATTERN: Final = "mcelog_mca"
_START: Final = re.compile(r"^(?:Hardware event\. This is not a software error\.|MCE \d+)\s*$")
_BANK: Final = re.compile(r"^CPU (?P<cpu>\d+) BANK (?P<bank>\d+)\b")
_UNCORRECTED: Final = "Uncorrected error"
_CONTEXT_CORRUPT: Final = "Processor context corrupt"


def starts_record(body: str) -> bool:
    """Whether a line (its body under the log prefixes) opens a new mcelog record."""
    return _START.match(body.strip()) is not None


@dataclass
class McelogRecord:
    """What the lines of one mcelog record said so far."""

    cpu: str | None = None
    bank: str | None = None
    uncorrected: bool = False
    context_corrupt: bool = False
    # Whether a line other than the record's opening ones was read.
    _begun: bool = field(default=False, repr=False)

    def read(self, body: str) -> McelogRecord:
        """This record having read `body`, or a new one when `body` starts the next record."""
        text = body.strip()
        if _START.match(text):
            # "Hardware event..." is followed by "MCE 0": both open the same record.
            return McelogRecord() if self._begun else self
        self._begun = True
        bank = _BANK.match(text)
        if bank:
            self.cpu, self.bank = bank.group("cpu"), bank.group("bank")
        elif text == _UNCORRECTED:
            self.uncorrected = True
        elif text == _CONTEXT_CORRUPT:
            self.context_corrupt = True
        return self

    def severity(self, matched: Severity) -> Severity:
        """The MCA line's severity in this record: an uncorrected error is an error, one that
        corrupted the processor's context critical (the kernel panics on it)."""
        raised: Severity = (
            "critical" if self.context_corrupt else "error" if self.uncorrected else matched
        )
        return raised if SEVERITY_RANK[raised] > SEVERITY_RANK[matched] else matched

    def where(self) -> dict[str, str]:
        """The CPU and bank, as the pattern groups `cpu` and `bank` would name them."""
        return {k: v for k, v in (("cpu", self.cpu), ("bank", self.bank)) if v is not None}
