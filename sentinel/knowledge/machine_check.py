"""How an mcelog record reads over its lines: which CPU, bank and DIMM, and how bad it was.

mcelog prints a machine check over a dozen lines; the `MCA:` line says what failed (the
`mcelog_mca` pattern), the others where (`CPU 13 BANK 1`) and whether it was corrected
(`Uncorrected error`, `Processor context corrupt`). A memory error that crosses one of its
thresholds adds a line saying so (`mcelog_dimm_*_threshold`) and the DIMM's location
(`Location SOCKET:0 CHANNEL:1 DIMM:0 [A1 DIMM_A1]`). Shared by the agent's mcelog collector
and triage, so that both read the record alike.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

from sentinel.wire.severity import Severity

# The patterns whose signal the rest of its record completes.
MCELOG_PATTERNS: Final = frozenset(
    {"mcelog_mca", "mcelog_dimm_uncorrected_threshold", "mcelog_dimm_corrected_threshold"}
)
_START: Final = re.compile(r"^(?:Hardware event\. This is not a software error\.|MCE \d+)\s*$")
_BANK: Final = re.compile(r"^CPU (?P<cpu>\d+) BANK (?P<bank>\d+)\b")
_UNCORRECTED: Final = "Uncorrected error"
_CONTEXT_CORRUPT: Final = "Processor context corrupt"
_LOCATION: Final = re.compile(
    r"^Location SOCKET:(?P<socket>\d+) CHANNEL:(?P<channel>\S+) DIMM:(?P<dimm>\S+)"
    r" \[(?P<name>[^\]]*)\]"
)


def starts_record(body: str) -> bool:
    """Whether a line (its body under the log prefixes) opens a new mcelog record."""
    return _START.match(body.strip()) is not None


@dataclass
class McelogRecord:
    """What the lines of one mcelog record said so far."""

    cpu: str | None = None
    bank: str | None = None
    dimm: str | None = None
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
        location = _LOCATION.match(text)
        if bank:
            self.cpu, self.bank = bank.group("cpu"), bank.group("bank")
        elif location:
            self.dimm = _dimm(location)
        elif text == _UNCORRECTED:
            self.uncorrected = True
        elif text == _CONTEXT_CORRUPT:
            self.context_corrupt = True
        return self

    def severity(self, matched: Severity) -> Severity:
        """The MCA line's severity in this record: an uncorrected error is an error, one that
        corrupted the processor's context critical (the kernel panics on it)."""
        raised = (
            Severity.CRITICAL
            if self.context_corrupt
            else Severity.ERROR
            if self.uncorrected
            else matched
        )
        return raised if raised.rank > matched.rank else matched

    def where(self) -> dict[str, str]:
        """The CPU, bank and DIMM, as the pattern groups `cpu`, `bank`, `dimm` name them."""
        found = (("cpu", self.cpu), ("bank", self.bank), ("dimm", self.dimm))
        return {k: v for k, v in found if v is not None}


def _dimm(location: re.Match[str]) -> str | None:
    """The DIMM's name from SMBIOS ("A1 DIMM_A1"), else its socket, channel and slot when
    mcelog knows them (on recent Xeons it often does not: "CHANNEL:? DIMM:?")."""
    if location.group("name").strip():
        return location.group("name").strip()
    if "?" in (location.group("channel"), location.group("dimm")):
        return None
    return (
        f"SOCKET:{location.group('socket')} CHANNEL:{location.group('channel')} "
        f"DIMM:{location.group('dimm')}"
    )
