"""A dump may declare any size it likes: the parser checks every size against the input
before the C unpickler (which trusts them) sees it, so one dump cannot take the memory.

Each case runs in a child process whose address space is capped (VmSize after the
imports + 1 GiB): a blow-up there is a MemoryError or a killed child, never the test
runner's memory; and the child reports its peak RSS growth (ru_maxrss).
"""

from __future__ import annotations

import json
import pickle
import pickletools
import random
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

from .conftest import dump_dir

REAL = dump_dir("hang", "raw") / "nccl_trace_rank_5"
# A parse may grow the child's peak RSS by this much at most (the dumps are 3 KB).
RSS_BOUND_MB = 150

_CHILD = textwrap.dedent(
    """
    import json, resource, sys, time
    from pathlib import Path
    from sentinel.flightrec.models import FrParseError, ParsedDump
    from sentinel.flightrec.parse import parse_dump

    parse_dump(Path(sys.argv[2]).read_bytes(), "warm")  # compile and warm up first
    for line in open("/proc/self/status"):
        if line.startswith("VmSize:"):
            vm = int(line.split()[1]) * 1024
    resource.setrlimit(resource.RLIMIT_AS, (vm + 2**30, resource.RLIM_INFINITY))
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    results = []
    for i, path in enumerate(sorted(Path(sys.argv[1]).iterdir())):
        t = time.monotonic()
        try:
            parsed = parse_dump(path.read_bytes(), path.name)
            outcome = "parsed" if isinstance(parsed, ParsedDump) else "?"
        except FrParseError as exc:
            outcome = "refused: " + str(exc)
        except MemoryError:
            outcome = "MemoryError"
        except BaseException as exc:
            outcome = "crash: " + repr(exc)
        growth = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) // 1024
        results.append((path.name, outcome, growth, time.monotonic() - t))
    print(json.dumps(results))
    """
)


def _parse_in_child(cases: dict[str, bytes], tmp_path: Path) -> dict[str, tuple[str, int, float]]:
    folder = tmp_path / "cases"
    folder.mkdir()
    for name, data in cases.items():
        (folder / name).write_bytes(data)
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(folder), str(REAL)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, f"the child was killed or failed: {proc.stderr[-2000:]}"
    return {name: (outcome, mb, s) for name, outcome, mb, s in json.loads(proc.stdout)}


def _ops(data: bytes, name: str) -> list[int]:
    """Byte offsets of each `name` opcode in a valid pickle."""
    return [
        pos for op, _arg, pos in pickletools.genops(data) if op.name == name and pos is not None
    ]


def _hostile() -> dict[str, bytes]:
    real = REAL.read_bytes()
    # the BINPUT whose next four bytes, read as a LONG_BINPUT index, are the largest
    binput = max(_ops(real, "BINPUT")[:-2], key=lambda p: struct.unpack_from("<I", real, p + 1))
    binunicode = _ops(real, "BINUNICODE")[-1]
    cases = {}
    # One byte changed: BINPUT becomes LONG_BINPUT, whose 4-byte index is the next bytes.
    m = bytearray(real)
    m[binput] = ord("r")
    cases["binput_to_long_binput"] = bytes(m)
    # A memo index of 2**31 - 1: the C unpickler zeroes a 32 GB memo table for it.
    m = bytearray(real)
    m[binput : binput + 2] = b"r" + struct.pack("<I", 0x7FFFFFFF)
    cases["long_binput_2g"] = bytes(m)
    # Protocol 0's PUT, inside a protocol 2 stream: the same table, from a decimal.
    m = bytearray(real)
    m[binput : binput + 2] = b"p900000000\n"
    cases["text_put_900m"] = bytes(m)
    # Lengths far past the file: BINUNICODE (4 GB), BINUNICODE8 and BINBYTES8, FRAME.
    m = bytearray(real)
    m[binunicode + 1 : binunicode + 5] = struct.pack("<I", 0xFFFFFFF0)
    cases["binunicode_4g"] = bytes(m)
    for opcode, label in ((b"\x8d", "binunicode8"), (b"\x8e", "binbytes8"), (b"\x95", "frame")):
        cases[f"{label}_8g"] = b"\x80\x04" + opcode + struct.pack("<Q", 8 * 2**30) + real[2:]
    # A pg_config whose 100,000 groups share one 20,000-rank list (a memo reference
    # each): read per group, 2*10^9 ints; read once per distinct list, a few MB.
    ranks = list(range(20_000))
    doc = {
        "version": "2.10",
        "entries": [],
        "pg_config": {str(i): {"ranks": ranks} for i in range(100_000)},
    }
    cases["pg_config_shared_ranks"] = pickle.dumps(doc, protocol=2)
    return cases


def test_hostile_sizes_are_refused_within_a_memory_bound(tmp_path: Path) -> None:
    results = _parse_in_child(_hostile(), tmp_path)

    for name, (outcome, growth_mb, seconds) in results.items():
        assert growth_mb < RSS_BOUND_MB, (name, outcome, growth_mb)
        assert seconds < 10, (name, outcome, seconds)
        assert outcome.startswith(("refused", "parsed")), (name, outcome)
    for name in ("binput_to_long_binput", "long_binput_2g", "text_put_900m"):
        outcome = results[name][0]
        assert outcome.startswith(f"refused: {name}: not a valid pickle: memo index"), outcome
    # (the compiled path takes FRAME as the hint it is, and reads the dump as it is)
    assert results["frame_8g"][0] == "parsed"
    for name in ("binunicode_4g", "binunicode8_8g", "binbytes8_8g"):
        outcome = results[name][0]
        assert "declared length" in outcome and "larger than the rest of the file" in outcome, (
            outcome
        )
    assert results["pg_config_shared_ranks"][0] == "parsed"


def test_300_random_mutations_stay_within_the_budget(tmp_path: Path) -> None:
    real = REAL.read_bytes()
    rng = random.Random(14)
    cases = {}
    for i in range(300):
        m = bytearray(real)
        for _ in range(rng.randint(1, 8)):
            m[rng.randrange(len(m))] = rng.randrange(256)
        cases[f"m{i:03d}"] = bytes(m)

    results = _parse_in_child(cases, tmp_path)

    assert len(results) == 300
    for name, (outcome, growth_mb, seconds) in results.items():
        assert outcome.startswith(("refused", "parsed")), (name, outcome)
        assert growth_mb < RSS_BOUND_MB, (name, outcome, growth_mb)
        assert seconds < 5, (name, outcome, seconds)


def test_a_frame_longer_than_the_file_is_refused_by_the_checked_path() -> None:
    import pytest

    from sentinel.flightrec.models import FrParseError
    from sentinel.flightrec.unpickler import load_plain

    data = b"\x80\x04\x95" + struct.pack("<Q", 8 * 2**30) + REAL.read_bytes()[2:]
    with pytest.raises(FrParseError, match=r"f\.pkl: not a valid pickle: a declared length"):
        load_plain(data, "f.pkl")
