"""Tailing survives rotation and truncation and never ships half a line."""

from __future__ import annotations

import os
from pathlib import Path

from sentinel_agent.tail import FileTailer


def test_starts_at_end_then_follows(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    path.write_text("old\n")
    tail = FileTailer(path)
    assert tail.read_lines() == []
    with path.open("a") as f:
        f.write("one\ntw")
    assert tail.read_lines() == ["one"]
    with path.open("a") as f:
        f.write("o\n")
    assert tail.read_lines() == ["two"]


def test_from_start_and_late_file(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    tail = FileTailer(path)
    assert tail.read_lines() == []  # not there yet
    path.write_text("first\n")
    assert tail.read_lines() == ["first"]  # a file that appears later is read from its start
    path2 = tmp_path / "y.log"
    path2.write_text("a\nb\n")
    assert FileTailer(path2, from_start=True).read_lines() == ["a", "b"]


def test_rotation_reads_rest_of_old_then_new(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    path.write_text("")
    tail = FileTailer(path)
    tail.read_lines()
    with path.open("a") as f:
        f.write("before\nlast-of-old")
    os.rename(path, tmp_path / "x.log.1")
    path.write_text("new-1\n")
    assert tail.read_lines() == ["before", "last-of-old", "new-1"]
    with path.open("a") as f:
        f.write("new-2\n")
    assert tail.read_lines() == ["new-2"]


def test_truncation_rereads_from_start(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    path.write_text("")
    tail = FileTailer(path)
    tail.read_lines()
    path.write_text("a long line that will be cut\n")
    assert tail.read_lines() == ["a long line that will be cut"]
    with path.open("w") as f:  # copytruncate-style rotation
        f.write("x\n")
    assert tail.read_lines() == ["x"]


def test_kmsg_records_are_read_without_their_header_but_with_their_priority() -> None:
    from sentinel_agent.tail import KmsgReader, open_source

    try:
        source = open_source(Path("/dev/kmsg"), from_start=True)
    except OSError:
        import pytest

        pytest.skip("/dev/kmsg is not readable here")
    assert isinstance(source, KmsgReader)
    lines = source.read_lines()
    source.close()
    assert lines and not any(";" in line.split(" ", 1)[0] and "," in line[:12] for line in lines)
    # Each record keeps its priority (what says it is an error), in syslog's "<N>" form.
    assert all(line.startswith("<") and line[1 : line.index(">")].isdigit() for line in lines)
    at_end = open_source(Path("/dev/kmsg"))  # starts after the last record by default
    assert at_end.read_lines() == []
    at_end.close()
