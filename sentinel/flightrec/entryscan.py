"""The compiled fast path specialised to a dump's entry layout: entry fields go straight
from the pickle machine's stack into the columns.

`scan` runs a generic pickle machine that records every value as nodes and every
container item as an edge, and then walks the entries' edges again to pull out the
fields: at 2,000 entries of ~20 keys per dump, the entries' 80,000 edges and that second
walk are a third of the scan. This machine is `scan._run` with one addition: when a
dict directly inside the top-level dict's `entries` list gets its items (the one
``MARK ... SETITEMS`` that Python's pickler and PyTorch's C++ pickler both write per
entry), its fields are read from the stack into the row's columns right there, and the
dict keeps no edges. Everything else (the top-level dict, `pg_config`, stack frames,
tensor sizes) is built as `scan` builds it, so `scan.Nodes` reads it the same way.

It recognises only that layout. An entries list built any other way (items added one by
one, a dict built by ``DICT``, an entry shared or appended twice, an entry dict that is
referred to from anywhere but the entries list) makes it decline, and the caller runs
`scan.parse_pickle`, the generic fast path (which itself declines to the restricted
unpickler). So it never accepts a file that path refuses and never decides an error.
Every read is bounds-checked by the code, as in `scan`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from sentinel.flightrec import scan
from sentinel.flightrec.jit import compiled as _compiled
from sentinel.flightrec.scan import (
    _BYTES,
    _DECLINE,
    _DICT,
    _FALSE,
    _FLOAT,
    _FNV_OFFSET,
    _INT,
    _INT_FIELDS,
    _KEY_BYTES,
    _KEY_OFFSETS,
    _LIST,
    _N_REQUIRED,
    _NONE,
    _OK,
    _STR,
    _TRUE,
    _TUPLE,
    _key_field,
    _le,
    _mix,
)

# An entry dict whose fields went into the columns: it has no items as a node, so a
# reader that meets it anywhere (scan.Nodes.value, the frame and size walks) must
# refuse it; none of them accepts this kind.
_ENTRY = 10
_ENTRIES_KEY = np.frombuffer(b"entries", dtype=np.uint8)
# An entry takes at least this many bytes of pickle (EMPTY_DICT MARK SETITEMS and 13
# keys of 2 bytes with 1-byte values): it bounds the rows a buffer must hold.
_MIN_ENTRY_BYTES = 42


@_compiled()
def _run_entries(
    data: npt.NDArray[np.uint8],
    kind: npt.NDArray[np.int8],
    val: npt.NDArray[np.int64],
    aux: npt.NDArray[np.int32],
    enode: npt.NDArray[np.int32],
    enext: npt.NDArray[np.int32],
    stack: npt.NDArray[np.int32],
    marks: npt.NDArray[np.int32],
    memo: npt.NDArray[np.int32],
    memo_gen: npt.NDArray[np.int32],
    field_of: npt.NDArray[np.int8],
    field_gen: npt.NDArray[np.int32],
    frozen: npt.NDArray[np.int32],
    hash_gen: npt.NDArray[np.int32],
    hashes: npt.NDArray[np.uint64],
    gen: int,
    keys: npt.NDArray[np.uint8],
    koff: npt.NDArray[np.int64],
    max_tensors: int,
    max_dims: int,
    ints: npt.NDArray[np.int64],
    nulls: npt.NDArray[np.bool_],
    sigs: npt.NDArray[np.uint64],
    dur: npt.NDArray[np.float64],
    row_node: npt.NDArray[np.int32],
    high: npt.NDArray[np.uint8],
) -> tuple[int, int, int, int, int]:
    """Run the pickle machine: (status, root node, nodes used, entries node, rows), and
    in high[0] the OR of every string's bytes (below 0x80: all ASCII, valid UTF-8).

    The arrays up to `memo_gen` are `scan._run`'s; `field_of`/`field_gen` (per node: which
    FIELDS key a string is, valid where the stamp is `gen`) cache the key lookups;
    `frozen` stamps the lists an entry's columns were read from (the columns hold their
    contents now, so they must not grow later) and `hash_gen`/`hashes` keep the hash of
    each sizes, dtypes or string node read (PyTorch shares strings, Python also lists); the
    row arrays (`ints` .. `dur`, the columns of `scan._columns`, and `row_node`, each
    row's dict) hold at least len(data) // _MIN_ENTRY_BYTES + 1 rows.
    """
    n = data.shape[0]
    cap = n + 1
    row_cap = ints.shape[1]
    as_int = np.zeros(1, np.int64)
    as_float = as_int.view(np.float64)
    node_of = np.empty(16, np.int64)
    pos = 0
    nn = 0
    ne = 0
    sp = 0
    mp = 0
    memo_len = 0
    rows = 0
    high_bits = np.uint8(0)
    entries = -1  # the entries list's node
    entries_base = -1  # the stack slot of its first item in the current APPENDS batch
    while pos < n:
        op = data[pos]
        pos += 1
        if op == 0x68 or op == 0x6A:  # BINGET, LONG_BINGET
            width = 1 if op == 0x68 else 4
            if pos + width > n or sp >= cap:
                return _DECLINE, -1, nn, -1, 0
            idx = _le(data, pos, width)
            pos += width
            if idx >= cap or memo_gen[idx] != gen:
                return _DECLINE, -1, nn, -1, 0
            stack[sp] = memo[idx]
            sp += 1
            continue
        if op == 0x71 or op == 0x72 or op == 0x94:  # BINPUT, LONG_BINPUT, MEMOIZE
            if sp == 0:
                return _DECLINE, -1, nn, -1, 0
            if op == 0x94:
                idx = memo_len
            else:
                width = 1 if op == 0x71 else 4
                if pos + width > n:
                    return _DECLINE, -1, nn, -1, 0
                idx = _le(data, pos, width)
                pos += width
            if idx >= cap:
                return _DECLINE, -1, nn, -1, 0
            if memo_gen[idx] != gen:
                memo_len += 1
                memo_gen[idx] = gen
            memo[idx] = stack[sp - 1]
            continue
        if op == 0x28:  # MARK
            if mp >= cap:
                return _DECLINE, -1, nn, -1, 0
            if sp > 0 and stack[sp - 1] == entries and entries != -1:
                entries_base = sp  # a batch of entries starts here
            marks[mp] = sp
            mp += 1
            continue
        if op == 0x61 or op == 0x65 or op == 0x73 or op == 0x75:
            # APPEND, APPENDS, SETITEM, SETITEMS: items go into the container below them.
            if op == 0x61:
                start = sp - 1
            elif op == 0x73:
                start = sp - 2
            else:
                if mp == 0:
                    return _DECLINE, -1, nn, -1, 0
                mp -= 1
                start = int(marks[mp])
            if start < 1 or ne + (sp - start) > cap:
                return _DECLINE, -1, nn, -1, 0
            target = stack[start - 1]
            if frozen[target] == gen:
                return _DECLINE, -1, nn, -1, 0  # a list already read into the columns
            if op == 0x61 or op == 0x65:
                if kind[target] != _LIST:
                    return _DECLINE, -1, nn, -1, 0
            else:
                if kind[target] != _DICT or (sp - start) % 2 != 0:
                    return _DECLINE, -1, nn, -1, 0
                for i in range(start, sp, 2):  # keys a dict can hold (as _keys_hashable)
                    key_kind = kind[stack[i]]
                    if key_kind >= _LIST:
                        return _DECLINE, -1, nn, -1, 0
            if (
                op == 0x75
                and entries != -1
                and start - 1 >= entries_base
                and mp > 0
                and marks[mp - 1] == entries_base
                and stack[entries_base - 1] == entries
                and target > entries
                and val[target] == -1
            ):
                # An entry: its fields into row `rows`, the dict keeps no items.
                if rows >= row_cap:
                    return _DECLINE, -1, nn, -1, 0
                for f in range(16):
                    node_of[f] = -1
                for i in range(start, sp, 2):
                    key = stack[i]
                    if kind[key] == _STR:
                        if field_gen[key] != gen:
                            field_of[key] = _key_field(data, val[key], aux[key], keys, koff)
                            field_gen[key] = gen
                        f = field_of[key]
                        if f >= 0:
                            node_of[f] = stack[i + 1]  # the last one wins, as in a dict
                # The fields into the row, checked as scan._columns checks them. Written
                # out here, not in a helper: an inlined helper's array arguments are still
                # reference-counted on each call, which cost a quarter of the whole scan.
                for f in range(_N_REQUIRED):
                    if node_of[f] == -1:
                        return _DECLINE, -1, nn, -1, 0
                for j in range(6):
                    nulls[j, rows] = False
                rid = node_of[0]
                if kind[rid] != _INT:
                    return _DECLINE, -1, nn, -1, 0
                ints[0, rows] = val[rid]
                pg = node_of[1]
                if kind[pg] != _TUPLE and kind[pg] != _LIST:
                    return _DECLINE, -1, nn, -1, 0
                first = val[pg]
                if first == -1 or enext[first] == -1 or enext[enext[first]] != -1:
                    return _DECLINE, -1, nn, -1, 0
                pg_name, pg_desc = enode[first], enode[enext[first]]
                if kind[pg_name] != _STR or kind[pg_desc] != _STR:
                    return _DECLINE, -1, nn, -1, 0
                frozen[pg] = gen  # a list as process_group (JSON-like writers): read now, so fixed
                ints[1, rows] = pg_name
                ints[2, rows] = pg_desc
                for j in range(5):
                    col, f, nul = _INT_FIELDS[j, 0], _INT_FIELDS[j, 1], _INT_FIELDS[j, 2]
                    k = kind[node_of[f]]
                    if k == _NONE:
                        nulls[nul, rows] = True
                        ints[col, rows] = 0
                    elif k == _INT:
                        ints[col, rows] = val[node_of[f]]
                    else:
                        return _DECLINE, -1, nn, -1, 0
                for col, f in ((5, 4), (6, 9)):  # profiling_name, state
                    if kind[node_of[f]] != _STR:
                        return _DECLINE, -1, nn, -1, 0
                    ints[col, rows] = node_of[f]
                p2p = node_of[13]
                ints[10, rows] = -1
                if p2p != -1:
                    if kind[p2p] == _TRUE:
                        ints[10, rows] = 1
                    elif kind[p2p] == _FALSE:
                        ints[10, rows] = 0
                    elif kind[p2p] != _NONE:
                        return _DECLINE, -1, nn, -1, 0
                d = node_of[14]
                nulls[5, rows] = True
                dur[rows] = 0.0
                if d != -1:
                    if kind[d] == _FLOAT:
                        as_int[0] = val[d]
                        dur[rows] = as_float[0]
                        nulls[5, rows] = False
                    elif kind[d] == _INT:
                        dur[rows] = np.float64(val[d])
                        nulls[5, rows] = False
                    elif kind[d] != _NONE:
                        return _DECLINE, -1, nn, -1, 0
                ints[11, rows] = node_of[15]
                for which in range(2):
                    sizes, dtypes = node_of[5 + which], node_of[7 + which]
                    if hash_gen[sizes] != gen:
                        # The sizes' hash (a list of lists of ints, as scan._sig hashes
                        # them), written out here rather than a helper's: a compiled call
                        # reference-counts its array arguments, and every entry has two new
                        # sizes lists (decoding 0.78 -> 0.74 ms a dump)
                        k = kind[sizes]
                        if k != _LIST and k != _TUPLE:
                            return _DECLINE, -1, nn, -1, 0
                        frozen[sizes] = gen
                        h1, h2 = _FNV_OFFSET, np.uint64(0)
                        tensors = 0
                        e = val[sizes]
                        while e != -1:
                            t = enode[e]
                            tensors += 1
                            if tensors > max_tensors or (kind[t] != _LIST and kind[t] != _TUPLE):
                                return _DECLINE, -1, nn, -1, 0
                            frozen[t] = gen
                            h1, h2 = _mix(h1, h2, np.uint64(0xA1A1))  # tensor start
                            dims = 0
                            dd = val[t]
                            while dd != -1:
                                x = enode[dd]
                                dims += 1
                                if dims > max_dims or kind[x] != _INT:
                                    return _DECLINE, -1, nn, -1, 0
                                h1, h2 = _mix(h1, h2, np.uint64(val[x]))
                                dd = enext[dd]
                            h1, h2 = _mix(h1, h2, np.uint64(0xB2B2))  # tensor end
                            e = enext[e]
                        hashes[sizes, 0], hashes[sizes, 1] = _mix(h1, h2, np.uint64(0xC3C3))
                        hash_gen[sizes] = gen
                    if hash_gen[dtypes] != gen:
                        # Each entry has its own dtypes list (of shared strings): hashed right here.
                        k = kind[dtypes]
                        if k != _LIST and k != _TUPLE:
                            return _DECLINE, -1, nn, -1, 0
                        frozen[dtypes] = gen
                        h1, h2 = _FNV_OFFSET ^ np.uint64(0xE5E5), np.uint64(0xE5E5)
                        count = 0
                        e = val[dtypes]
                        while e != -1:
                            s = enode[e]
                            count += 1
                            if count > max_tensors or kind[s] != _STR:
                                return _DECLINE, -1, nn, -1, 0
                            if hash_gen[s] != gen:
                                _hash_string(data, val, aux, s, hash_gen, hashes, gen)
                            h1, h2 = _mix(h1, h2, hashes[s, 0])
                            h1, h2 = _mix(h1, h2, hashes[s, 1])
                            e = enext[e]
                        hashes[dtypes, 0], hashes[dtypes, 1] = _mix(h1, h2, np.uint64(0xF6F6))
                        hash_gen[dtypes] = gen
                    h1, h2 = hashes[sizes, 0], hashes[sizes, 1]
                    h1, h2 = _mix(h1, h2, hashes[dtypes, 0])
                    h1, h2 = _mix(h1, h2, hashes[dtypes, 1])
                    sigs[2 * which, rows] = h1
                    sigs[2 * which + 1, rows] = h2
                    ints[12 + which, rows] = sizes
                    ints[14 + which, rows] = dtypes
                row_node[rows] = target
                rows += 1
                kind[target] = _ENTRY
                sp = start
                continue
            last = aux[target]
            for i in range(start, sp):
                enode[ne] = stack[i]
                enext[ne] = -1
                if last == -1:
                    val[target] = ne
                else:
                    enext[last] = ne
                last = ne
                ne += 1
            aux[target] = last
            sp = start
            continue
        if op == 0x85 or op == 0x86 or op == 0x87 or op == 0x74 or op == 0x6C or op == 0x64:
            # TUPLE1-3 take the top items; TUPLE, LIST and DICT take those above the mark.
            if op == 0x85 or op == 0x86 or op == 0x87:
                start = sp - (int(op) - 0x84)
                if start < 0:
                    return _DECLINE, -1, nn, -1, 0
            else:
                if mp == 0:
                    return _DECLINE, -1, nn, -1, 0
                mp -= 1
                start = int(marks[mp])
            if nn >= cap or ne + (sp - start) > cap:
                return _DECLINE, -1, nn, -1, 0
            k = _DICT if op == 0x64 else (_LIST if op == 0x6C else _TUPLE)
            if k == _DICT and ((sp - start) % 2 != 0 or not _keys_hashable(kind, stack, start, sp)):
                return _DECLINE, -1, nn, -1, 0
            node = nn
            nn += 1
            kind[node] = k
            val[node] = -1 if start == sp else ne
            aux[node] = -1 if start == sp else ne + (sp - start) - 1
            for i in range(start, sp):
                enode[ne] = stack[i]
                enext[ne] = ne + 1 if i + 1 < sp else -1
                ne += 1
            sp = start
            stack[sp] = node
            sp += 1
            continue
        # The rest push one new value.
        if nn >= cap or sp >= cap:
            return _DECLINE, -1, nn, -1, 0
        k = -1
        v = 0
        length = -1
        if op == 0x5D or op == 0x7D or op == 0x29:  # EMPTY_LIST, EMPTY_DICT, EMPTY_TUPLE
            k = _LIST if op == 0x5D else (_DICT if op == 0x7D else _TUPLE)
            v = -1
            if (
                op == 0x5D
                and mp == 1
                and marks[0] == 1
                and sp >= 2
                and kind[stack[0]] == _DICT
                and kind[stack[sp - 1]] == _STR
                and _is_entries_key(data, val[stack[sp - 1]], aux[stack[sp - 1]])
            ):
                # The top-level dict's "entries" value: a second one declines (which of
                # them the dict keeps is for the generic path to say).
                if entries != -1:
                    return _DECLINE, -1, nn, -1, 0
                entries = nn
        elif op == 0x4B or op == 0x4D or op == 0x4A:  # BININT1, BININT2, BININT
            width = 1 if op == 0x4B else (2 if op == 0x4D else 4)
            if pos + width > n:
                return _DECLINE, -1, nn, -1, 0
            v = _le(data, pos, width)
            if width == 4 and v >= 2**31:
                v -= 2**32
            pos += width
            k = _INT
        elif op == 0x8A:  # LONG1: little-endian two's complement
            if pos + 1 > n:
                return _DECLINE, -1, nn, -1, 0
            width = int(data[pos])
            pos += 1
            if width > 8 or pos + width > n:
                return _DECLINE, -1, nn, -1, 0
            u = np.uint64(0)
            for i in range(width):
                u |= np.uint64(data[pos + i]) << np.uint64(8 * i)
            if width > 0 and width < 8 and data[pos + width - 1] >= 0x80:
                u |= ~np.uint64(0) << np.uint64(8 * width)  # sign-extend
            v = np.int64(u)  # type: ignore[assignment]  # the bits, as two's complement
            pos += width
            k = _INT
        elif op == 0x88 or op == 0x89 or op == 0x4E:  # NEWTRUE, NEWFALSE, NONE
            k = _TRUE if op == 0x88 else (_FALSE if op == 0x89 else _NONE)
        elif op == 0x58 or op == 0x8C or op == 0x8D or op == 0x42 or op == 0x43 or op == 0x8E:
            width = 1 if (op == 0x8C or op == 0x43) else (8 if (op == 0x8D or op == 0x8E) else 4)
            if pos + width > n:
                return _DECLINE, -1, nn, -1, 0
            length = _le(data, pos, width)
            pos += width
            if length < 0 or length > n - pos:
                return _DECLINE, -1, nn, -1, 0
            k = _STR if (op == 0x58 or op == 0x8C or op == 0x8D) else _BYTES
            v = pos
            if k == _STR:  # the OR of every string's bytes: all ASCII needs no UTF-8 check
                text = data[pos : pos + length]  # from 0: no wraparound, so it vectorises
                for j in range(text.shape[0]):
                    high_bits = np.uint8(high_bits | text[j])
            pos += length
        elif op == 0x47:  # BINFLOAT: big-endian IEEE 754, kept as its bits
            if pos + 8 > n:
                return _DECLINE, -1, nn, -1, 0
            u = np.uint64(0)
            for i in range(8):
                u = (u << np.uint64(8)) | np.uint64(data[pos + i])
            v = np.int64(u)  # type: ignore[assignment]  # the bits, as two's complement
            pos += 8
            k = _FLOAT
        elif op == 0x80:  # PROTO
            if pos + 1 > n or data[pos] < 2 or data[pos] > 5:
                return _DECLINE, -1, nn, -1, 0
            pos += 1
            continue
        elif op == 0x95:  # FRAME: a length hint only
            if pos + 8 > n:
                return _DECLINE, -1, nn, -1, 0
            pos += 8
            continue
        elif op == 0x2E:  # STOP
            if (
                sp == 0
                or entries == -1
                or not _entries_are_rows(val, enode, enext, entries, row_node, rows)
            ):
                return _DECLINE, -1, nn, -1, 0
            high[0] = high_bits
            return _OK, int(stack[sp - 1]), nn, entries, rows
        else:
            return _DECLINE, -1, nn, -1, 0
        kind[nn] = k
        val[nn] = v
        aux[nn] = length
        stack[sp] = nn
        sp += 1
        nn += 1
    return _DECLINE, -1, nn, -1, 0  # no STOP


@_compiled(inline=True)
def _keys_hashable(
    kind: npt.NDArray[np.int8], stack: npt.NDArray[np.int32], start: int, stop: int
) -> bool:
    """As `scan._keys_hashable`, and an extracted entry is no key either."""
    for i in range(start, stop, 2):
        k = kind[stack[i]]
        if k in (_LIST, _DICT, _TUPLE, _ENTRY):
            return False
    return True


@_compiled(inline=True)
def _is_entries_key(data: npt.NDArray[np.uint8], start: int, length: int) -> bool:
    if length != _ENTRIES_KEY.shape[0]:
        return False
    for i in range(length):  # noqa: SIM110 - numba compiles loops, not generators
        if data[start + i] != _ENTRIES_KEY[i]:
            return False
    return True


@_compiled(inline=True)
def _entries_are_rows(
    val: npt.NDArray[np.int64],
    enode: npt.NDArray[np.int32],
    enext: npt.NDArray[np.int32],
    entries: int,
    row_node: npt.NDArray[np.int32],
    rows: int,
) -> bool:
    """Whether the entries list holds exactly the extracted dicts, each once, in order."""
    e = val[entries]
    i = 0
    while e != -1:
        if i >= rows or enode[e] != row_node[i]:
            return False
        i += 1
        e = enext[e]
    return i == rows


@_compiled()
def _hash_string(
    data: npt.NDArray[np.uint8],
    val: npt.NDArray[np.int64],
    aux: npt.NDArray[np.int32],
    s: int,
    hash_gen: npt.NDArray[np.int32],
    hashes: npt.NDArray[np.uint64],
    gen: int,
) -> None:
    """Hash a string node's bytes into hashes[s]."""
    s1, s2 = _mix(_FNV_OFFSET, np.uint64(0), np.uint64(aux[s]) + np.uint64(0xD4D4))
    for i in range(val[s], val[s] + aux[s]):
        s1, s2 = _mix(s1, s2, np.uint64(data[i]))
    hashes[s, 0], hashes[s, 1] = s1, s2
    hash_gen[s] = gen


class EntryScratch(scan.Scratch):
    """`scan.Scratch` plus the key cache and the row buffers of `_run_entries`."""

    def ensure(self, size: int) -> None:
        if size <= self.size:
            return
        super().ensure(size)
        self.field_of = np.empty(self.size, np.int8)
        self.field_gen = np.zeros(self.size, np.int32)
        self.frozen = np.zeros(self.size, np.int32)
        self.hash_gen = np.zeros(self.size, np.int32)
        self.hashes = np.empty((self.size, 2), np.uint64)
        rows = self.size // _MIN_ENTRY_BYTES + 1
        # by column: what the parser reads is a column, and a contiguous one is not copied
        self.ints = np.empty((16, rows), np.int64)
        self.nulls = np.empty((6, rows), np.bool_)
        self.sigs = np.empty((4, rows), np.uint64)
        self.dur = np.empty(rows, np.float64)
        self.row_node = np.empty(rows, np.int32)
        self.high = np.zeros(1, np.uint8)

    def next_generation(self) -> int:
        gen = super().next_generation()
        if gen == 1:  # the memo stamps wrapped round (or were just made): so do these
            self.field_gen[:] = 0
            self.frozen[:] = 0
            self.hash_gen[:] = 0
        return gen


def parse_pickle(
    data: bytes | memoryview,
    max_tensors: int,
    max_dims: int,
    wanted: frozenset[str],
    scratch: EntryScratch | None = None,
) -> tuple[scan.Nodes, dict[str, Any], scan.EntryColumns] | None:
    """`scan.parse_pickle` for the usual layout; None where it does not recognise it (then
    run `scan.parse_pickle`, which may still take the dump). The columns are views of the
    scratch's buffers: valid until the scratch serves the next dump."""
    work = scratch or EntryScratch()
    nodes = scan.Nodes(data, work)
    status, root, used, entries, rows = _run_entries(
        nodes.raw,
        nodes.kind,
        nodes.val,
        nodes.aux,
        nodes.enode,
        nodes.enext,
        work.stack,
        work.marks,
        work.memo,
        work.memo_gen,
        work.field_of,
        work.field_gen,
        work.frozen,
        work.hash_gen,
        work.hashes,
        work.next_generation(),
        _KEY_BYTES,
        _KEY_OFFSETS,
        max_tensors,
        max_dims,
        work.ints,
        work.nulls,
        work.sigs,
        work.dur,
        work.row_node,
        work.high,
    )
    if status != _OK:
        return None
    nodes.root, nodes.used = int(root), int(used)
    if work.high[0] >= 0x80 and not scan._strings_valid(
        nodes.raw, nodes.kind, nodes.val, nodes.aux, nodes.used
    ):
        return None
    try:
        top = nodes.top_level(wanted)
    except (OverflowError, UnicodeError, TypeError, KeyError):
        return None  # KeyError: Nodes.value met an extracted entry
    if top is None or top[1] != entries:
        return None
    # (rows, 16) like scan's, each column contiguous; views of the scratch's buffers, valid
    # until its next dump (the parser copies out what it keeps)
    columns = scan.EntryColumns(
        work.ints[:, :rows].T, work.nulls[:, :rows].T, work.sigs[:, :rows].T, work.dur[:rows]
    )
    return nodes, top[0], columns
