"""Training job logs (stderr, NCCL_DEBUG output): NCCL, watchdog, CUDA errors, tracebacks."""

from __future__ import annotations

import fnmatch
import glob
import json
import logging
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from agents.collectors.base import Context
from agents.patterns import Matcher, PatternFile
from agents.tail import FileTailer
from sentinel.wire import LogRecord, Observation

log = logging.getLogger(__name__)

MAX_MESSAGE = 60_000
MAX_TRACEBACK_LINES = 400
# A traceback whose exception line never comes (the process died mid-write) is shipped
# after this long without new lines, with what it has.
TRACEBACK_FLUSH_S = 5.0
_RESCAN_EVERY = 10  # polls between globbing for new files

# torchrun and PyTorch put "[rank3]:" (or "[default3]:" with --tee) before every line.
_RANK_PREFIX = re.compile(r"^\[(rank|default)(\d+)\]:\s?")
_TRACEBACK_START = "Traceback (most recent call last):"
_CHAIN_LINES = (
    "During handling of the above exception",
    "The above exception was the direct cause",
)


@dataclass
class _Traceback:
    lines: list[str]
    started: float
    last_line_at: float
    ended: bool = False  # the exception line came; a chained traceback may still follow


@dataclass
class _File:
    tailer: FileTailer
    tracebacks: dict[str, _Traceback] = field(default_factory=dict)


class TrainingLogCollector:
    name = "training_logs"

    def __init__(
        self,
        ctx: Context,
        *,
        paths: list[str],
        patterns: PatternFile,
        interval_s: float,
        from_start: bool = False,
    ) -> None:
        self.interval_s = interval_s
        self._ctx = ctx
        self._globs = paths
        self._from_start = from_start
        self._matcher = Matcher(patterns.patterns)
        # Finds the few interesting lines in a chunk with one scan instead of one per line:
        # at 1,000 lines/s of NCCL INFO chatter this is most of the collector's cost.
        self._candidates = re.compile(
            "|".join(re.escape(k) for k in [*self._matcher.keywords, _TRACEBACK_START])
        )
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
        for name in [n for n, f in self._files.items() if n not in found and not f.tracebacks]:
            if not Path(name).exists():
                self._files.pop(name).tailer.close()
                self._forgotten.add(name)

    def _follow(self, name: str, from_start: bool, saved: str | None) -> _File:
        try:
            data = json.loads(saved) if saved else {}
            tail, open_ = data.get("tail"), data.get("open", [])
            now = self._ctx.clock.monotonic()
            tracebacks = {k: _Traceback(list(lines), now, now, end) for k, lines, end in open_}
        except (ValueError, TypeError, AttributeError):
            log.warning("ignoring the unreadable stored position of %s", name)
            tail, tracebacks = None, {}
        return _File(FileTailer(Path(name), from_start=from_start, resume=tail), tracebacks)

    def positions(self) -> Mapping[str, str | None]:
        """Each file's read position with the tracebacks still open at it: their lines were
        read before the position, so they are stored with it."""
        out: dict[str, str | None] = {f"{self.name}:{n}": None for n in self._forgotten}
        self._forgotten.clear()
        for name, state in self._files.items():
            open_ = [[key, tb.lines, tb.ended] for key, tb in state.tracebacks.items()]
            out[f"{self.name}:{name}"] = json.dumps(
                {"tail": state.tailer.position(), "open": open_}, separators=(",", ":")
            )
        return out

    def poll(self) -> Sequence[Observation]:
        if self._polls % _RESCAN_EVERY == 0:
            self._discover()
        self._polls += 1
        out: list[Observation] = []
        now = self._ctx.clock.monotonic()
        for name, state in self._files.items():
            self._scan(name, state, state.tailer.read_text(), now, out)
            for key, tb in list(state.tracebacks.items()):
                if tb.ended or now - tb.last_line_at >= TRACEBACK_FLUSH_S:
                    out.append(self._traceback_record(name, key, tb))
                    del state.tracebacks[key]
        return out

    def _scan(self, name: str, state: _File, text: str, now: float, out: list[Observation]) -> None:
        """Hand _line every line a pattern could match; all lines while a traceback is open."""
        pos, size = 0, len(text)
        while pos < size:
            if state.tracebacks:
                end = text.find("\n", pos)
                end = size if end < 0 else end
                self._line(name, state, text[pos:end].rstrip("\r"), now, out)
                pos = end + 1
                continue
            found = self._candidates.search(text, pos)
            if found is None:
                return
            newline = text.rfind("\n", pos, found.start())
            start = pos if newline < 0 else newline + 1
            end = text.find("\n", found.end())
            end = size if end < 0 else end
            self._line(name, state, text[start:end].rstrip("\r"), now, out)
            pos = end + 1

    def _line(self, name: str, state: _File, raw: str, now: float, out: list[Observation]) -> None:
        prefix = _RANK_PREFIX.match(raw)
        key = prefix.group(0) if prefix else ""
        line = raw[prefix.end() :] if prefix else raw
        tb = state.tracebacks.get(key)
        if tb is not None:
            continues = (
                not line
                or line[0] in " \t"
                or line.startswith(_CHAIN_LINES)
                or line.startswith(_TRACEBACK_START)
            )
            if tb.ended and not continues:
                out.append(self._traceback_record(name, key, tb))
                del state.tracebacks[key]
            elif len(tb.lines) < MAX_TRACEBACK_LINES or not continues:
                tb.lines.append(line)
                tb.last_line_at = now
                tb.ended = not continues
                return
            else:
                return  # over the line cap: keep the head, wait for the exception line
        if line.startswith(_TRACEBACK_START) or line.endswith(_TRACEBACK_START):
            state.tracebacks[key] = _Traceback([line], now, now)
            return
        found = self._matcher.match(line)
        if found is None:
            return
        pattern = found.pattern
        out.append(
            LogRecord(
                id=uuid.uuid4(),
                observed_at=self._ctx.clock.now(),
                source="nccl" if pattern.source == "nccl" else "application",
                pattern=pattern.name,
                family=pattern.family,
                severity=pattern.severity,
                message=raw[:MAX_MESSAGE],
                path=name,
                rank=_rank(key),
                job_id=self._ctx.state.job_id,
            )
        )

    def _traceback_record(self, name: str, key: str, tb: _Traceback) -> LogRecord:
        last = tb.lines[-1] if tb.ended else ""
        found = self._matcher.match(last) if last else None
        if found is not None:
            pattern, family, severity = (
                found.pattern.name,
                found.pattern.family,
                found.pattern.severity,
            )
        else:
            pattern, family, severity = "python_traceback", "python_traceback", "error"
        message = "\n".join(tb.lines)
        if len(message) > MAX_MESSAGE:
            # Keep the end: the exception line is the part triage reads first.
            message = message[: MAX_MESSAGE // 2] + "\n...\n" + message[-MAX_MESSAGE // 2 :]
        return LogRecord(
            id=uuid.uuid4(),
            observed_at=self._ctx.clock.now(),
            source="nccl"
            if found is not None and found.pattern.source == "nccl"
            else "application",
            pattern=pattern,
            family=family,
            severity=severity,
            message=message,
            path=name,
            rank=_rank(key),
            job_id=self._ctx.state.job_id,
        )

    def close(self) -> None:
        for state in self._files.values():
            state.tailer.close()


def _rank(prefix: str) -> int | None:
    found = _RANK_PREFIX.match(prefix)
    return int(found.group(2)) if found and found.group(1) == "rank" else None
