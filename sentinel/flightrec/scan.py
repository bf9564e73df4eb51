"""A compiled fast path for the pickle dumps PyTorch writes: bytes to columns, no objects.

At 16,384 ranks x 2,000 entries the stock (restricted) unpickler builds some 60 million
Python objects only for the parser to take them apart again; that alone is minutes on a
small machine. This module reads the same bytes with a tiny pickle machine compiled by
numba, which records values as rows of flat arrays (a node per value, an edge per
container item) and then pulls the entry fields out as numpy columns.

It is only a fast path. It understands the opcodes of protocols 2 to 5 that plain data
needs (what PyTorch's C++ pickler and Python's pickler write for dicts, lists, tuples,
str, int, float, bool and None) and nothing that names or calls Python code. On any
other opcode, on anything malformed, and on any entry it cannot take as it is, it
declines (returns None) and the caller runs the restricted unpickler, which gives the
exact error. So it never accepts a file the checked path refuses, and it never decides
what an error says. Every read is bounds-checked, both by the code and by numba.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from sentinel.flightrec.jit import compiled as _compiled

# Node kinds.
_NONE, _FALSE, _TRUE, _INT, _FLOAT, _STR, _BYTES, _LIST, _TUPLE, _DICT = range(10)

_OK, _DECLINE = 0, 1

# Fields every 2.x entry carries, then the optional ones; the kernel extracts them by
# position in FIELDS.
REQUIRED_FIELDS = (
    "record_id",
    "process_group",
    "collective_seq_id",
    "p2p_seq_id",
    "profiling_name",
    "input_sizes",
    "output_sizes",
    "input_dtypes",
    "output_dtypes",
    "state",
    "time_created_ns",
    "time_discovered_started_ns",
    "time_discovered_completed_ns",
)
FIELDS = (*REQUIRED_FIELDS, "is_p2p", "duration_ms", "frames")
_N_REQUIRED = len(REQUIRED_FIELDS)
_KEY_BYTES = np.frombuffer(b"".join(f.encode() for f in FIELDS), dtype=np.uint8)
_KEY_OFFSETS = np.cumsum([0, *(len(f) for f in FIELDS)]).astype(np.int64)


@_compiled()
def _run(
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
    gen: int,
) -> tuple[int, int, int, int]:
    """Run the pickle machine: (status, root node, nodes used, edges used).

    Every array holds at least len(data) + 1 slots: each node, edge, stack slot, mark and
    memo entry costs at least one opcode byte. They are the caller's, to be reused.

    Nodes: kind; val (int value, a float's IEEE bits, string/bytes offset, or a
    container's first edge); aux (string length, or a container's last edge). Containers
    keep their items as a linked list of edges so that memoized values can be shared.
    Opcodes are tested most frequent first (BINGET is half of a PyTorch dump).
    """
    n = data.shape[0]
    cap = n + 1
    # A memo slot is set in this run iff memo_gen[slot] == gen: no clearing per file.
    pos = 0
    nn = 0  # nodes used
    ne = 0  # edges used
    sp = 0  # stack depth
    mp = 0  # mark depth
    memo_len = 0
    while pos < n:
        op = data[pos]
        pos += 1
        if op == 0x68 or op == 0x6A:  # BINGET, LONG_BINGET
            width = 1 if op == 0x68 else 4
            if pos + width > n or sp >= cap:
                return _DECLINE, -1, nn, ne
            idx = _le(data, pos, width)
            pos += width
            if idx >= cap or memo_gen[idx] != gen:
                return _DECLINE, -1, nn, ne
            stack[sp] = memo[idx]
            sp += 1
            continue
        if op == 0x71 or op == 0x72 or op == 0x94:  # BINPUT, LONG_BINPUT, MEMOIZE
            if sp == 0:
                return _DECLINE, -1, nn, ne
            if op == 0x94:
                idx = memo_len
            else:
                width = 1 if op == 0x71 else 4
                if pos + width > n:
                    return _DECLINE, -1, nn, ne
                idx = _le(data, pos, width)
                pos += width
            if idx >= cap:
                return _DECLINE, -1, nn, ne
            if memo_gen[idx] != gen:
                memo_len += 1
                memo_gen[idx] = gen
            memo[idx] = stack[sp - 1]
            continue
        if op == 0x28:  # MARK
            if mp >= cap:
                return _DECLINE, -1, nn, ne
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
                    return _DECLINE, -1, nn, ne
                mp -= 1
                start = int(marks[mp])
            if start < 1 or ne + (sp - start) > cap:
                return _DECLINE, -1, nn, ne
            target = stack[start - 1]
            if op == 0x61 or op == 0x65:
                if kind[target] != _LIST:
                    return _DECLINE, -1, nn, ne
            elif (
                kind[target] != _DICT
                or (sp - start) % 2 != 0
                or not _keys_hashable(kind, stack, start, sp)
            ):
                return _DECLINE, -1, nn, ne
            # Appended in place: a helper call per item (array arguments are
            # reference-counted) costs four times the whole rest of the machine.
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
                    return _DECLINE, -1, nn, ne
            else:
                if mp == 0:
                    return _DECLINE, -1, nn, ne
                mp -= 1
                start = int(marks[mp])
            if nn >= cap or ne + (sp - start) > cap:
                return _DECLINE, -1, nn, ne
            k = _DICT if op == 0x64 else (_LIST if op == 0x6C else _TUPLE)
            if k == _DICT and ((sp - start) % 2 != 0 or not _keys_hashable(kind, stack, start, sp)):
                return _DECLINE, -1, nn, ne
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
            return _DECLINE, -1, nn, ne
        k = -1
        v = 0
        length = -1
        if op == 0x5D or op == 0x7D or op == 0x29:  # EMPTY_LIST, EMPTY_DICT, EMPTY_TUPLE
            k = _LIST if op == 0x5D else (_DICT if op == 0x7D else _TUPLE)
            v = -1
        elif op == 0x4B or op == 0x4D or op == 0x4A:  # BININT1, BININT2, BININT
            width = 1 if op == 0x4B else (2 if op == 0x4D else 4)
            if pos + width > n:
                return _DECLINE, -1, nn, ne
            v = _le(data, pos, width)
            if width == 4 and v >= 2**31:
                v -= 2**32
            pos += width
            k = _INT
        elif op == 0x8A:  # LONG1: little-endian two's complement
            if pos + 1 > n:
                return _DECLINE, -1, nn, ne
            width = int(data[pos])
            pos += 1
            if width > 8 or pos + width > n:
                return _DECLINE, -1, nn, ne  # beyond 64 bits: the checked path says so
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
            # BINUNICODE, SHORT_BINUNICODE, BINUNICODE8 and the BINBYTES: the node points
            # into the data; only the strings read later are decoded (and validated).
            width = 1 if (op == 0x8C or op == 0x43) else (8 if (op == 0x8D or op == 0x8E) else 4)
            if pos + width > n:
                return _DECLINE, -1, nn, ne
            length = _le(data, pos, width)
            pos += width
            if length < 0 or length > n - pos:
                return _DECLINE, -1, nn, ne
            k = _STR if (op == 0x58 or op == 0x8C or op == 0x8D) else _BYTES
            v = pos
            pos += length
        elif op == 0x47:  # BINFLOAT: big-endian IEEE 754, kept as its bits
            if pos + 8 > n:
                return _DECLINE, -1, nn, ne
            u = np.uint64(0)
            for i in range(8):
                u = (u << np.uint64(8)) | np.uint64(data[pos + i])
            v = np.int64(u)  # type: ignore[assignment]  # the bits, as two's complement
            pos += 8
            k = _FLOAT
        elif op == 0x80:  # PROTO
            if pos + 1 > n or data[pos] < 2 or data[pos] > 5:
                return _DECLINE, -1, nn, ne
            pos += 1
            continue
        elif op == 0x95:  # FRAME: a length hint only
            if pos + 8 > n:
                return _DECLINE, -1, nn, ne
            pos += 8
            continue
        elif op == 0x2E:  # STOP
            if sp == 0:
                return _DECLINE, -1, nn, ne
            return _OK, int(stack[sp - 1]), nn, ne
        else:
            return _DECLINE, -1, nn, ne  # anything else: the checked path decides
        kind[nn] = k
        val[nn] = v
        aux[nn] = length
        stack[sp] = nn
        sp += 1
        nn += 1
    return _DECLINE, -1, nn, ne  # no STOP


@_compiled(inline=True)
def _le(data: npt.NDArray[np.uint8], pos: int, width: int) -> int:
    """Unsigned little-endian, `width` (at most 8) bytes; the caller checks the bounds."""
    v = 0
    for i in range(width):
        v |= int(data[pos + i]) << (8 * i)
    return v


@_compiled()
def _strings_valid(
    data: npt.NDArray[np.uint8],
    kind: npt.NDArray[np.int8],
    val: npt.NDArray[np.int64],
    aux: npt.NDArray[np.int32],
    used: int,
) -> bool:
    """Whether every string is UTF-8 as pickle reads it (lone surrogates allowed): the
    unpickler refuses a file with one bad string anywhere, so the fast path must too."""
    for node in range(used):
        if kind[node] != _STR:
            continue
        i = val[node]
        end = i + aux[node]
        # Nearly every string is ASCII: an OR of its bytes says so in a loop the compiler
        # vectorises (the default group's rank list is 100 KB at 16k ranks). Over a slice
        # from 0, so that no index can be negative: numba's wraparound of a negative index
        # turned the vectorised loop into gathers (2.5 ns a byte instead of 0.01).
        text = data[i:end]
        high = np.uint8(0)
        for j in range(text.shape[0]):
            high = np.uint8(high | text[j])  # kept uint8, so that it vectorises
        if high < 0x80:
            continue
        while i < end:
            b = data[i]
            if b < 0x80:
                i += 1
                while i < end and data[i] < 0x80:  # the common case, a tight loop
                    i += 1
                continue
            if 0xC2 <= b <= 0xDF:
                need, lo, hi = 1, 0x80, 0xBF
            elif b == 0xE0:
                need, lo, hi = 2, 0xA0, 0xBF
            elif 0xE1 <= b <= 0xEF:  # 0xED included: surrogatepass lets surrogates through
                need, lo, hi = 2, 0x80, 0xBF
            elif b == 0xF0:
                need, lo, hi = 3, 0x90, 0xBF
            elif 0xF1 <= b <= 0xF3:
                need, lo, hi = 3, 0x80, 0xBF
            elif b == 0xF4:
                need, lo, hi = 3, 0x80, 0x8F
            else:
                return False
            if i + need >= end:  # the sequence runs past the string
                return False
            if not lo <= data[i + 1] <= hi:
                return False
            for k in range(2, need + 1):
                if not 0x80 <= data[i + k] <= 0xBF:
                    return False
            i += need + 1
    return True


@_compiled(inline=True)
def _keys_hashable(
    kind: npt.NDArray[np.int8], stack: npt.NDArray[np.int32], start: int, stop: int
) -> bool:
    """Keys a dict can hold without a TypeError (lists, dicts and tuples are left to Python)."""
    for i in range(start, stop, 2):
        k = kind[stack[i]]
        if k in (_LIST, _DICT, _TUPLE):
            return False
    return True


@_compiled(inline=True)
def _key_field(
    data: npt.NDArray[np.uint8],
    off: int,
    length: int,
    keys: npt.NDArray[np.uint8],
    koff: npt.NDArray[np.int64],
) -> int:
    for f in range(koff.shape[0] - 1):
        if koff[f + 1] - koff[f] != length:
            continue
        same = True
        for i in range(length):
            if data[off + i] != keys[koff[f] + i]:
                same = False
                break
        if same:
            return f
    return -1


# int-or-None fields: (column in `ints`, field, column in `nulls`)
_INT_FIELDS = np.array([(3, 2, 0), (4, 3, 1), (7, 10, 2), (8, 11, 3), (9, 12, 4)], np.int64)
_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)
_MIX_PRIME = np.uint64(0x9E3779B97F4A7C15)


@_compiled(inline=True)
def _mix(h1: np.uint64, h2: np.uint64, x: np.uint64) -> tuple[np.uint64, np.uint64]:
    """Two independent 64-bit hashes of the same token stream (128 bits together)."""
    h1 = (h1 ^ x) * _FNV_PRIME
    h2 = (h2 + x + np.uint64(1)) * _MIX_PRIME
    h2 ^= h2 >> np.uint64(29)
    return h1, h2


@_compiled(inline=True)
def _sig(
    data: npt.NDArray[np.uint8],
    kind: npt.NDArray[np.int8],
    val: npt.NDArray[np.int64],
    aux: npt.NDArray[np.int32],
    enode: npt.NDArray[np.int32],
    enext: npt.NDArray[np.int32],
    sizes: int,
    dtypes: int,
    max_tensors: int,
    max_dims: int,
) -> tuple[bool, np.uint64, np.uint64]:
    """Hash (sizes, dtypes) as the checked path renders them: lists of lists of ints,
    a list of strings (tuples read as lists). False when the shape is anything else."""
    h1, h2 = _FNV_OFFSET, np.uint64(0)
    k = kind[sizes]
    if k != _LIST and k != _TUPLE:
        return False, h1, h2
    tensors = 0
    e = val[sizes]
    while e != -1:
        t = enode[e]
        tensors += 1
        if tensors > max_tensors or (kind[t] != _LIST and kind[t] != _TUPLE):
            return False, h1, h2
        h1, h2 = _mix(h1, h2, np.uint64(0xA1A1))  # tensor start
        dims = 0
        d = val[t]
        while d != -1:
            x = enode[d]
            dims += 1
            if dims > max_dims or kind[x] != _INT:
                return False, h1, h2
            h1, h2 = _mix(h1, h2, np.uint64(val[x]))
            d = enext[d]
        h1, h2 = _mix(h1, h2, np.uint64(0xB2B2))  # tensor end
        e = enext[e]
    h1, h2 = _mix(h1, h2, np.uint64(0xC3C3))  # sizes end
    k = kind[dtypes]
    if k != _LIST and k != _TUPLE:
        return False, h1, h2
    count = 0
    e = val[dtypes]
    while e != -1:
        s = enode[e]
        count += 1
        if count > max_tensors or kind[s] != _STR:
            return False, h1, h2
        h1, h2 = _mix(h1, h2, np.uint64(aux[s]) + np.uint64(0xD4D4))
        for i in range(val[s], val[s] + aux[s]):
            h1, h2 = _mix(h1, h2, np.uint64(data[i]))
        e = enext[e]
    return True, h1, h2


@_compiled()
def _columns(
    data: npt.NDArray[np.uint8],
    kind: npt.NDArray[np.int8],
    val: npt.NDArray[np.int64],
    aux: npt.NDArray[np.int32],
    enode: npt.NDArray[np.int32],
    enext: npt.NDArray[np.int32],
    nodes_used: int,
    entries: int,
    keys: npt.NDArray[np.uint8],
    koff: npt.NDArray[np.int64],
    max_tensors: int,
    max_dims: int,
) -> tuple[
    int,
    npt.NDArray[np.int64],
    npt.NDArray[np.bool_],
    npt.NDArray[np.uint64],
    npt.NDArray[np.float64],
]:
    """Entry fields as columns: (status, ints[n, 16], nulls[n, 6], sig hashes[n, 4], durations).

    ints, by column: record_id, pg name node, pg desc node, seq, p2p seq, profiling name
    node, state node, t_created, t_started, t_completed, is_p2p (-1 absent or None),
    frames node (-1 none), input sizes node, output sizes node, input dtypes node,
    output dtypes node. A string's value is its node, decoded later once per node.
    nulls: seq, p2p seq, t_created, t_started, t_completed, duration.
    """
    count = 0
    e = val[entries]
    while e != -1:
        count += 1
        e = enext[e]
    ints = np.zeros((count, 16), np.int64)
    nulls = np.zeros((count, 6), np.bool_)
    sigs = np.zeros((count, 4), np.uint64)
    dur = np.zeros(count, np.float64)
    as_int = np.zeros(1, np.int64)
    as_float = as_int.view(np.float64)
    field_of = np.full(nodes_used, -2, np.int8)  # key node -> field (-1: not one of ours)
    node_of = np.empty(16, np.int64)
    row = 0
    e = val[entries]
    while e != -1:
        entry = enode[e]
        e = enext[e]
        if kind[entry] != _DICT:
            return _DECLINE, ints, nulls, sigs, dur
        for f in range(16):
            node_of[f] = -1
        item = val[entry]
        while item != -1:
            key = enode[item]
            # A dict's items are usually consecutive edges (one SETITEMS): testing for
            # that turns a chain of dependent loads into a predictable branch.
            value_edge = item + 1
            if enext[item] != value_edge:
                value_edge = enext[item]
                if value_edge == -1:
                    return _DECLINE, ints, nulls, sigs, dur
            if kind[key] == _STR:
                f = field_of[key]
                if f == -2:
                    f = _key_field(data, val[key], aux[key], keys, koff)
                    field_of[key] = f
                if f >= 0:
                    node_of[f] = enode[value_edge]  # the last one wins, as in a dict
            following = enext[value_edge]
            item = value_edge + 1
            if following != item:
                item = following
        for f in range(_N_REQUIRED):
            if node_of[f] == -1:
                return _DECLINE, ints, nulls, sigs, dur

        rid = node_of[0]
        if kind[rid] != _INT:
            return _DECLINE, ints, nulls, sigs, dur
        ints[row, 0] = val[rid]
        pg = node_of[1]
        if kind[pg] != _TUPLE and kind[pg] != _LIST:
            return _DECLINE, ints, nulls, sigs, dur
        first = val[pg]
        if first == -1 or enext[first] == -1 or enext[enext[first]] != -1:
            return _DECLINE, ints, nulls, sigs, dur
        pg_name, pg_desc = enode[first], enode[enext[first]]
        if kind[pg_name] != _STR or kind[pg_desc] != _STR:
            return _DECLINE, ints, nulls, sigs, dur
        ints[row, 1] = pg_name
        ints[row, 2] = pg_desc
        for j in range(5):
            col, f, nul = _INT_FIELDS[j, 0], _INT_FIELDS[j, 1], _INT_FIELDS[j, 2]
            k = kind[node_of[f]]
            if k == _NONE:
                nulls[row, nul] = True
            elif k == _INT:
                ints[row, col] = val[node_of[f]]
            else:
                return _DECLINE, ints, nulls, sigs, dur
        for col, f in ((5, 4), (6, 9)):  # profiling_name, state
            if kind[node_of[f]] != _STR:
                return _DECLINE, ints, nulls, sigs, dur
            ints[row, col] = node_of[f]
        p2p = node_of[13]
        ints[row, 10] = -1
        if p2p != -1:
            if kind[p2p] == _TRUE:
                ints[row, 10] = 1
            elif kind[p2p] == _FALSE:
                ints[row, 10] = 0
            elif kind[p2p] != _NONE:
                return _DECLINE, ints, nulls, sigs, dur
        d = node_of[14]
        nulls[row, 5] = True
        if d != -1:
            if kind[d] == _FLOAT:
                as_int[0] = val[d]
                dur[row] = as_float[0]
                nulls[row, 5] = False
            elif kind[d] == _INT:
                dur[row] = np.float64(val[d])
                nulls[row, 5] = False
            elif kind[d] != _NONE:
                return _DECLINE, ints, nulls, sigs, dur
        ints[row, 11] = node_of[15]
        for which in range(2):
            sizes, dtypes = node_of[5 + which], node_of[7 + which]
            ok, h1, h2 = _sig(
                data, kind, val, aux, enode, enext, sizes, dtypes, max_tensors, max_dims
            )
            if not ok:
                return _DECLINE, ints, nulls, sigs, dur
            sigs[row, 2 * which] = h1
            sigs[row, 2 * which + 1] = h2
            ints[row, 12 + which] = sizes
            ints[row, 14 + which] = dtypes
        row += 1
    return _OK, ints, nulls, sigs, dur


@_compiled()
def _distinct_strings(
    data: npt.NDArray[np.uint8],
    val: npt.NDArray[np.int64],
    aux: npt.NDArray[np.int32],
    strings: npt.NDArray[np.int64],
) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.int64]]:
    """Dictionary-encode a column of string nodes by text: (codes, one node per code).

    PyTorch's pickler writes a repeated string once and refers back to it, but other
    writers repeat the text; then 2,000 entries are 2,000 nodes for a dozen names, and
    decoding each in Python would cost more than all the rest. An open-addressing table
    on the bytes makes equal texts one code.
    """
    size = 16
    while size < 2 * strings.shape[0]:
        size *= 2
    mask = size - 1
    table = np.full(size, -1, np.int64)  # slot -> code
    firsts = np.empty(strings.shape[0], np.int64)  # code -> its first node
    codes = np.empty(strings.shape[0], np.uint32)
    distinct = 0
    # PyTorch's rows mostly repeat one string node: remember the last code per node slot
    recent_node = np.full(64, -1, np.int64)
    recent_code = np.empty(64, np.uint32)
    # Other writers repeat a few texts (Python's pickler writes each profiling name built
    # per entry anew): the last code of the same length and last byte is tried first, by
    # its bytes, before hashing (a fifth of the time for such a column).
    recent_text = np.full(256, -1, np.int64)
    for i in range(strings.shape[0]):
        node = strings[i]
        if recent_node[node & 63] == node:
            codes[i] = recent_code[node & 63]
            continue
        start = val[node]
        length = aux[node]
        text_slot = (length * 31 + (data[start + length - 1] if length > 0 else 0)) & 255
        code = recent_text[text_slot]
        if code != -1:
            other = firsts[code]
            if aux[other] == length and _same_bytes(data, val[other], start, length):
                codes[i] = code
                recent_node[node & 63] = node
                recent_code[node & 63] = code
                continue
        h = _FNV_OFFSET
        for j in range(start, start + length):
            h = (h ^ np.uint64(data[j])) * _FNV_PRIME
        slot = np.int64(h & np.uint64(mask))
        while True:
            code = table[slot]
            if code == -1:
                table[slot] = distinct
                firsts[distinct] = node
                codes[i] = distinct
                distinct += 1
                break
            other = firsts[code]
            if other == node or (
                aux[other] == length and _same_bytes(data, val[other], start, length)
            ):
                codes[i] = code
                break
            slot = (slot + 1) & mask
        recent_node[node & 63] = node
        recent_code[node & 63] = codes[i]
        recent_text[text_slot] = codes[i]
    return codes, firsts[:distinct].copy()


@_compiled(inline=True)
def _same_bytes(data: npt.NDArray[np.uint8], a: int, b: int, length: int) -> bool:
    for k in range(length):  # noqa: SIM110 - numba compiles loops, not generators
        if data[a + k] != data[b + k]:
            return False
    return True


@_compiled()
def _distinct_pairs(
    keys: npt.NDArray[np.uint64],
) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.int64]]:
    """Dictionary-encode rows of two hashes: (codes, first row per code)."""
    n = keys.shape[0]
    size = 16
    while size < 2 * n:
        size *= 2
    mask = size - 1
    table = np.full(size, -1, np.int64)
    firsts = np.empty(n, np.int64)
    codes = np.empty(n, np.uint32)
    distinct = 0
    for i in range(n):
        slot = np.int64((keys[i, 0] ^ (keys[i, 1] >> np.uint64(7))) & np.uint64(mask))
        while True:
            code = table[slot]
            if code == -1:
                table[slot] = distinct
                firsts[distinct] = i
                codes[i] = distinct
                distinct += 1
                break
            row = firsts[code]
            if keys[row, 0] == keys[i, 0] and keys[row, 1] == keys[i, 1]:
                codes[i] = code
                break
            slot = (slot + 1) & mask
    return codes, firsts[:distinct].copy()


@_compiled()
def _stacks(
    kind: npt.NDArray[np.int8],
    val: npt.NDArray[np.int64],
    enode: npt.NDArray[np.int32],
    enext: npt.NDArray[np.int32],
    frames: npt.NDArray[np.int64],
    max_frames: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Each entry's stack as frame nodes: (frame count per entry, all frame nodes).

    A count of -1: no stack (absent or None); -2: not a list of at most `max_frames`.
    """
    counts = np.zeros(frames.shape[0], np.int64)
    flat = np.empty(frames.shape[0] * max_frames, np.int64)
    used = 0
    for i in range(frames.shape[0]):
        node = frames[i]
        if node == -1 or kind[node] == _NONE:
            counts[i] = -1
            continue
        if kind[node] != _LIST:
            counts[i] = -2
            continue
        e = val[node]
        while e != -1:
            if counts[i] == max_frames:
                counts[i] = -2
                break
            flat[used] = enode[e]
            used += 1
            counts[i] += 1
            e = enext[e]
    return counts, flat[:used].copy()


