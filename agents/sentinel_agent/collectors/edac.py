"""EDAC error counters in sysfs: a DIMM's corrected and uncorrected errors as they rise.

The kernel's EDAC drivers count memory errors per DIMM (`mc*/dimm*/dimm_ce_count`,
`dimm_ue_count`, named by `dimm_label`; `rank*` on some drivers) and per memory controller
(`ce_count`, `ue_count`; `ce_noinfo_count`, `ue_noinfo_count` for errors no DIMM is known
for). Each poll compares them with the last values (kept with the read positions, so a restart
loses no rise) and ships a rise as its path, the change and the DIMM's label. A counter that
went down (the driver was reloaded) starts over without a report.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Final

from sentinel.knowledge import PatternCatalog
from sentinel.wire import Observation
from sentinel_agent.collectors.base import Context
from sentinel_agent.collectors.hardware import HardwareRecords

log = logging.getLogger(__name__)

DEFAULT_ROOT: Final = Path("/sys/devices/system/edac/mc")
# Per memory controller when its DIMMs have their own counts: errors no DIMM is known for.
_MC_NOINFO: Final = ("ce_noinfo_count", "ue_noinfo_count")
# Per memory controller when they do not (an old driver): its totals.
_MC_TOTALS: Final = ("ce_count", "ue_count")
_DIMM_COUNTS: Final = ("dimm_ce_count", "dimm_ue_count")


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


class EdacCollector:
    name = "edac"

    def __init__(
        self,
        ctx: Context,
        *,
        root: Path = DEFAULT_ROOT,
        interval_s: float,
        patterns: PatternCatalog | None = None,
    ) -> None:
        self.interval_s = interval_s
        self._root = root
        self._records = HardwareRecords(ctx, "edac", patterns)
        self._key = f"{self.name}:{root}"
        self._counts: dict[str, int] = _restore(ctx.positions.get(self._key))

    def _counters(self) -> Iterator[tuple[Path, str | None]]:
        """Every counter file, with the label of the DIMM it counts for."""
        for mc in sorted(self._root.glob("mc[0-9]*")):
            dimms = sorted([*mc.glob("dimm[0-9]*"), *mc.glob("rank[0-9]*")])
            for dimm in dimms:
                label = _read(dimm / "dimm_label") or None
                for name in _DIMM_COUNTS:
                    yield dimm / name, label
            for name in _MC_NOINFO if dimms else _MC_TOTALS:
                yield mc / name, None

    def poll(self) -> Sequence[Observation]:
        out: list[Observation] = []
        for path, label in self._counters():
            text = _read(path)
            if text is None or not text.isdigit():
                continue
            key, current = str(path), int(text)
            previous = self._counts.get(key)
            self._counts[key] = current
            if previous is None or current <= previous:
                continue
            line = f"{path}: {previous} -> {current}" + (f" (dimm_label: {label})" if label else "")
            out.append(self._records.record([line], path=str(path)))
        return out

    def positions(self) -> Mapping[str, str | None]:
        return {self._key: json.dumps(self._counts, sort_keys=True, separators=(",", ":"))}

    def close(self) -> None:
        pass


def _restore(saved: str | None) -> dict[str, int]:
    if not saved:
        return {}
    try:
        return {str(k): int(v) for k, v in json.loads(saved).items()}
    except (ValueError, TypeError, AttributeError):
        log.warning("ignoring the unreadable EDAC counts %r", saved)
        return {}
