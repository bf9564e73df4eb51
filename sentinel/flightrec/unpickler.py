"""A restricted unpickler that turns a dump pickle into plain data and nothing else."""

from __future__ import annotations

import io
import pickle
from typing import NoReturn

from sentinel.flightrec import prescan
from sentinel.flightrec.models import FrParseError

# A real 2,000-entry dump with deep stacks is a few MB; anything far larger is hostile.
MAX_PICKLE_BYTES = 64 * 1024 * 1024

_PROTO = 0x80
_FRAME = b"\x95"


class _PlainDataUnpickler(pickle.Unpickler):
    """Refuses every way a pickle can name a Python object.

    Every callable or class a pickle can use (GLOBAL, STACK_GLOBAL, INST, the EXT
    opcodes) is looked up through find_class, and persistent ids through
    persistent_load; refusing both leaves only the plain-data opcodes. REDUCE, NEWOBJ,
    OBJ and BUILD then have nothing to call: on plain values they fail as type errors.
    """

    def __init__(self, data: io.BytesIO, name: str) -> None:
        super().__init__(data)
        self._name = name

    def find_class(self, module: str, name: str) -> NoReturn:
        raise FrParseError(
            f"{self._name}: refused global {module}.{name}: "
            "a flight-recorder dump may hold only plain data"
        )

    def persistent_load(self, pid: object) -> NoReturn:
        raise FrParseError(f"{self._name}: refused persistent id: dumps hold only plain data")


def _framed(data: bytes) -> bytes:
    """Wrap a protocol 2/3 stream in one protocol-4 frame.

    The C unpickler reads an unframed stream from a file one opcode at a time (a Python
    call each, 5x slower); a single frame makes it read the whole body at once. Frame
    and PROTO opcodes carry no semantics beyond that, so the data read is unchanged.
    """
    if len(data) >= 2 and data[0] == _PROTO and data[1] < 4:
        body = data[2:]
        return bytes((_PROTO, 4)) + _FRAME + len(body).to_bytes(8, "little") + body
    return data


def load_plain(data: bytes, name: str, max_bytes: int = MAX_PICKLE_BYTES) -> object:
    """Unpickle `data` into dicts, lists, tuples, str, bytes, numbers, bools and None.

    Raises FrParseError (naming `name`) for anything else: globals, oversized input,
    truncated or corrupt streams. Container growth is bounded by the input size (each
    element costs at least one opcode byte), and the size is capped by `max_bytes`; the
    sizes the stream declares (lengths, frames, memo indices) are checked against the
    input by `prescan` before the C unpickler, which trusts them, sees the stream.
    """
    if len(data) > max_bytes:
        raise FrParseError(f"{name}: {len(data)} bytes is over the {max_bytes}-byte limit")
    status, value = prescan.check_sizes(data)
    if status == prescan.TOO_LONG:
        raise FrParseError(
            f"{name}: not a valid pickle: a declared length "
            f"({'over 2**63' if value < 0 else value} bytes) is larger than the rest of the file"
        )
    if status == prescan.MEMO_INDEX:
        raise FrParseError(
            f"{name}: not a valid pickle: memo index {value} is far past the entries "
            "memoized before it (the unpickler would allocate a table that large)"
        )
    try:
        return _PlainDataUnpickler(io.BytesIO(_framed(data)), name).load()
    except FrParseError:
        raise
    except MemoryError:
        # A declared length (BINBYTES8 and friends) far beyond the file is preallocated
        # by the unpickler before it finds the data missing.
        raise FrParseError(f"{name}: a declared length is larger than the file") from None
    except RecursionError:
        raise FrParseError(f"{name}: nested too deeply") from None
    except Exception as exc:  # the unpickler raises many types on corrupt input
        raise FrParseError(f"{name}: not a valid pickle: {type(exc).__name__}: {exc}") from None