_FRAME_KEYS = (b"name", b"filename", b"line")
_FRAME_KEY_BYTES = np.frombuffer(b"".join(_FRAME_KEYS), dtype=np.uint8)
_FRAME_KEY_OFFSETS = np.cumsum([0, *map(len, _FRAME_KEYS)]).astype(np.int64)


@_compiled()
def _frame_fields(
    data: npt.NDArray[np.uint8],
    kind: npt.NDArray[np.int8],
    val: npt.NDArray[np.int64],
    aux: npt.NDArray[np.int32],
    enode: npt.NDArray[np.int32],
    enext: npt.NDArray[np.int32],
    frames: npt.NDArray[np.int64],
    keys: npt.NDArray[np.uint8],
    koff: npt.NDArray[np.int64],
) -> npt.NDArray[np.int64]:
    """(name node, filename node, line) per frame dict; a row of -1 where a frame is not
    a dict with a str name, a str filename and an int line (the checked path says why)."""
    out = np.full((frames.shape[0], 3), -1, np.int64)
    for i in range(frames.shape[0]):
        frame = frames[i]
        if kind[frame] != _DICT:
            continue
        found = np.full(3, -1, np.int64)
        item = val[frame]
        while item != -1:
            key = enode[item]
            value_edge = enext[item]
            if value_edge == -1:
                break
            if kind[key] == _STR:
                f = _key_field(data, val[key], aux[key], keys, koff)
                if f >= 0:
                    found[f] = enode[value_edge]
            item = enext[value_edge]
        if found[0] == -1 or found[1] == -1 or found[2] == -1:
            continue
        if kind[found[0]] != _STR or kind[found[1]] != _STR or kind[found[2]] != _INT:
            continue
        out[i, 0] = found[0]
        out[i, 1] = found[1]
        out[i, 2] = val[found[2]]
    return out


