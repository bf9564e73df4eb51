"""Following a growing log file the way ``tail -F`` does, and /dev/kmsg record by record.

Both sources can say where they are (``position()``, an opaque JSON string) and resume from
there when reopened. The agent stores the position in the outbox in the same transaction as
the observations made from the lines before it, so a crash neither loses nor repeats a line.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import re
import stat
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)

# A line longer than this is cut: a runaway writer must not grow the agent's memory.
MAX_LINE_BYTES = 64 * 1024
# A stored position names the file by device and inode, and by a digest of its first bytes:
# an inode number reused by a new file, or a file rewritten in place, does not match.
_HEAD_BYTES = 1024
_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


class LineSource(Protocol):
    path: Path

    def read_lines(self) -> list[str]: ...

    def position(self) -> str | None:
        """Where the next read starts, to store with what was read; None: nothing to keep."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class FilePosition:
    dev: int
    ino: int
    offset: int  # the first byte not yet returned (the start of an unfinished line)
    head_len: int
    head_sha256: str

    def encode(self) -> str:
        return json.dumps({"file": asdict(self)}, separators=(",", ":"))


@dataclass(frozen=True)
class KmsgPosition:
    boot_id: str
    seq: int  # the last record returned; sequence numbers restart at every boot

    def encode(self) -> str:
        return json.dumps({"kmsg": asdict(self)}, separators=(",", ":"))


# "The file was not there": on resume, whatever is at the path then is read from its start.
_ABSENT = FilePosition(dev=0, ino=0, offset=0, head_len=0, head_sha256="")


def decode_position(text: str | None) -> FilePosition | KmsgPosition | None:
    """A stored position, or None when there is none or it cannot be read (then logged)."""
    if not text:
        return None
    try:
        data = json.loads(text)
        if "file" in data:
            return FilePosition(**data["file"])
        if "kmsg" in data:
            return KmsgPosition(**data["kmsg"])
    except (ValueError, TypeError, AttributeError):
        pass
    log.warning("ignoring an unreadable stored read position: %.200s", text)
    return None


def _clean(data: bytes) -> str:
    """Text as the wire can carry it. NUL bytes go: no log means them (a crash leaves runs of
    them in files it was writing), the wire refuses them and PostgreSQL cannot store them,
    and one must not cost the XID read beside it."""
    return data.replace(b"\0", b"").decode("utf-8", "replace")


def _head_digest(fd: int, length: int) -> str:
    return hashlib.sha256(os.pread(fd, length, 0)).hexdigest()


class FileTailer:
    """Returns complete new lines on each call; survives rotation and truncation.

    Rotation (the path now names another inode): the rest of the old file is read first,
    then the new file from its start. Truncation (the file shrank): read again from 0.
    A file that does not exist yet is waited for and then read from its start.

    Resuming from a stored position: the same file at the path goes on from the offset (from
    0 if it was truncated or rewritten meanwhile); a file rotated away meanwhile is finished
    first if it is still in the same folder under another name (``x.log.1``), then the new
    one is read from its start; otherwise the file at the path is new and read from 0.
    """

    def __init__(
        self,
        path: Path,
        *,
        from_start: bool = False,
        max_read_bytes: int = 4 * 1024 * 1024,
        resume: str | None = None,
    ) -> None:
        self.path = path
        self._skip_existing = not from_start
        self._max_read = max_read_bytes
        self._fd: int | None = None
        self._inode: tuple[int, int] | None = None
        self._pos = 0
        self._partial = b""
        self._head: tuple[int, str] | None = None  # cached once the file has _HEAD_BYTES
        stored = decode_position(resume)
        self._resume = stored if isinstance(stored, FilePosition) else None

    def _open(self) -> bool:
        resume, self._resume = self._resume, None
        if resume is not None:
            # Whatever happens below, a file found later at the path is new to us.
            self._skip_existing = False
            if self._open_at(resume):
                return True
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            self._skip_existing = False  # whatever appears later is new
            return False
        st = os.fstat(fd)
        self._adopt(fd, st, st.st_size if self._skip_existing else 0)
        self._skip_existing = False
        return True

    def _adopt(self, fd: int, st: os.stat_result, pos: int) -> None:
        self._fd, self._inode = fd, (st.st_dev, st.st_ino)
        self._pos = pos
        self._partial = b""
        self._head = None

    def _open_at(self, where: FilePosition) -> bool:
        """Reopen the file a stored position names, at the path or rotated beside it."""
        names = [self.path.name]
        with contextlib.suppress(OSError):
            names += [
                e.name
                for e in os.scandir(self.path.parent)
                if e.name.startswith(self.path.name)
                and e.name != self.path.name
                and e.inode() == where.ino
            ]
        for name in names:
            try:
                fd = os.open(self.path.parent / name, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            except OSError:
                continue
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) == (where.dev, where.ino):
                same = (
                    st.st_size >= where.offset
                    and st.st_size >= where.head_len
                    and _head_digest(fd, where.head_len) == where.head_sha256
                )
                if same or name == self.path.name:
                    # At the path, a shorter or rewritten file was truncated: read it from 0.
                    self._adopt(fd, st, where.offset if same else 0)
                    return True
            os.close(fd)
        return False

    def _read_available(self) -> bytes:
        assert self._fd is not None
        chunks: list[bytes] = []
        budget = self._max_read
        while budget > 0:
            chunk = os.pread(self._fd, min(budget, 1024 * 1024), self._pos)
            if not chunk:
                break
            chunks.append(chunk)
            self._pos += len(chunk)
            budget -= len(chunk)
        return b"".join(chunks)

    def read_lines(self) -> list[str]:
        return [line.rstrip("\r") for line in self.read_text().split("\n") if line]

    def read_text(self) -> str:
        """New complete lines as one string (each ending in a newline), or ""."""
        if self._fd is None and not self._open():
            return ""
        assert self._fd is not None
        try:
            st = os.stat(self.path)
            current: tuple[int, int] | None = (st.st_dev, st.st_ino)
        except FileNotFoundError:
            current = None
        if current != self._inode:
            text = self._complete(self._read_available(), final=True)  # the rotated-away file
            self.close()
            if current is not None and self._open():
                text += self._complete(self._read_available())
            return text
        if os.fstat(self._fd).st_size < self._pos:
            self._pos = 0
            self._partial = b""
            self._head = None
        return self._complete(self._read_available())

    def position(self) -> str | None:
        if self._fd is None:
            if self._resume is not None:  # not reopened yet
                return self._resume.encode()
            # Waiting for the file: whatever appears there, also while we are down, is new.
            return None if self._skip_existing else _ABSENT.encode()
        assert self._inode is not None
        offset = self._pos - len(self._partial)
        if self._head is not None:
            head_len, digest = self._head
        else:
            head_len = min(offset, _HEAD_BYTES)
            digest = _head_digest(self._fd, head_len)
            if head_len == _HEAD_BYTES:
                self._head = (head_len, digest)
        return FilePosition(self._inode[0], self._inode[1], offset, head_len, digest).encode()

    def _complete(self, data: bytes, *, final: bool = False) -> str:
        buffer = self._partial + data
        if final:
            self._partial = b""
            cut = len(buffer)
        else:
            cut = buffer.rfind(b"\n") + 1
            self._partial = buffer[cut:]
            if len(self._partial) > MAX_LINE_BYTES:  # a runaway line: ship its head
                self._partial = b""
                cut = len(buffer)
        if not cut:
            return ""
        # Lines are not cut here (collectors cut what they ship); only an unterminated
        # line is bounded, above, so a runaway writer cannot grow the buffer.
        text = _clean(buffer[:cut])
        return text if text.endswith("\n") else text + "\n"

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
        self._fd = None
        self._inode = None


