"""Training job logs (stderr, NCCL_DEBUG output): NCCL, watchdog, CUDA errors, tracebacks.

Every line a knowledge pattern matches is shipped, and so are lines that look like errors
(`Error`, `FATAL`, an NCCL `WARN`) within a rate limit. A Python traceback (frames through
the exception line) is one record, and so is an NCCL warning with the context lines NCCL
prints after it.
"""

from __future__ import annotations

import fnmatch
import glob
import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal, Unpack

from sentinel.knowledge.matcher import NCCL_INFO
from sentinel.wire import Observation
from sentinel.wire.severity import Severity
from sentinel_agent.collectors.base import Context
from sentinel_agent.collectors.logs import (
    MAX_MESSAGE_LINES,
    MESSAGE_IDLE_S,
    SUPPRESSED,
    UNMATCHED,
    LogOptions,
    LogSource,
    MessageCollector,
    best_match,
    join_message,
)
from sentinel_agent.tail import FileTailer

log = logging.getLogger(__name__)

MAX_TRACEBACK_LINES: Final = 400
# A traceback whose exception line never comes (the process died mid-write) is shipped
# after this long without new lines, with what it has.
TRACEBACK_FLUSH_S: Final = 5.0
_RESCAN_EVERY: Final = 10  # polls between globbing for new files

# torchrun and PyTorch put "[rank3]:" (or "[default3]:" with --tee) before every line.
_RANK_PREFIX: Final = re.compile(r"^\[(rank|default)(\d+)\]:\s?")
_TRACEBACK_START: Final = "Traceback (most recent call last):"
_CHAIN_LINES: Final = (
    "During handling of the above exception",
    "The above exception was the direct cause",
)
# Lines that look like an error though no pattern knows them.
_ERRORISH: Final = re.compile(r"Error\b|\bERROR\b|\bFATAL\b|\bFatal\b|NCCL WARN")
_ERROR_WORDS: Final = ("error", "fatal", "nccl warn", _TRACEBACK_START.lower())
# NCCL's "host:pid:tid [dev]" origin; after a WARN, the same thread prints where the error
# came back through ("NCCL INFO transport/net.cc:1049 -> 6"): the warning's context.
_NCCL_ORIGIN: Final = re.compile(r"^\S+:\d+:\d+ \[\d+\] ")
_UNWIND: Final = re.compile(r" -> \d+(?: \[[\w ]+\])?$")

Kind = Literal["line", "traceback", "nccl"]


@dataclass
class _Open:
    """A message of several lines still being read."""

    kind: Kind
    lines: list[str]
    last_line_at: float
    ended: bool = False  # a traceback's exception line came; a chained one may still follow

    @property
    def idle_s(self) -> float:
        return TRACEBACK_FLUSH_S if self.kind == "traceback" else MESSAGE_IDLE_S


@dataclass
class _File:
    tailer: FileTailer
    # By stream: a rank's traceback, or an NCCL thread's warning.
    open: dict[str, _Open] = field(default_factory=dict)


