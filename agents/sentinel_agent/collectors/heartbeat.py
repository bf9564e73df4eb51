"""Receives rank heartbeats on a local datagram socket and folds them per rank."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import select
import socket
import stat
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pydantic

from sentinel.wire import HeartbeatSummary, Observation
from sentinel_agent.advice import AdviceBoard
from sentinel_agent.collectors.base import Context
from sentinel_agent.heartbeat import CODE_VERSION, MAX_DATAGRAM, parse_address

log = logging.getLogger(__name__)

_RCVBUF = 4 * 1024 * 1024
_JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$")  # the wire contract's Name
# A Unix datagram socket queues only net.unix.max_dgram_qlen datagrams (10 by default), so
# a receiver thread drains it as beats arrive; the poll only folds what was received.
_RECEIVE_WAIT_S = 0.5
# A rank told to checkpoint is told again at most this often (every beat would be a flood).
_REPLY_EVERY_S = 1.0
_MAX_SENDERS = 10_000


@dataclass
class _Rank:
    job_id: str
    rank: int
    local_rank: int
    beats: int = 0
    step: int = 0
    last_beat_at: datetime | None = None
    world_size: int | None = None
    gpu_index: int | None = None
    step_time_s: float | None = None
    tokens: int | None = None
    loss: float | None = None
    checkpoint_step: int | None = None
    checkpoint_path: str | None = None
    code_version: str | None = None
    # Seconds: from the launch to the first beat, a checkpoint save's blocking part, its
    # background write (the cadence advice's inputs).
    startup_s: float | None = None
    checkpoint_save_s: float | None = None
    checkpoint_write_s: float | None = None


def _int(data: dict[str, Any], key: str) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(key)
    return value


def _float(data: dict[str, Any], key: str) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(key)
    return float(value)


# The wire's bound on a measured duration (HeartbeatSummary.startup_s and the checkpoint times).
_MAX_SECONDS = 7 * 86400


def _seconds(data: dict[str, Any], key: str) -> float | None:
    """A duration the wire accepts, or ValueError: one out of range must not cost the rank's
    whole summary later (the wire refuses it there)."""
    value = _float(data, key)
    if value is not None and not 0 <= value <= _MAX_SECONDS:  # NaN fails this too
        raise ValueError(key)
    return value


class HeartbeatCollector:
    name = "heartbeat"

    def __init__(
        self,
        ctx: Context,
        *,
        address: str,
        interval_s: float,
        advice: AdviceBoard | None = None,
    ) -> None:
        self.interval_s = interval_s
        # The reply to a rank's datagram: the service's advice for its job (checkpoint now),
        # sent back to the sender's address; a client that bound none (heartbeat.py before
        # replies) is never answered.
        self._advice = advice
        self._told: dict[
            str | tuple[Any, ...], tuple[float, bool]
        ] = {}  # sender -> (when, checkpoint_now)
        self.replies = 0
        self._ctx = ctx
        self._address = address
        self._sock: socket.socket | None = None
        self._ranks: dict[tuple[str, int], _Rank] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.rejected = 0

    def _bind(self) -> socket.socket:
        family, target = parse_address(self._address)
        sock = socket.socket(family, socket.SOCK_DGRAM)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RCVBUF)
        if family == socket.AF_UNIX:
            assert isinstance(target, str)
            path = Path(target)
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.exists() and stat.S_ISSOCK(path.stat().st_mode):
                path.unlink()  # left by a previous agent
            sock.bind(target)
            # Ranks often run as another user than the agent; anyone local may beat.
            os.chmod(target, 0o666)  # noqa: S103
        else:
            sock.bind(target)
        sock.setblocking(False)
        return sock

    @property
    def bound_address(self) -> object:
        return self._sock.getsockname() if self._sock else None

    def poll(self) -> Sequence[Observation]:
        if self._sock is None:
            self._sock = self._bind()
            self._thread = threading.Thread(
                target=self._receive_loop,
                args=(self._sock,),
                name="heartbeat-receiver",
                daemon=True,
            )
            self._thread.start()
        if self._advice is not None:
            with self._lock:
                jobs = {job for job, _ in self._ranks}
            self._advice.refresh(jobs)  # HTTP: outside the lock
        with self._lock:
            return self._summaries()

    def _receive_loop(self, sock: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([sock], [], [], _RECEIVE_WAIT_S)
            except (OSError, ValueError):
                return  # closed under us
            if not ready:
                continue
            while True:
                try:
                    data, sender = sock.recvfrom(MAX_DATAGRAM + 1)
                except BlockingIOError:
                    break
                except OSError:
                    return
                with self._lock:
                    job_id = self._receive(data)
                if job_id is not None and sender:
                    self._reply(sock, job_id, sender)

    def _reply(self, sock: socket.socket, job_id: str, sender: str | tuple[Any, ...]) -> None:
        """Tell the rank what the service advises its job: while it says checkpoint now (or
        restart in place), at most every _REPLY_EVERY_S; once more when it stops saying so."""
        advice = self._advice.get(job_id) if self._advice is not None else None
        now = self._ctx.clock.monotonic()
        when, told = self._told.get(sender, (float("-inf"), False))
        wanted = bool(advice and (advice.get("checkpoint_now") or advice.get("restart_in_place")))
        if not wanted and not told:
            return
        if wanted and told and now - when < _REPLY_EVERY_S:
            return
        payload = {"v": 1, "j": job_id, "a": advice or {"checkpoint_now": False}}
        data = json.dumps(payload, separators=(",", ":")).encode()[:MAX_DATAGRAM]
        try:
            sock.sendto(data, sender)
        except OSError:
            return  # the rank is gone, or its socket is full: it asks again next beat
        self.replies += 1
        if len(self._told) > _MAX_SENDERS:
            self._told.clear()
        self._told[sender] = (now, wanted)

    def _receive(self, data: bytes) -> str | None:
        """Fold one datagram; its job, or None when it was refused."""
        try:
            beat = json.loads(data)
            if not isinstance(beat, dict) or beat.get("v") != 1:
                raise ValueError("version")
            job_id, rank, step = beat["j"], _int(beat, "r"), _int(beat, "s")
            if (
                not isinstance(job_id, str)
                or not _JOB_ID.match(job_id)
                or rank is None
                or step is None
            ):
                raise ValueError("identity")
            version = beat.get("cv")
            if version is not None and (
                not isinstance(version, str) or not CODE_VERSION.match(version)
            ):
                raise ValueError("cv")  # before anything of the beat is folded
            # Every field is read before any is folded: a bad one refuses the whole beat.
            floats = {
                attr: _float(beat, key_)
                for attr, key_ in (("step_time_s", "st"), ("loss", "lo"))
                if key_ in beat
            } | {
                attr: _seconds(beat, key_)
                for attr, key_ in (
                    ("startup_s", "up"),
                    ("checkpoint_save_s", "sv"),
                    ("checkpoint_write_s", "wr"),
                )
                if key_ in beat
            }
            ints = {
                attr: _int(beat, key_)
                for attr, key_ in (("tokens", "tk"), ("checkpoint_step", "cs"))
                if key_ in beat
            }
            local_rank, world_size = _int(beat, "l"), _int(beat, "w")
            gpu_index = _int(beat, "g") if "g" in beat else None
            sent_at = _float(beat, "t")
            key = (job_id, rank)
            state = self._ranks.get(key)
            if state is None:
                state = self._ranks[key] = _Rank(job_id, rank, local_rank or 0)
            state.beats += 1
            state.step = step
            state.last_beat_at = (
                datetime.fromtimestamp(sent_at, UTC) if sent_at else self._ctx.clock.now()
            )
            state.local_rank = local_rank or state.local_rank
            state.world_size = world_size or state.world_size
            state.gpu_index = gpu_index if "g" in beat else state.gpu_index
            for attr, value in (floats | ints).items():
                setattr(state, attr, value)
            if isinstance(beat.get("cp"), str):
                state.checkpoint_path = beat["cp"][:500]
            if version is not None:
                state.code_version = version
            self._ctx.state.job_id = job_id
            return job_id
        except (ValueError, KeyError, TypeError, OverflowError, OSError):
            self.rejected += 1
            self._ctx.metrics.heartbeats_bad.inc()
            return None

    def _summaries(self) -> list[Observation]:
        out: list[Observation] = []
        now = self._ctx.clock.now()
        for key, state in list(self._ranks.items()):
            if state.beats == 0:
                del self._ranks[key]  # silent since the last summary: nothing to say
                continue
            try:
                out.append(
                    HeartbeatSummary(
                        id=uuid.uuid4(),
                        observed_at=now,
                        job_id=state.job_id,
                        rank=state.rank,
                        local_rank=state.local_rank,
                        gpu_index=state.gpu_index,
                        step=state.step,
                        step_time_s=state.step_time_s,
                        tokens=state.tokens,
                        loss=state.loss,
                        checkpoint_step=state.checkpoint_step,
                        checkpoint_path=state.checkpoint_path,
                        beats=state.beats,
                        last_beat_at=state.last_beat_at or now,
                        world_size=state.world_size,
                        code_version=state.code_version,
                        startup_s=state.startup_s,
                        checkpoint_save_s=state.checkpoint_save_s,
                        checkpoint_write_s=state.checkpoint_write_s,
                    )
                )
            except pydantic.ValidationError as exc:
                self.rejected += state.beats
                self._ctx.metrics.heartbeats_bad.inc(state.beats)
                log.warning(
                    "dropping heartbeats of %s rank %s: %s",
                    state.job_id,
                    state.rank,
                    exc.errors()[0]["msg"],
                )
                del self._ranks[key]
                continue
            state.beats = 0
        return out

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2 * _RECEIVE_WAIT_S + 1)
        if self._sock is not None:
            family, target = parse_address(self._address)
            self._sock.close()
            if family == socket.AF_UNIX and isinstance(target, str):
                with contextlib.suppress(OSError):
                    os.unlink(target)
