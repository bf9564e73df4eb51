"""One GPU, one identity: the index, PCI bus id, UUID and serial NVML reports are names of the
same board, whichever source (NVML, the kernel log, DCGM, the BMC) names it by which.

The PCI address has one spelling everywhere, NVML's (``00000000:3B:00.0``): it is what NVML
and ``nvidia-smi`` print and what agents send in ``pci_bus_id``; the kernel's ``0000:3b:00``
and ``PCI:0000:3b:00`` and lspci's ``3b:00.0`` are read into it. Here, in the wire package,
because the agent and the service both need it and the agent may import only the contract.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

# An address with its domain (4 to 8 hex digits; the function optional, as the kernel's XID
# lines omit it), or lspci's short form without the domain, which always has the function.
_PCI: Final = re.compile(
    r"^(?:PCI:)?(?:(?:(?P<domain>[0-9A-Fa-f]{4,8}):)?"
    r"(?P<bus>[0-9A-Fa-f]{2}):(?P<dev>[0-9A-Fa-f]{2})\.(?P<fn>[0-7])"
    r"|(?P<domain2>[0-9A-Fa-f]{4,8}):(?P<bus2>[0-9A-Fa-f]{2}):(?P<dev2>[0-9A-Fa-f]{2}))$"
)


def normalize_pci(text: str) -> str:
    """NVML's spelling of a PCI address (``00000000:3B:00.0``); text that is no PCI address
    (a GPU index, a UUID) comes back stripped, unchanged otherwise."""
    raw = text.strip()
    match = _PCI.match(raw)
    if not match:
        return raw
    if match.group("bus") is not None:
        domain, bus, dev, fn = match.group("domain", "bus", "dev", "fn")
    else:
        domain, bus, dev = match.group("domain2", "bus2", "dev2")
        fn = "0"
    return f"{int(domain or '0', 16):08X}:{bus.upper()}:{dev.upper()}.{fn}"


# An address within a line (the function required: a time such as 12:30:05 is no address).
_PCI_IN_TEXT: Final = re.compile(
    r"(?<![0-9A-Fa-f:])(?:[0-9A-Fa-f]{4,8}:)?[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-7](?![0-9A-Fa-f])"
)


def pci_addresses(text: str) -> list[str]:
    """The PCI addresses a line names, in order, each in NVML's spelling."""
    return [normalize_pci(m.group(0)) for m in _PCI_IN_TEXT.finditer(text)]


def is_pci(text: str) -> bool:
    """Whether text is a PCI address in one of the spellings `normalize_pci` reads."""
    return _PCI.match(text.strip()) is not None


@dataclass(frozen=True)
class GpuIdentity:
    """A GPU by every name it goes by; the serial is the board's, the one an RMA asks for."""

    index: int
    pci_bus_id: str | None = None
    uuid: str | None = None
    serial: str | None = None

    def is_named_by(self, name: str) -> bool:
        """Whether a source that names a GPU `name` (its index, PCI address in any spelling,
        UUID or serial) means this one."""
        name = name.strip()
        if not name:
            return False
        # NVML's indices stop at 255; a longer number is a serial (NVIDIA's are 13 digits).
        if name.isdigit() and len(name) <= 3:
            return int(name) == self.index
        if is_pci(name):
            return self.pci_bus_id is not None and normalize_pci(name) == normalize_pci(
                self.pci_bus_id
            )
        return name in (self.uuid, self.serial)
