"""Heartbeats from training code to the local Sentinel agent. Standard library only.

Copy this file next to a training script or import it from the agent package; it needs
nothing else. One call per step::

    from sentinel_agent.heartbeat import Heartbeat
    hb = Heartbeat(job_id=os.environ["SLURM_JOB_ID"])      # rank etc. from RANK/LOCAL_RANK
    for step in ...:
        ...
        hb.beat(step, step_time_s=dt, tokens=n, loss=float(loss))

``beat`` never blocks, never slows the loop noticeably (one non-blocking ``sendto``) and
never raises: no agent, a full socket or a bad value only bump ``hb.dropped``.
The address comes from ``SENTINEL_HEARTBEAT_ADDR`` (``unix:///path`` or
``udp://127.0.0.1:PORT``), default ``unix:///run/sentinel-agent/heartbeat.sock``.

The version of the training code (a git sha, an image tag) comes from ``code_version=`` or
``SENTINEL_CODE_VERSION``; with it, a crash loop that came with a new version is restarted on
the last version that trained (the launcher sets ``SENTINEL_CODE_VERSION`` to it: the job
script checks that version out, or picks that image).

How long the job's checkpoints and restarts take is what Sentinel's cadence advice needs
(the checkpoint interval that loses least, from the job's measured MTTF): pass
``checkpoint_save_s`` (how long the save blocked training) and ``checkpoint_write_s`` (how long
its background write took, for an asynchronous save) to ``beat``; the client also reports
``startup_s``, the time from the launch (``SENTINEL_LAUNCHED_AT``, which the launcher sets, else
the process's start) to its first beat. Each is sent with every beat once known.

The agent may answer a beat with the service's advice for the job (protocol 1, compatible:
a client that never reads is never harmed). ``beat`` reads what arrived without waiting, so
the training loop can ask after any step::

    if hb.checkpoint_now:        # a planned swap or restart waits for the next checkpoint
        save_checkpoint(step)
        hb.beat(step, checkpoint_step=step)   # Sentinel goes on once every rank says so

``hb.advice`` is the latest advice (``checkpoint_now``, ``reason``, ``swap_host``,
``spare_host``, ``restart_in_place``, ``restart_code_version``) or None. A reply is
``{"v": 1, "j": job, "a": {...}}``; on a Unix socket the client binds an abstract address
(Linux) so that the agent can answer.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import secrets
import socket
import time
from typing import Any

DEFAULT_ADDRESS = "unix:///run/sentinel-agent/heartbeat.sock"
ADDRESS_ENV = "SENTINEL_HEARTBEAT_ADDR"
CODE_VERSION_ENV = "SENTINEL_CODE_VERSION"
LAUNCHED_AT_ENV = "SENTINEL_LAUNCHED_AT"  # Unix time the launcher (re)started the command
# The service's alphabet for a code version (sentinel.wire.v1.CodeVersion; a test holds the
# two equal): anything else is not sent, rather than have the agent drop the rank's whole
# summary. The launcher and the agent's heartbeat collector check with this one as well; it
# is not imported from the wire because this module runs in the training process on the
# standard library alone.
CODE_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,127}$")
PROTOCOL_VERSION = 1
MAX_DATAGRAM = 4096
# After a failed send, beats are only counted for a while: an absent agent or a full socket
# must not cost a failing system call (and an exception) on every training step.
ABSENT_QUIET_S = 1.0
FULL_QUIET_S = 0.05


def _env_int(name: str) -> int | None:
    try:
        return int(os.environ[name])
    except (KeyError, ValueError):
        return None


def parse_address(address: str) -> tuple[int, str | tuple[str, int]]:
    """``unix:///p`` -> (AF_UNIX, "/p"); ``udp://h:port`` -> (AF_INET, (h, port))."""
    if address.startswith("unix://"):
        return socket.AF_UNIX, address[len("unix://") :]
    if address.startswith("udp://"):
        host, _, port = address[len("udp://") :].rpartition(":")
        return socket.AF_INET, (host or "127.0.0.1", int(port))
    raise ValueError(f"heartbeat address must be unix:// or udp://, not {address!r}")


