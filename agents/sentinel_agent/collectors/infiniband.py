"""InfiniBand / RoCE ports in sysfs: a link that went down or flapped, an error rate climbing.

Every port under /sys/class/infiniband/<dev>/ports/<n> has its `state` ("4: ACTIVE"),
`phys_state` ("5: LinkUp") and the PMA counters (`counters/link_downed`, `symbol_error`,
`link_error_recovery`, `port_rcv_errors`, ...). A port leaving ACTIVE is an event (`link down`),
so is `link_downed` rising while it stayed ACTIVE between two polls (`link flapped`); its
return is reported too (`link up`). An error counter that rose by more than its threshold
(per minute, measured over `window_s`) is a warning, at most once a window per counter.
The first poll only learns where each port stands.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from sentinel.knowledge import PatternCatalog
from sentinel.wire import Observation
from sentinel_agent.collectors.base import Context
from sentinel_agent.collectors.hardware import HardwareRecords

log = logging.getLogger(__name__)

DEFAULT_ROOT: Final = Path("/sys/class/infiniband")
ACTIVE: Final = "ACTIVE"
LINK_DOWNED: Final = "link_downed"
# Errors per minute above which a counter's climb is reported.
DEFAULT_THRESHOLDS: Final[Mapping[str, float]] = {
    "symbol_error": 10,
    "link_error_recovery": 1,
    "port_rcv_errors": 10,
    "excessive_buffer_overrun_errors": 1,
    "local_link_integrity_errors": 1,
    "port_rcv_remote_physical_errors": 10,
}


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _count(path: Path) -> int | None:
    text = _read(path)
    return int(text) if text is not None and text.isdigit() else None


@dataclass
class _Port:
    state: str
    phys_state: str
    link_downed: int | None
    # Per counter: (monotonic time, value) within the window, oldest first.
    history: dict[str, deque[tuple[float, int]]] = field(default_factory=dict)
    reported_at: dict[str, float] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return self.state.endswith(ACTIVE)


class InfinibandCollector:
    name = "infiniband"

    def __init__(
        self,
        ctx: Context,
        *,
        root: Path = DEFAULT_ROOT,
        interval_s: float,
        thresholds: Mapping[str, float] = DEFAULT_THRESHOLDS,
        window_s: float = 60.0,
        patterns: PatternCatalog | None = None,
    ) -> None:
        self.interval_s = interval_s
        self._ctx = ctx
        self._root = root
        self._thresholds = dict(thresholds)
        self._window_s = window_s
        self._records = HardwareRecords(ctx, "infiniband", patterns)
        self._ports: dict[Path, _Port] = {}

    def poll(self) -> Sequence[Observation]:
        out: list[Observation] = []
        now = self._ctx.clock.monotonic()
        for port_dir in sorted(self._root.glob("*/ports/*")):
            state, phys = _read(port_dir / "state"), _read(port_dir / "phys_state")
            if state is None or phys is None:
                continue
            current = _Port(state, phys, _count(port_dir / "counters" / LINK_DOWNED))
            before = self._ports.get(port_dir)
            if before is not None:
                current.history, current.reported_at = before.history, before.reported_at
                line = _link_change(port_dir, before, current)
                if line:
                    out.append(self._records.record([line], path=str(port_dir)))
            self._ports[port_dir] = current
            out.extend(self._rates(port_dir, current, now))
        return out

    def _rates(self, port_dir: Path, port: _Port, now: float) -> list[Observation]:
        out: list[Observation] = []
        for counter, per_minute in self._thresholds.items():
            path = port_dir / "counters" / counter
            value = _count(path)
            if value is None:
                continue
            history = port.history.setdefault(counter, deque())
            if history and value < history[-1][1]:
                history.clear()  # reset (perfquery -R, a driver reload)
            history.append((now, value))
            while len(history) > 1 and now - history[1][0] >= self._window_s:
                history.popleft()
            since, first = history[0]
            elapsed = now - since
            if (
                elapsed <= 0
                or now - port.reported_at.get(counter, -self._window_s) < self._window_s
            ):
                continue
            if (value - first) * 60.0 / max(elapsed, self._window_s) > per_minute:
                port.reported_at[counter] = now
                line = (
                    f"{path}: {first} -> {value} in {elapsed:.0f} s, "
                    f"above {per_minute:g} per minute"
                )
                out.append(self._records.record([line], path=str(path)))
        return out

    def close(self) -> None:
        pass


def _link_change(port_dir: Path, before: _Port, now: _Port) -> str | None:
    states = (
        f"state {before.state} -> {now.state}"
        if before.state != now.state
        else f"state {now.state}"
    )
    phys = (
        f"phys_state {before.phys_state} -> {now.phys_state}"
        if before.phys_state != now.phys_state
        else f"phys_state {now.phys_state}"
    )
    downed = ""
    rose = (
        before.link_downed is not None
        and now.link_downed is not None
        and now.link_downed > before.link_downed
    )
    if rose:
        downed = f", {LINK_DOWNED} {before.link_downed} -> {now.link_downed}"
    if before.active and not now.active:
        what = "link down"
    elif not before.active and now.active:
        what = "link up"
    elif now.active and rose:
        what = "link flapped"
    else:
        return None
    return f"{port_dir}: {what}: {states}, {phys}{downed}"