@_compiled()
def _stack_hashes(
    data: npt.NDArray[np.uint8],
    kind: npt.NDArray[np.int8],
    val: npt.NDArray[np.int64],
    aux: npt.NDArray[np.int32],
    enode: npt.NDArray[np.int32],
    enext: npt.NDArray[np.int32],
    frames: npt.NDArray[np.int64],
    max_frames: int,
    keys: npt.NDArray[np.uint8],
    koff: npt.NDArray[np.int64],
) -> tuple[bool, npt.NDArray[np.bool_], npt.NDArray[np.uint64]]:
    """A 128-bit hash per entry's stack of the text its frames render to, in one pass
    (`_stacks`, `_frame_fields` and the hashing were three calls and a sort, a tenth of a
    dump's parse): (ok, whether each entry has a stack, the hashes). Not ok where `stacks`
    or `frame_lines` would refuse a stack: not a list of at most `max_frames` frames, or
    a frame that is not a dict with a str name, a str filename and an int line."""
    m = frames.shape[0]
    has = np.zeros(m, np.bool_)
    out = np.zeros((m, 2), np.uint64)
    total = 0
    for i in range(m):
        node = frames[i]
        if node == -1 or kind[node] == _NONE:
            continue
        if kind[node] != _LIST:
            return False, has, out
        count = 0
        e = val[node]
        while e != -1:
            count += 1
            if count > max_frames:
                return False, has, out
            e = enext[e]
        total += count
    # Each distinct frame hashed once (PyTorch shares a frame dict among the entries that
    # have it): an open-addressing table from frame node to its hash.
    size = 16
    while size < 2 * total:
        size *= 2
    mask = size - 1
    slot_node = np.full(size, -1, np.int64)
    slot_hash = np.empty((size, 2), np.uint64)
    for i in range(m):
        node = frames[i]
        if node == -1 or kind[node] == _NONE:
            continue
        has[i] = True
        h1, h2 = _FNV_OFFSET, _FNV_OFFSET
        e = val[node]
        while e != -1:
            frame = enode[e]
            slot = frame & mask
            while slot_node[slot] != -1 and slot_node[slot] != frame:
                slot = (slot + 1) & mask
            if slot_node[slot] == -1:
                if kind[frame] != _DICT:
                    return False, has, out
                name, filename, line = -1, -1, -1
                item = val[frame]
                while item != -1:  # as _frame_fields reads a frame: the last key wins
                    key = enode[item]
                    value_edge = enext[item]
                    if value_edge == -1:
                        break
                    if kind[key] == _STR:
                        f = _key_field(data, val[key], aux[key], keys, koff)
                        if f == 0:
                            name = enode[value_edge]
                        elif f == 1:
                            filename = enode[value_edge]
                        elif f == 2:
                            line = enode[value_edge]
                    item = enext[value_edge]
                if name == -1 or filename == -1 or line == -1:
                    return False, has, out
                if kind[name] != _STR or kind[filename] != _STR or kind[line] != _INT:
                    return False, has, out
                f1, f2 = _FNV_OFFSET, _FNV_OFFSET
                for text in (name, filename):  # their lengths, then their bytes
                    f1, f2 = _mix(f1, f2, np.uint64(aux[text]))
                    for j in range(val[text], val[text] + aux[text]):
                        f1, f2 = _mix(f1, f2, np.uint64(data[j]))
                slot_hash[slot, 0], slot_hash[slot, 1] = _mix(f1, f2, np.uint64(val[line]))
                slot_node[slot] = frame
            h1, h2 = _mix(h1, h2, slot_hash[slot, 0])
            h1, h2 = _mix(h1, h2, slot_hash[slot, 1])
            e = enext[e]
        out[i, 0], out[i, 1] = h1, h2
    return True, has, out


