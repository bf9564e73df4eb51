"""Following a growing log file the way ``tail -F`` does, and /dev/kmsg record by record."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Protocol

# A line longer than this is cut: a runaway writer must not grow the agent's memory.
MAX_LINE_BYTES = 64 * 1024


class LineSource(Protocol):
    path: Path

    def read_lines(self) -> list[str]: ...

    def close(self) -> None: ...


class FileTailer:
    """Returns complete new lines on each call; survives rotation and truncation.

    Rotation (the path now names another inode): the rest of the old file is read first,
    then the new file from its start. Truncation (the file shrank): read again from 0.
    A file that does not exist yet is waited for and then read from its start.
    """

    def __init__(
        self, path: Path, *, from_start: bool = False, max_read_bytes: int = 4 * 1024 * 1024
    ) -> None:
        self.path = path
        self._skip_existing = not from_start
        self._max_read = max_read_bytes
        self._fd: int | None = None
        self._inode: tuple[int, int] | None = None
        self._pos = 0
        self._partial = b""

    def _open(self) -> bool:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            self._skip_existing = False  # whatever appears later is new
            return False
        st = os.fstat(fd)
        self._fd, self._inode = fd, (st.st_dev, st.st_ino)
        self._pos = st.st_size if self._skip_existing else 0
        self._skip_existing = False
        self._partial = b""
        return True

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
        return self._complete(self._read_available())

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
        text = buffer[:cut].decode("utf-8", "replace")
        return text if text.endswith("\n") else text + "\n"

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
        self._fd = None
        self._inode = None


class KmsgReader:
    """/dev/kmsg: each read() returns one record ``prio,seq,usec,flags;message``."""

    def __init__(self, path: Path, *, from_start: bool = False, max_records: int = 10_000) -> None:
        self.path = path
        self._max_records = max_records
        self._fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        if not from_start:
            os.lseek(self._fd, 0, os.SEEK_END)

    def read_lines(self) -> list[str]:
        lines: list[str] = []
        while len(lines) < self._max_records:
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
            text = record.decode("utf-8", "replace")
            header, _, message = text.partition(";")
            # Continuation lines (" KEY=value") carry device metadata, not the message.
            lines.append(message.split("\n", 1)[0] if header else text.rstrip("\n"))
        return lines

    def close(self) -> None:
        os.close(self._fd)


def open_source(path: Path, *, from_start: bool = False) -> LineSource:
    try:
        is_char_device = stat.S_ISCHR(os.stat(path).st_mode)
    except FileNotFoundError:
        is_char_device = False
    if is_char_device:
        return KmsgReader(path, from_start=from_start)
    return FileTailer(path, from_start=from_start)