class Heartbeat:
    def __init__(
        self,
        job_id: str,
        rank: int | None = None,
        local_rank: int | None = None,
        world_size: int | None = None,
        *,
        gpu_index: int | None = None,
        address: str | None = None,
        code_version: str | None = None,
    ) -> None:
        self.job_id = str(job_id)
        version = code_version if code_version is not None else os.environ.get(CODE_VERSION_ENV)
        self.code_version = version if version and CODE_VERSION.match(version) else None
        self.rank = rank if rank is not None else (_env_int("RANK") or 0)
        self.local_rank = local_rank if local_rank is not None else (_env_int("LOCAL_RANK") or 0)
        self.world_size = world_size if world_size is not None else _env_int("WORLD_SIZE")
        self.gpu_index = gpu_index
        self.sent = 0
        self.dropped = 0
        self.advice: dict[str, Any] | None = None
        self._sock: socket.socket | None = None
        self._pid = -1
        self._quiet_until = 0.0
        self._launched_at = _launched_at()
        self._timings: dict[str, float] = {}  # startup_s, checkpoint save/write, once known
        try:
            self._family, self._address = parse_address(
                address or os.environ.get(ADDRESS_ENV) or DEFAULT_ADDRESS
            )
        except ValueError:
            self._family, self._address = socket.AF_UNIX, ""

    def _socket(self) -> socket.socket:
        # A forked child (a DataLoader worker) must not share the parent's socket.
        if self._sock is None or self._pid != os.getpid():
            sock = socket.socket(self._family, socket.SOCK_DGRAM)
            sock.setblocking(False)
            if self._family == socket.AF_UNIX:
                # An abstract name (Linux; no file to clean up) the agent can answer to.
                with contextlib.suppress(OSError):
                    sock.bind(f"\0sentinel-hb-{os.getpid()}-{secrets.token_hex(6)}")
            self._sock, self._pid = sock, os.getpid()
        return self._sock

    @property
    def checkpoint_now(self) -> bool:
        """The agent says: checkpoint now (a planned swap waits for the next checkpoint)."""
        return bool(self.advice and self.advice.get("checkpoint_now"))

    @property
    def restart_in_place(self) -> bool:
        """The agent says: the launcher restarts the ranks on the same allocation."""
        return bool(self.advice and self.advice.get("restart_in_place"))

    def _read_replies(self, sock: socket.socket) -> None:
        for _ in range(16):  # what arrived since the last beat; never waits
            try:
                data = sock.recv(MAX_DATAGRAM)
            except OSError:  # BlockingIOError: nothing waiting
                return
            try:
                reply = json.loads(data)
            except ValueError:
                continue
            if (
                isinstance(reply, dict)
                and reply.get("v") == PROTOCOL_VERSION
                and reply.get("j") == self.job_id
                and isinstance(reply.get("a"), dict)
            ):
                self.advice = reply["a"]

    def beat(
        self,
        step: int,
        *,
        step_time_s: float | None = None,
        tokens: int | None = None,
        loss: float | None = None,
        checkpoint_step: int | None = None,
        checkpoint_path: str | None = None,
        checkpoint_save_s: float | None = None,
        checkpoint_write_s: float | None = None,
    ) -> None:
        self._time(checkpoint_save_s, checkpoint_write_s)
        if self._quiet_until and time.monotonic() < self._quiet_until:
            self.dropped += 1
            return
        try:
            payload = {
                "v": PROTOCOL_VERSION,
                "j": self.job_id,
                "r": self.rank,
                "l": self.local_rank,
                "s": int(step),
                "t": time.time(),
            }
            if self.world_size is not None:
                payload["w"] = self.world_size
            if self.gpu_index is not None:
                payload["g"] = self.gpu_index
            if self.code_version is not None:
                payload["cv"] = self.code_version
            if step_time_s is not None:
                payload["st"] = _finite(step_time_s)
            if tokens is not None:
                payload["tk"] = int(tokens)
            if loss is not None:
                payload["lo"] = _finite(loss)  # NaN loss is news, but JSON has no NaN: null
            if checkpoint_step is not None:
                payload["cs"] = int(checkpoint_step)
            if checkpoint_path is not None:
                payload["cp"] = str(checkpoint_path)[:500]
            payload.update(self._timings)
            data = json.dumps(payload, separators=(",", ":"), allow_nan=False).encode()
            if len(data) > MAX_DATAGRAM or not self._address:
                self.dropped += 1
                return
            sock = self._socket()
            sock.sendto(data, self._address)
            self.sent += 1
            self._read_replies(sock)
            self._quiet_until = 0.0
        except BlockingIOError:
            self.dropped += 1
            self._quiet_until = time.monotonic() + FULL_QUIET_S
        except OSError:  # no agent listening (yet)
            self.dropped += 1
            self._quiet_until = time.monotonic() + ABSENT_QUIET_S
        except Exception:
            self.dropped += 1

    def _time(self, save_s: float | None, write_s: float | None) -> None:
        """Remember the timings to send with every beat from now on (a lost datagram must not
        lose them); a bad value is ignored, never raised into the training loop."""
        if "up" not in self._timings and self._launched_at is not None:
            self._timings["up"] = round(max(0.0, time.time() - self._launched_at), 3)
        for key, value in (("sv", save_s), ("wr", write_s)):
            if value is None:
                continue
            try:
                number = _finite(value)
            except (TypeError, ValueError, OverflowError):
                continue
            if number is not None and number >= 0:
                self._timings[key] = round(number, 4)

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None


def _launched_at() -> float | None:
    """When the command was (re)started: the launcher's SENTINEL_LAUNCHED_AT, else this
    process's start time (Linux /proc), else None (no startup time is reported)."""
    try:
        value = float(os.environ.get(LAUNCHED_AT_ENV, ""))
        if math.isfinite(value) and 0 < value <= time.time():
            return value
    except ValueError:
        pass
    try:
        with open("/proc/self/stat", encoding="ascii") as f:
            # Field 22, after the parenthesised command name (which may hold spaces).
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/stat", encoding="ascii") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith("btime "))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def _finite(value: float) -> float | None:
    number = float(value)
    return number if math.isfinite(number) else None
