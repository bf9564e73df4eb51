"""mlx5 health reporters, from `devlink -j health show` where the tool is installed.

Each reporter (fw, fw_fatal, tx, rx, ...) of each device has a state and an error count; a
reporter that enters the error state, or whose error count rose, is shipped as devlink's text
form prints it (`pci/0000:3b:00.0: reporter fw_fatal: state error error 1 recover 0`). The
first poll only learns where each reporter stands.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from sentinel.knowledge import PatternCatalog
from sentinel.wire import Observation
from sentinel_agent.collectors.base import Context
from sentinel_agent.collectors.hardware import HardwareRecords

log = logging.getLogger(__name__)

COMMAND: Final = ("devlink", "-j", "health", "show")
_TIMEOUT_S: Final = 5.0
# What devlink says where the kernel has no devlink netlink family.
_NO_NETLINK: Final = "Failed to connect to devlink Netlink"
_KNOWN: Final = frozenset({"reporter", "name", "state", "error", "recover"})


@dataclass(frozen=True)
class Reporter:
    device: str
    name: str
    state: str
    errors: int
    recovers: int
    # The other fields devlink prints (grace_period, auto_recover...), in its order.
    rest: tuple[tuple[str, str], ...] = ()

    def line(self) -> str:
        rest = "".join(f" {k} {v}" for k, v in self.rest)
        return (
            f"{self.device}: reporter {self.name}: state {self.state} error {self.errors} "
            f"recover {self.recovers}{rest}"
        )


def _text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def parse_health(output: str) -> list[Reporter]:
    """Reporters from `devlink -j health show` (iproute2 names a reporter `reporter` or `name`)."""
    data = json.loads(output) if output.strip() else {}
    found: list[Reporter] = []
    for device, reporters in (data.get("health") or {}).items():
        for entry in reporters:
            name = entry.get("reporter", entry.get("name"))
            if name is None:
                continue
            found.append(
                Reporter(
                    device=str(device),
                    name=str(name),
                    state=str(entry.get("state", "")),
                    errors=int(entry.get("error", 0)),
                    recovers=int(entry.get("recover", 0)),
                    rest=tuple((k, _text(v)) for k, v in entry.items() if k not in _KNOWN),
                )
            )
    return found


class NoDevlink(Exception):
    """The kernel offers no devlink (a container, an old kernel): nothing to read here."""


def run_devlink() -> str:
    done = subprocess.run(COMMAND, capture_output=True, text=True, timeout=_TIMEOUT_S)
    if done.returncode != 0:
        if _NO_NETLINK in done.stderr:
            raise NoDevlink(done.stderr.strip())
        raise RuntimeError(f"{' '.join(COMMAND)}: exit {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def devlink_installed() -> bool:
    return shutil.which(COMMAND[0]) is not None


class DevlinkHealthCollector:
    name = "devlink"

    def __init__(
        self,
        ctx: Context,
        *,
        interval_s: float,
        run: Callable[[], str] = run_devlink,
        patterns: PatternCatalog | None = None,
    ) -> None:
        self.interval_s = interval_s
        self._run = run
        self._records = HardwareRecords(ctx, "devlink", patterns)
        self._seen: dict[tuple[str, str], Reporter] | None = None
        self._absent = False

    def poll(self) -> Sequence[Observation]:
        if self._absent:
            return []
        try:
            output = self._run()
        except NoDevlink as exc:
            log.info("devlink health: %s; not polled again", exc)
            self._absent = True
            return []
        reporters = parse_health(output)
        now = {(r.device, r.name): r for r in reporters}
        seen, self._seen = self._seen, now
        if seen is None:
            return []
        out: list[Observation] = []
        for key, reporter in now.items():
            before = seen.get(key)
            entered = reporter.state == "error" and (before is None or before.state != "error")
            if entered or (before is not None and reporter.errors > before.errors):
                out.append(self._records.record([reporter.line()], path=" ".join(COMMAND)))
        return out

    def close(self) -> None:
        pass
