"""Synthesize recordings: a fleet of hosts training one job, plus injected faults.

Healthy hosts send a batch every interval (their GPUs' samples and their ranks' heartbeats);
faults are added as the hosts print them (kernel and training log lines, which the replay reads
through the agent's own collectors) or as the agents would report them: an XID in a batch of its
own at once, log records in the next batch, a GPU whose samples change, ranks that stop beating,
a host that goes silent. Used to write the replay cases and by the dashboard's tests.
"""

from __future__ import annotations

import gzip
import json
import random
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

EPOCH = datetime(2026, 3, 2, 4, 0, tzinfo=UTC)


@dataclass
class _Pending:
    at: float
    obs: dict[str, Any]
    critical: bool


@dataclass
class Fleet:
    hosts: int = 32
    job: str = "llama3-405b"
    interval: float = 10.0
    step_time: float = 2.0
    gpus: int = 8
    seed: int = 0
    start: datetime = EPOCH
    checkpoint_every: int = 50
    _events: dict[int, list[_Pending]] = field(default_factory=lambda: defaultdict(list))
    _gpu_state: dict[tuple[int, int], list[tuple[float, dict[str, Any]]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    _stalls: dict[int, float] = field(default_factory=dict)
    _silent: dict[int, float] = field(default_factory=dict)
    _api: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    _printed: list[tuple[float, int, dict[str, str]]] = field(default_factory=list)
    _outside_job: set[int] = field(default_factory=set)

    def name(self, host: int) -> str:
        return f"node-{host:04d}"

    def pci(self, gpu: int) -> str:
        return f"00000000:{[0x18, 0x2A, 0x3A, 0x5D, 0x9A, 0xAB, 0xBA, 0xDB][gpu % 8]:02X}:00.0"

    def at(self, t: float) -> datetime:
        return self.start + timedelta(seconds=t)

    # ------------------------------------------------------------------ injections

    def kernel_log(self, t: float, host: int, *lines: str) -> None:
        """At time t the host's kernel prints these lines (one message may span several)."""
        self._printed.append((t, host, {"log": "kernel", "text": "\n".join(lines)}))

    def training_log(self, t: float, host: int, *lines: str, file: str = "train.log") -> None:
        """At time t the host's training job prints these lines to one of its logs."""
        self._printed.append((t, host, {"log": "training", "file": file, "text": "\n".join(lines)}))

    def observation(self, t: float, host: int, obs: dict[str, Any], critical: bool = False) -> None:
        self._events[host].append(_Pending(t, obs, critical))

    def xid(
        self,
        t: float,
        host: int,
        gpu: int,
        code: int,
        message: str | None = None,
        source: str = "kernel_log",
    ) -> None:
        bus = self.pci(gpu)
        text = message or (
            f"NVRM: Xid (PCI:{bus[4:].lower()[:7]}): {code}, pid=2711, name=python, Ch 00000008"
        )
        self.observation(
            t,
            host,
            {
                "kind": "xid",
                "xid": code,
                "gpu_index": gpu,
                "pci_bus_id": bus,
                "message": text,
                "source": source,
            },
            critical=True,
        )

    def log(
        self,
        t: float,
        host: int,
        message: str,
        source: str = "application",
        rank: int | None = None,
        severity: str = "error",
        path: str | None = None,
    ) -> None:
        obs: dict[str, Any] = {
            "kind": "log",
            "source": source,
            "message": message,
            "severity": severity,
        }
        if path is not None:
            obs["path"] = path
        if rank is not None:
            obs["rank"] = rank
            obs["job_id"] = self.job
        self.observation(t, host, obs)

    def gpu(self, t: float, host: int, gpu: int, **fields: Any) -> None:
        """From time t on, this GPU's samples carry these fields."""
        self._gpu_state[(host, gpu)].append((t, fields))

    def stall(self, t: float, host: int | None = None) -> None:
        """From time t, the ranks of one host (or of all hosts) stop making progress."""
        for h in [host] if host is not None else range(self.hosts):
            self._stalls.setdefault(h, t)

    def silence(self, t: float, host: int) -> None:
        """From time t the host sends nothing at all (power loss, kernel panic, reboot)."""
        self._silent[host] = t
        self.stall(t)

    def api(
        self, t: float, method: str, path: str, body: dict[str, Any], role: str = "operator"
    ) -> None:
        self._api.append((t, {"method": method, "path": path, "body": body, "role": role}))

    def not_in_job(self, host: int) -> None:
        self._outside_job.add(host)

    # ------------------------------------------------------------------ output

    def lines(self, duration: float) -> list[dict[str, Any]]:
        rng = random.Random(self.seed)
        out: list[dict[str, Any]] = []
        seq: dict[int, int] = defaultdict(int)
        for h in range(self.hosts):
            offset = rng.uniform(0, self.interval)
            pending = sorted(self._events[h], key=lambda p: p.at)
            # Critical events skip the interval: the agent sends them at once.
            for p in [p for p in pending if p.critical]:
                if self._silent.get(h, duration + 1) <= p.at:
                    continue
                seq[h] += 1
                out.append(self._line(h, seq[h], p.at + 0.2, [self._obs(p.at, p.obs)]))
            queue = [p for p in pending if not p.critical]
            t = offset
            while t <= duration:
                if self._silent.get(h, duration + 1) <= t:
                    break
                obs = [self._sample(h, g, t, rng) for g in range(self.gpus)]
                if h not in self._outside_job:
                    obs += self._beats(h, t)
                while queue and queue[0].at <= t:
                    p = queue.pop(0)
                    obs.append(self._obs(p.at, p.obs))
                seq[h] += 1
                out.append(self._line(h, seq[h], t, obs))
                t += self.interval
        for t, h, printed in self._printed:
            # A host that lost power prints nothing (nor would its agent ship it).
            if self._silent.get(h, duration + 1) > t:
                out.append(
                    {"at": self.at(t).isoformat(), "lines": {"host": self.name(h), **printed}}
                )
        for t, call in self._api:
            out.append({"at": self.at(t).isoformat(), "api": call})
        return sorted(out, key=lambda x: x["at"])

    def _obs(self, t: float, obs: dict[str, Any]) -> dict[str, Any]:
        return {"id": str(uuid.uuid4()), "observed_at": self.at(t).isoformat(), **obs}

    def _line(self, h: int, seq: int, t: float, obs: list[dict[str, Any]]) -> dict[str, Any]:
        name = self.name(h)
        return {
            "at": self.at(t).isoformat(),
            "batch": {
                "version": 1,
                "host_id": name,
                "agent_id": f"{name}-agent",
                "seq": seq,
                "sent_at": self.at(t).isoformat(),
                "observations": obs,
            },
        }

    def _sample(self, h: int, g: int, t: float, rng: random.Random) -> dict[str, Any]:
        sample: dict[str, Any] = {
            "kind": "gpu_sample",
            "gpu_index": g,
            "uuid": f"GPU-{h:04d}{g:02d}-5e71",
            "pci_bus_id": self.pci(g),
            # 13 digits, as NVIDIA's board serials are: what a GPU's RMA asks for.
            "serial": f"1654{h:05d}{g:04d}",
            "temperature_c": round(rng.uniform(52, 68), 1),
            "power_w": round(rng.uniform(520, 690), 1),
            "clock_event_reasons": 0,
            "utilization_pct": 98.0,
            "ecc_volatile_uncorrected": 0,
            "remap_failure": False,
            "remapped_rows_uncorrectable": 0,
            "pcie_replay_count": 0,
        }
        for since, fields in self._gpu_state.get((h, g), []):
            if since <= t:
                sample.update(fields)
        return self._obs(t, sample)

    def _beats(self, h: int, t: float) -> list[dict[str, Any]]:
        stalled_at = self._stalls.get(h)
        if stalled_at is not None and t - self.interval >= stalled_at:
            return []  # no beats since the stall: the training loop is stuck
        progress_until = min(t, stalled_at) if stalled_at is not None else t
        step = int(progress_until / self.step_time)
        ckpt = (step // self.checkpoint_every) * self.checkpoint_every
        return [
            self._obs(
                progress_until,
                {
                    "kind": "heartbeat",
                    "job_id": self.job,
                    "rank": h * self.gpus + g,
                    "local_rank": g,
                    "gpu_index": g,
                    "step": step,
                    "step_time_s": self.step_time,
                    "loss": 2.1,
                    "tokens": 4_000_000,
                    "checkpoint_step": ckpt,
                    "checkpoint_path": f"/ckpt/{self.job}/step-{ckpt}",
                    "beats": max(1, int(self.interval / self.step_time)),
                    "last_beat_at": self.at(progress_until).isoformat(),
                    "world_size": self.hosts * self.gpus,
                },
            )
            for g in range(self.gpus)
        ]

    def write(self, folder: Path, duration: float, expect: dict[str, Any]) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        # Compressed: a few hundred hosts' batches are megabytes of mostly repeated keys.
        with gzip.open(folder / "recording.jsonl.gz", "wt", compresslevel=9) as f:
            for line in self.lines(duration):
                f.write(json.dumps(line, separators=(",", ":")) + "\n")
        expect = {"heartbeat_interval_s": self.interval, **expect}
        (folder / "expect.yaml").write_text(yaml.safe_dump(expect, sort_keys=False, width=100))