class TrainingLogCollector(MessageCollector):
    name = "training_logs"

    def __init__(
        self, ctx: Context, *, paths: list[str], interval_s: float, **options: Unpack[LogOptions]
    ) -> None:
        super().__init__(ctx, interval_s, _ERROR_WORDS, options)
        self._globs = paths
        self._files: dict[str, _File] = {}
        self._polls = 0
        prefix = f"{self.name}:"
        # Where the previous run stopped, by file; a file rotated away while the agent was
        # down is followed by its old name until its rest is read.
        self._saved = {
            key[len(prefix) :]: value
            for key, value in ctx.positions.items()
            if key.startswith(prefix)
            and any(fnmatch.fnmatchcase(key[len(prefix) :], spec) for spec in paths)
        }
        self._forgotten: set[str] = set()

    def _discover(self) -> None:
        found: set[str] = set()
        for spec in self._globs:
            matches = glob.glob(spec) if glob.has_magic(spec) else [spec]
            found.update(matches)
            for name in matches:
                if name not in self._files:
                    # Files found after start-up are new: read them from their beginning.
                    from_start = self._from_start or self._polls > 0
                    self._files[name] = self._follow(name, from_start, self._saved.pop(name, None))
        for name, saved in self._saved.items():  # gone from the path: finish the rotated file
            self._files[name] = self._follow(name, self._from_start, saved)
            found.add(name)
        self._saved.clear()
        # Jobs come and go: forget files that are gone and have nothing left to finish.
        for name in [n for n, f in self._files.items() if n not in found and not f.open]:
            if not Path(name).exists():
                self._files.pop(name).tailer.close()
                self._forgotten.add(name)

    def _follow(self, name: str, from_start: bool, saved: str | None) -> _File:
        try:
            data = json.loads(saved) if saved else {}
            tail, held = data.get("tail"), data.get("open", [])
            now = self._ctx.clock.monotonic()
            messages = {}
            for key, lines, ended, *kind in held:
                # Stored before NCCL warnings were held too: a traceback.
                messages[key] = _Open(kind[0] if kind else "traceback", list(lines), now, ended)
        except (ValueError, TypeError, AttributeError):
            log.warning("ignoring the unreadable stored position of %s", name)
            tail, messages = None, {}
        return _File(FileTailer(Path(name), from_start=from_start, resume=tail), messages)

    def positions(self) -> Mapping[str, str | None]:
        """Each file's read position with the messages still open at it: their lines were
        read before the position, so they are stored with it."""
        out: dict[str, str | None] = {f"{self.name}:{n}": None for n in self._forgotten}
        self._forgotten.clear()
        for name, state in self._files.items():
            held = [[key, m.lines, m.ended, m.kind] for key, m in state.open.items()]
            out[f"{self.name}:{name}"] = json.dumps(
                {"tail": state.tailer.position(), "open": held}, separators=(",", ":")
            )
        return out

    def poll(self) -> Sequence[Observation]:
        if self._polls % _RESCAN_EVERY == 0:
            self._discover()
        self._polls += 1
        out: list[Observation] = []
        now = self._ctx.clock.monotonic()
        for name, state in self._files.items():
            for raw in state.tailer.read_text().split("\n")[:-1]:
                # The common case, a line that matters not, costs an `in` or one search.
                if not state.open and (
                    NCCL_INFO in raw or self._interesting.search(raw.lower()) is None
                ):
                    continue
                self._line(name, state, raw.rstrip("\r"), now, out)
            for key, message in list(state.open.items()):
                if message.ended or now - message.last_line_at >= message.idle_s:
                    self._ship(name, key, state.open.pop(key), out)
        for source, suppressed in self._gate.lifted():
            text = self._gate.describe(source, f"{source} lines that look like errors", suppressed)
            job_id = self._ctx.state.job_id
            record = self._log_record(
                source, text, None, SUPPRESSED, Severity.INFO, path=None, job_id=job_id
            )
            out.append(record)
        return out

    def _line(self, name: str, state: _File, raw: str, now: float, out: list[Observation]) -> None:
        prefix = _RANK_PREFIX.match(raw)
        key = prefix.group(0) if prefix else ""
        line = raw[prefix.end() :] if prefix else raw
        if self._continues_traceback(name, state, key, raw, line, now, out):
            return
        origin = _NCCL_ORIGIN.match(line)
        stream = key + origin.group(0) if origin else ""
        warning = state.open.get(stream) if origin else None
        if warning is not None:
            if (
                NCCL_INFO in line
                and _UNWIND.search(line)
                and len(warning.lines) < MAX_MESSAGE_LINES
            ):
                warning.lines.append(raw)
                warning.last_line_at = now
                return
            self._ship(name, stream, state.open.pop(stream), out)
        if NCCL_INFO in line or not line:
            return
        if line.startswith(_TRACEBACK_START) or line.endswith(_TRACEBACK_START):
            state.open[key] = _Open("traceback", [raw], now)
            return
        if self._interesting.search(line.lower()) is None:
            return
        if origin is not None and "NCCL WARN" in line:
            state.open[stream] = _Open("nccl", [raw], now)
            return
        self._ship(name, key, _Open("nccl" if origin else "line", [raw], now, True), out)

    def _continues_traceback(
        self,
        name: str,
        state: _File,
        key: str,
        raw: str,
        line: str,
        now: float,
        out: list[Observation],
    ) -> bool:
        """Add a line to the rank's open traceback; False: the line is not part of it."""
        tb = state.open.get(key)
        if tb is None or tb.kind != "traceback":
            return False
        continues = (
            not line
            or line[0] in " \t"
            or line.startswith(_CHAIN_LINES)
            or line.startswith(_TRACEBACK_START)
        )
        if tb.ended and not continues:
            self._ship(name, key, state.open.pop(key), out)
            return False
        if len(tb.lines) < MAX_TRACEBACK_LINES or not continues:
            tb.lines.append(raw)
            tb.last_line_at = now
            tb.ended = not continues
        # Over the line cap: keep the head, wait for the exception line.
        return True

    def _ship(self, name: str, key: str, message: _Open, out: list[Observation]) -> None:
        """One record for a message: what the knowledge says it is, else a line that looks
        like an error (within the rate limit), else nothing."""
        lines = message.lines
        if message.kind == "traceback" and len(lines) > 1:
            # The frames quote source code; the traceback is what its other lines say.
            lines = [line for line in lines if not _frame(line)]
        found = best_match(self._matcher, lines)
        nccl = message.kind == "nccl" or any("NCCL" in line for line in message.lines)
        source: LogSource = "nccl" if nccl else "application"
        if found is not None:
            spec = found[0]
            pattern, family, severity = spec.name, spec.family, spec.severity
        elif any(_ERRORISH.search(line) for line in message.lines):
            if not self._gate.admit(source, self._ctx.clock.now()):
                return
            pattern, family, severity = None, UNMATCHED, Severity.ERROR
        else:
            return
        text = join_message(message.lines)
        job_id = self._ctx.state.job_id
        out.append(
            self._log_record(
                source, text, pattern, family, severity, path=name, rank=_rank(key), job_id=job_id
            )
        )

    def close(self) -> None:
        for state in self._files.values():
            state.tailer.close()


def _frame(raw: str) -> bool:
    prefix = _RANK_PREFIX.match(raw)
    line = raw[prefix.end() :] if prefix else raw
    return line[:1] in (" ", "\t")


def _rank(key: str) -> int | None:
    found = _RANK_PREFIX.match(key)
    return int(found.group(2)) if found and found.group(1) == "rank" else None
