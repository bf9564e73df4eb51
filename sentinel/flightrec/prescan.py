"""A compiled pass over a pickle's opcodes that checks every size it declares, before
the C unpickler is trusted with them.

The C unpickler believes what a stream says about sizes: ``LONG_BINPUT 0x7fffffff``
grows its memo table to 2**32 slots (zeroed: 16 bytes of memory per slot, 32 GB), and
``BINBYTES8``/``BINUNICODE8`` preallocate the length they declare. A one-byte change to a
valid dump is enough. This pass walks the stream without building anything and refuses:

- a counted value (bytes, strings, longs, a frame) longer than the rest of the file;
- a memo index far beyond the memo slots the stream has filled so far (picklers number
  them densely from 0: Python's, and PyTorch's C++ pickler), so the memo stays
  proportional to the input.

It refuses only those; anything else malformed (an unknown opcode, a truncated line) ends
the pass and is left to the unpickler, which words its own error.
"""

from __future__ import annotations

import pickletools

import numpy as np
import numpy.typing as npt

from sentinel.flightrec.jit import compiled as _compiled

OK, TOO_LONG, MEMO_INDEX = 0, 1, 2

# Argument shapes, by opcode byte.
_UNKNOWN, _FIXED, _COUNTED, _LINE, _LINE2 = range(5)
# What an opcode does to the memo.
_NO_PUT, _PUT_TEXT, _PUT_BIN, _MEMOIZE = range(4)
# Slack over the dense numbering: a memo index may run this far ahead of the slots filled.
MEMO_SLACK = 256


def _tables() -> tuple[npt.NDArray[np.int8], npt.NDArray[np.int8], npt.NDArray[np.int8]]:
    shape = np.full(256, _UNKNOWN, np.int8)
    width = np.zeros(256, np.int8)  # fixed size, or the counted length's prefix width
    put = np.zeros(256, np.int8)
    counted_widths = {
        pickletools.TAKEN_FROM_ARGUMENT1: 1,
        pickletools.TAKEN_FROM_ARGUMENT4: 4,
        pickletools.TAKEN_FROM_ARGUMENT4U: 4,
        pickletools.TAKEN_FROM_ARGUMENT8U: 8,
    }
    for op in pickletools.opcodes:
        code = ord(op.code.encode("latin-1"))
        arg = op.arg
        if arg is None:
            shape[code], width[code] = _FIXED, 0
        elif arg.n >= 0:
            shape[code], width[code] = _FIXED, arg.n
        elif arg.n == pickletools.UP_TO_NEWLINE:
            shape[code] = _LINE2 if arg.name == "stringnl_noescape_pair" else _LINE
        else:
            shape[code], width[code] = _COUNTED, counted_widths[arg.n]
    put[ord("p")], put[ord("q")], put[ord("r")], put[0x94] = _PUT_TEXT, _PUT_BIN, _PUT_BIN, _MEMOIZE
    return shape, width, put


_SHAPE, _WIDTH, _PUT = _tables()
_FRAME, _STOP = 0x95, 0x2E


@_compiled()
def _check(
    data: npt.NDArray[np.uint8],
    shape: npt.NDArray[np.int8],
    width: npt.NDArray[np.int8],
    put: npt.NDArray[np.int8],
    slack: int,
) -> tuple[int, int]:
    """(OK, 0), or (TOO_LONG, declared length), or (MEMO_INDEX, index)."""
    n = data.shape[0]
    pos = 0
    filled = 0  # memo slots the stream has filled so far (an upper bound)
    while pos < n:
        op = data[pos]
        pos += 1
        s = shape[op]
        w = int(width[op])
        if s == _UNKNOWN:
            return OK, 0
        if s == _FIXED:
            if pos + w > n:
                return OK, 0
            if op == _FRAME and int(data[pos + 7]) >= 128:
                return TOO_LONG, -1  # past 2**63: no file is that long
            if put[op] == _PUT_BIN or op == _FRAME:
                value = 0
                for i in range(w - 1, -1, -1):
                    value = value * 256 + int(data[pos + i])
                if op == _FRAME:
                    if value > n - pos - w:
                        return TOO_LONG, value
                elif value > 2 * filled + slack:
                    return MEMO_INDEX, value
                else:
                    filled += 1
            elif put[op] == _MEMOIZE:
                filled += 1
            pos += w
            if op == _STOP:
                return OK, 0
        elif s == _COUNTED:
            if pos + w > n:
                return OK, 0
            length = 0
            for i in range(w - 1, -1, -1):
                length = length * 256 + int(data[pos + i])
            if w == 8 and int(data[pos + 7]) >= 128:
                return TOO_LONG, -1  # past 2**63: no file is that long
            pos += w
            if length > n - pos:
                return TOO_LONG, length
            pos += length
        else:
            lines = 2 if s == _LINE2 else 1
            start = pos
            while lines and pos < n:
                if data[pos] == 10:
                    lines -= 1
                pos += 1
            if lines:
                return OK, 0
            if put[op] == _PUT_TEXT:
                value = 0
                for i in range(start, pos - 1):
                    c = int(data[i])
                    if c < 48 or c > 57:
                        return OK, 0  # not a decimal: the unpickler refuses it
                    value = min(value * 10 + (c - 48), 1 << 62)
                if value > 2 * filled + slack:
                    return MEMO_INDEX, value
                filled += 1
    return OK, 0


def check_sizes(data: bytes | memoryview) -> tuple[int, int]:
    """(OK, 0) when every size the stream declares fits; else (TOO_LONG, length) or
    (MEMO_INDEX, index) for the first that does not."""
    status, value = _check(np.frombuffer(data, np.uint8), _SHAPE, _WIDTH, _PUT, MEMO_SLACK)
    return int(status), int(value)