def _boot_id() -> str:
    try:
        return _BOOT_ID.read_text().strip()
    except OSError:
        return ""


# /dev/kmsg writes a message's newlines, backslashes and non-ASCII bytes as \xNN.
_KMSG_ESCAPE = re.compile(rb"\\x([0-9a-fA-F]{2})")


def _unescape(found: re.Match[bytes]) -> bytes:
    return bytes([int(found.group(1), 16)])


class KmsgReader:
    """/dev/kmsg: each read() returns one record ``prio,seq,usec,flags;message``.

    Each record is returned as ``<prio>message``, its escapes undone: a message printed as
    several lines comes back as one string with newlines.

    Resuming within the same boot skips the records at or below the stored sequence number;
    after a reboot (sequence numbers start again) the new boot's records are all new.
    """

    def __init__(
        self,
        path: Path,
        *,
        from_start: bool = False,
        max_records: int = 10_000,
        resume: str | None = None,
    ) -> None:
        self.path = path
        self._max_records = max_records
        self._boot_id = _boot_id()
        self._seq: int | None = None
        self._fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        stored = decode_position(resume)
        if isinstance(stored, KmsgPosition):
            if stored.boot_id == self._boot_id:
                self._seq = stored.seq
        elif not from_start:
            # Skip what is there rather than seek to the end: the last sequence number is
            # what a restart needs to know where "new" begins.
            while self._records(self._max_records):
                pass

    def _records(self, limit: int) -> list[tuple[int | None, str]]:
        out: list[tuple[int | None, str]] = []
        while len(out) < limit:
            try:
                record = os.read(self._fd, 16 * 1024)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno == errno.EPIPE:  # the ring buffer overwrote records we had not read
                    continue
                raise
            if not record:
                break
            head, semicolon, body = record.partition(b";")
            if not semicolon:
                out.append((None, _clean(record).rstrip("\n")))
                continue
            fields = _clean(head).split(",")
            seq = int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else None
            if seq is not None:
                if self._seq is not None and seq <= self._seq:
                    continue  # returned before a restart
                self._seq = seq
            # Continuation lines (" KEY=value") carry device metadata, not the message.
            message = _KMSG_ESCAPE.sub(_unescape, body.split(b"\n", 1)[0])
            priority = f"<{fields[0]}>" if fields[0].isdigit() else ""
            out.append((seq, priority + _clean(message).rstrip("\n")))
        return out

    def read_lines(self) -> list[str]:
        return [line for _, line in self._records(self._max_records)]

    def position(self) -> str | None:
        return None if self._seq is None else KmsgPosition(self._boot_id, self._seq).encode()

    def close(self) -> None:
        os.close(self._fd)


def open_source(path: Path, *, from_start: bool = False, resume: str | None = None) -> LineSource:
    try:
        is_char_device = stat.S_ISCHR(os.stat(path).st_mode)
    except FileNotFoundError:
        is_char_device = False
    if is_char_device:
        return KmsgReader(path, from_start=from_start, resume=resume)
    return FileTailer(path, from_start=from_start, resume=resume)