class Scratch:
    """The machine's working arrays, kept from one dump to the next.

    They take ~30 bytes per input byte; allocating them afresh for each of thousands of
    files costs more in page faults (kernel time) than the scan itself. One Scratch
    serves one Nodes at a time: keep one per thread.
    """

    def __init__(self) -> None:
        self.size = 0
        self.ensure(1)

    def ensure(self, size: int) -> None:
        if size <= self.size:
            return
        self.size = max(size, self.size + self.size // 2)
        self.kind = np.empty(self.size, np.int8)
        self.val = np.empty(self.size, np.int64)
        self.aux = np.empty(self.size, np.int32)
        self.enode = np.empty(self.size, np.int32)
        self.enext = np.empty(self.size, np.int32)
        self.stack = np.empty(self.size, np.int32)
        self.marks = np.empty(self.size, np.int32)
        self.memo = np.empty(self.size, np.int32)
        self.memo_gen = np.zeros(self.size, np.int32)
        self.generation = 0

    def next_generation(self) -> int:
        """A fresh stamp for the memo; wrapping round clears the stamps once."""
        self.generation += 1
        if self.generation >= 2**31 - 1:
            self.memo_gen[:] = 0
            self.generation = 1
        return self.generation


class Nodes:
    """The machine's result, and a bounded walk from a node back to Python values."""

    # A walk stops past this many values: a shared-reference "memo bomb" expands
    # exponentially when walked, though its pickle is tiny.
    WALK_BUDGET = 100_000

    def __init__(self, data: bytes | memoryview, scratch: Scratch | None = None) -> None:
        """`scratch`: arrays to reuse, which this Nodes owns until the next one takes them."""
        self.data = data
        self.raw = np.frombuffer(data, dtype=np.uint8)
        self._scratch = scratch or Scratch()
        self._scratch.ensure(len(data) + 1)
        self.kind = self._scratch.kind
        self.val = self._scratch.val
        self.aux = self._scratch.aux
        self.enode = self._scratch.enode
        self.enext = self._scratch.enext
        self.root = -1
        self.used = 0
        self._budget = 0
        self._strings: dict[int, str] = {}

    def run(self) -> bool:
        work = self._scratch
        status, root, used, _edges = _run(
            self.raw,
            self.kind,
            self.val,
            self.aux,
            self.enode,
            self.enext,
            work.stack,
            work.marks,
            work.memo,
            work.memo_gen,
            work.next_generation(),
        )
        self.root, self.used = int(root), int(used)
        return bool(
            status == _OK and _strings_valid(self.raw, self.kind, self.val, self.aux, self.used)
        )

    def items(self, node: int) -> list[int]:
        out = []
        e = int(self.val[node])
        while e != -1:
            out.append(int(self.enode[e]))
            e = int(self.enext[e])
        return out

    def string(self, node: int) -> str:
        """Decoded as pickle does (UTF-8, lone surrogates allowed); UnicodeError if bad."""
        text = self._strings.get(node)
        if text is None:
            start = int(self.val[node])
            end = start + int(self.aux[node])
            text = str(self.data[start:end], "utf-8", "surrogatepass")
            self._strings[node] = text
        return text

    def strings(self, nodes: npt.NDArray[np.int64]) -> tuple[list[str], npt.NDArray[np.uint32]]:
        """The distinct strings of a column of string nodes and each row's code for them."""
        codes, firsts = _distinct_strings(self.raw, self.val, self.aux, np.ascontiguousarray(nodes))
        return [self.string(n) for n in firsts.tolist()], codes

    def stacks(
        self, frames: npt.NDArray[np.int64], max_frames: int
    ) -> list[list[int] | None] | None:
        """Each entry's frame nodes (None: no stack); None if one is not a short list."""
        counts, flat = _stacks(
            self.kind, self.val, self.enode, self.enext, np.ascontiguousarray(frames), max_frames
        )
        if (counts == -2).any():
            return None
        out: list[list[int] | None] = []
        nodes = flat.tolist()
        at = 0
        for count in counts.tolist():
            if count == -1:
                out.append(None)
            else:
                out.append(nodes[at : at + count])
                at += count
        return out

    def stack_keys(
        self, frames: npt.NDArray[np.int64], max_frames: int
    ) -> list[tuple[int, int] | None] | None:
        """A key per entry for the text of its stack (None: no stack), equal keys for equal
        texts; None where `stacks` or `frame_lines` would refuse one."""
        ok, has, hashes = _stack_hashes(
            self.raw,
            self.kind,
            self.val,
            self.aux,
            self.enode,
            self.enext,
            np.ascontiguousarray(frames),
            max_frames,
            _FRAME_KEY_BYTES,
            _FRAME_KEY_OFFSETS,
        )
        if not ok:
            return None
        return [
            (h1, h2) if present else None
            for present, (h1, h2) in zip(has.tolist(), hashes.tolist(), strict=True)
        ]

    def frame_lines(self, frames: list[int]) -> list[str] | None:
        """'name at file:line' per frame dict node, or None if one is not a proper frame."""
        fields = _frame_fields(
            self.raw,
            self.kind,
            self.val,
            self.aux,
            self.enode,
            self.enext,
            np.array(frames, np.int64),
            _FRAME_KEY_BYTES,
            _FRAME_KEY_OFFSETS,
        )
        if (fields[:, 0] == -1).any():
            return None
        string = self.string
        return [f"{string(fn)} at {string(file)}:{line}" for fn, file, line in fields.tolist()]

    def value(self, node: int, depth: int = 0) -> Any:
        """The Python value of a node; OverflowError past the walk budget or depth."""
        self._budget += 1
        if self._budget > self.WALK_BUDGET or depth > 100:
            raise OverflowError("too many values to walk")
        k = int(self.kind[node])
        if k == _STR:
            return self.string(node)
        if k == _INT:
            return int(self.val[node])
        if k == _DICT:
            flat = self.items(node)
            return {
                self.value(flat[i], depth + 1): self.value(flat[i + 1], depth + 1)
                for i in range(0, len(flat), 2)
            }
        if k == _LIST:
            return [self.value(c, depth + 1) for c in self.items(node)]
        if k == _TUPLE:
            return tuple(self.value(c, depth + 1) for c in self.items(node))
        if k == _FLOAT:
            return float(np.array([self.val[node]], np.int64).view(np.float64)[0])
        if k == _BYTES:
            start = int(self.val[node])
            return bytes(self.data[start : start + int(self.aux[node])])
        return {_NONE: None, _TRUE: True, _FALSE: False}[k]

    def top_level(self, wanted: frozenset[str]) -> tuple[dict[str, Any], int] | None:
        """The `wanted` keys of the dump's dict (as values), and the entries' list node.

        Other keys (pg_status, comm_lib_version, ...) are not walked: the parser never
        reads them, and the machine has already checked that they are plain data.
        """
        if self.kind[self.root] != _DICT:
            return None
        flat = self.items(self.root)
        doc: dict[str, Any] = {}
        entries = -1
        for i in range(0, len(flat), 2):
            if self.kind[flat[i]] != _STR:
                continue
            key = self.string(flat[i])
            if key == "entries":
                entries = flat[i + 1]
            elif key in wanted:
                doc[key] = self.value(flat[i + 1])
        if entries == -1 or self.kind[entries] != _LIST:
            return None
        return doc, entries

    def top_level_node(self, key: str) -> int | None:
        """The node of `key` in the dump's dict (the last of that name, as a dict keeps
        it), or None; unlike `top_level`, nothing under it is walked."""
        if self.kind[self.root] != _DICT:
            return None
        flat = self.items(self.root)
        found = None
        for i in range(0, len(flat), 2):
            if self.kind[flat[i]] == _STR and self.string(flat[i]) == key:
                found = flat[i + 1]
        return found

    def entry_columns(self, entries: int, max_tensors: int, max_dims: int) -> EntryColumns | None:
        status, ints, nulls, sigs, dur = _columns(
            self.raw,
            self.kind,
            self.val,
            self.aux,
            self.enode,
            self.enext,
            self.used,
            entries,
            _KEY_BYTES,
            _KEY_OFFSETS,
            max_tensors,
            max_dims,
        )
        return EntryColumns(ints, nulls, sigs, dur) if status == _OK else None


class EntryColumns(NamedTuple):
    ints: npt.NDArray[np.int64]
    nulls: npt.NDArray[np.bool_]
    sigs: npt.NDArray[np.uint64]
    durations: npt.NDArray[np.float64]

    def signature_rows(self, which: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.uint32]]:
        """(first row of each distinct signature, each row's code): input 0, output 1."""
        codes, firsts = _distinct_pairs(
            np.ascontiguousarray(self.sigs[:, 2 * which : 2 * which + 2])
        )
        return firsts, codes


def parse_pickle(
    data: bytes | memoryview,
    max_tensors: int,
    max_dims: int,
    wanted: frozenset[str],
    scratch: Scratch | None = None,
) -> tuple[Nodes, dict[str, Any], EntryColumns] | None:
    """Run the fast path over one pickle: None where the checked path must decide.

    `max_tensors` and `max_dims` bound an entry's sizes lists, as the checked path does;
    `wanted` names the top-level keys to return as values (besides the entries).
    """
    nodes = Nodes(data, scratch)
    if not nodes.run():
        return None
    try:
        top = nodes.top_level(wanted)
    except (OverflowError, UnicodeError, TypeError):  # TypeError: an unhashable key
        return None
    if top is None:
        return None
    doc, entries = top
    columns = nodes.entry_columns(entries, max_tensors, max_dims)
    return None if columns is None else (nodes, doc, columns)
