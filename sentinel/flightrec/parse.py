"""Parse PyTorch flight-recorder dumps (pickle or JSON, format 2.x) into columns."""

from __future__ import annotations

import dataclasses
import json
import marshal
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from functools import lru_cache, partial
from itertools import chain, repeat
from operator import itemgetter, methodcaller
from pathlib import Path
from typing import Any, TypeVar, cast

import numpy as np
import numpy.typing as npt
import polars as pl

from sentinel.flightrec import entryscan, grouping, jit, pool_settings, scan
from sentinel.flightrec.dumpfiles import rank_from_name
from sentinel.flightrec.grouping import collective_spread, per_group_and_rank
from sentinel.flightrec.models import (
    ENTRY_SCHEMA,
    RANKED_SCHEMA,
    STATE_CODES,
    DumpSet,
    FrParseError,
    GroupConfig,
    ParsedDump,
    SpillDir,
    no_cycle_collection,
)
from sentinel.flightrec.pool_settings import pooled
from sentinel.flightrec.scan import _DICT, _STR
from sentinel.flightrec.tables import TABLE_INTS, Scanned, assemble, split_tables
from sentinel.flightrec.unpickler import MAX_PICKLE_BYTES, load_plain

MAX_JSON_BYTES = 256 * 1024 * 1024
# Pickles up to this size take the compiled path (its arrays cost ~25 bytes per input
# byte); a 2,000-entry dump is well under 1 MB, and larger ones take the checked path.
FAST_MAX_BYTES = 16 * 1024 * 1024
# PyTorch keeps 2,000 entries by default (TORCH_FR_BUFFER_SIZE); allow generous headroom.
MAX_ENTRIES = 200_000
# Bounds on what one entry may carry, so a hostile dump cannot make us expand a shared
# list into billions of elements (a "memo bomb"): tensors per entry, dims per tensor.
MAX_TENSORS_PER_ENTRY = 4096
MAX_DIMS_PER_TENSOR = 64
# Stacks kept per rank: the verdict quotes the stack of one entry near the end.
FRAMES_KEPT = 64
MAX_FRAMES_PER_ENTRY = 512

# Fields every 2.x entry carries, in the order the columns are built.
_REQUIRED = scan.REQUIRED_FIELDS
_get_required = itemgetter(*_REQUIRED)

_P2P_OPS = frozenset({"send", "recv"})


def parse_dump(data: bytes, name: str) -> ParsedDump:
    """Parse one dump; pickle or JSON is told by the content, never by the file name."""
    with no_cycle_collection():
        return _parse(data, name)


def _parse(data: bytes, name: str) -> ParsedDump:
    head = data[:1]
    if head == b"\x80":
        if len(data) <= FAST_MAX_BYTES:
            fast = _parse_fast(data, name)
            if fast is not None:
                return fast
        doc = load_plain(data, name)
    elif data.lstrip()[:1] == b"{":
        doc = _load_json(data, name)
    elif not data:
        raise FrParseError(f"{name}: empty file")
    else:
        raise FrParseError(f"{name}: neither a pickle (protocol 2+) nor a JSON object")
    return _to_parsed(doc, name)


# The top-level keys the parser reads as values besides `entries` (and `pg_config`, which
# `_fast_pg_config` reads from its nodes).
_TOP_LEVEL_READ = frozenset({"version"})
# The fast path's working arrays, reused across dumps (the service parses in threads).
_per_thread = threading.local()


def _parse_fast(data: bytes, name: str) -> ParsedDump | None:
    scanned = _scan_fast(data, name)
    return None if scanned is None else _with_entries(scanned.meta, assemble([scanned]))


def _scan_fast(data: bytes | memoryview, name: str) -> Scanned | None:
    """The compiled path (`scan`): the same dump as the checked path reads, or None.

    None hands the file to the restricted unpickler and `_to_parsed`, which give the
    exact error for anything the fast path declined; so every check below only needs to
    recognise a well-formed dump, never to word a refusal.
    """
    if not jit.AVAILABLE:  # numba absent (no `fast` extra): the scan would run as Python
        return None
    scratch = getattr(_per_thread, "scratch", None)
    if scratch is None:
        scratch = _per_thread.scratch = entryscan.EntryScratch()
    try:
        decoded = _decoded(data, name, scratch)
    except (UnicodeError, OverflowError, FrParseError, TypeError):
        return None
    if decoded is None:
        return None
    nodes, doc, cols, pg_config = decoded
    version = doc.get("version")
    n = len(cols.ints)
    if not isinstance(version, str) or not version.startswith("2.") or not 0 < n <= MAX_ENTRIES:
        return None
    ints, nulls = cols.ints, cols.nulls
    try:
        pg = nodes.strings(ints[:, 1])
        pg_desc = nodes.strings(ints[:, 2])
        pnames, pname_idx = nodes.strings(ints[:, 5])
        states, state_idx = nodes.strings(ints[:, 6])
        frames = _fast_tail_frames(nodes, ints[-FRAMES_KEPT:, [0, 11]], name)
        if frames is None:
            return None
        in_sig = _fast_signatures(nodes, cols, 0)
        out_sig = _fast_signatures(nodes, cols, 1)
    except (UnicodeError, OverflowError, FrParseError):
        return None
    if not set(states) <= STATE_CODES.keys():
        return None
    ops, peers = zip(*map(_op_and_peer, pnames), strict=True)
    # Older 2.x dumps lack is_p2p: send and recv are the only p2p operations.
    op_is_p2p = np.array([op in _P2P_OPS for op in ops], np.bool_)[pname_idx]
    # JSON dumps write a missing timestamp as 0, pickles as None: one spelling, null.
    nulls[:, 3] |= ints[:, 8] == 0
    nulls[:, 4] |= ints[:, 9] == 0
    meta = ParsedDump(
        name=name,
        rank=rank_from_name(name),
        version=version,
        backend=pnames[pname_idx[0]].partition(":")[0],
        pg_config=pg_config,
        entries=_NO_ENTRIES,
        frames=frames,
    )
    return Scanned(
        meta=meta,
        # only what the tables read, by column, copied out of the scan's buffers
        ints=np.ascontiguousarray(ints.T[TABLE_INTS]),
        nulls=np.ascontiguousarray(nulls.T),
        durations=cols.durations.copy(),
        is_p2p=np.where(ints[:, 10] == -1, op_is_p2p, ints[:, 10] == 1),
        state=np.array([STATE_CODES[s] for s in states], np.int8)[state_idx],
        pg=pg,
        pg_desc=pg_desc,
        op=(list(ops), pname_idx),
        peer=list(peers),
        in_sig=in_sig,
        out_sig=out_sig,
    )


_NO_ENTRIES = pl.DataFrame(schema=ENTRY_SCHEMA)


def _with_entries(meta: ParsedDump, entries: pl.DataFrame) -> ParsedDump:
    return dataclasses.replace(meta, entries=entries)


# Rendered signatures by the hash of their (sizes, dtypes) (the decoder's, which also
# dictionary-encodes them within a dump): every rank of a job calls the same few shapes, so a
# worker renders each once, not once per dump (~0.08 of a dump's ~1.8 ms).
_signature_texts: dict[tuple[int, int], str] = {}


def _fast_signatures(
    nodes: scan.Nodes, cols: scan.EntryColumns, which: int
) -> tuple[list[str], npt.NDArray[np.uint32]]:
    """Render each distinct (sizes, dtypes) once, exactly as `_signatures` does."""
    rows, codes = cols.signature_rows(which)
    known = _signature_texts
    texts = []
    for (h1, h2), (sizes, dtypes) in zip(
        cols.sigs[rows, 2 * which : 2 * which + 2].tolist(),
        cols.ints[rows][:, [12 + which, 14 + which]].tolist(),
        strict=True,
    ):
        text = known.get((h1, h2))
        if text is None:
            text = _signature_text(nodes.value(sizes), nodes.value(dtypes))
            if len(known) >= 65536:
                known.clear()
            known[(h1, h2)] = text
        texts.append(text)
    return texts, codes


def _decoded(
    data: bytes | memoryview, name: str, scratch: entryscan.EntryScratch
) -> tuple[scan.Nodes, dict[str, Any], scan.EntryColumns, dict[str, GroupConfig]] | None:
    """The dump decoded by the compiled machines, with its pg_config; None where neither
    takes it. Raises what reading pg_config from the nodes raises (TypeError: a key
    Python cannot hash), which the checked path then words."""
    # The decoder specialised to the entry layout first; the generic one for the rest.
    for decode in (entryscan.parse_pickle, scan.parse_pickle):
        scanned = decode(data, MAX_TENSORS_PER_ENTRY, MAX_DIMS_PER_TENSOR, _TOP_LEVEL_READ, scratch)
        if scanned is None:
            continue
        nodes, doc, cols = scanned
        try:
            return nodes, doc, cols, _fast_pg_config(nodes, name)
        except KeyError:  # pg_config holds an entry the specialised decoder took apart
            continue
    return None


def _fast_pg_config(nodes: scan.Nodes, name: str) -> dict[str, GroupConfig]:
    """`_pg_config` of the dump's pg_config, read from its nodes where it has the usual
    shape (what PyTorch writes: a dict of group dicts with string keys, a string desc and
    a string rank list), else from its value as the checked path reads it.

    Walking it into Python values cost ~0.1 ms a dump: every rank's dump repeats the
    default group's rank list (100 KB at 16k ranks), decoded and compared each time."""
    node = nodes.top_level_node("pg_config")
    if node is None:
        return {}
    usual = _usual_pg_config(nodes, node)
    return _pg_config(nodes.value(node), name) if usual is None else usual


def _usual_pg_config(nodes: scan.Nodes, node: int) -> dict[str, GroupConfig] | None:
    """The groups of a pg_config node of the usual shape, exactly as `_pg_config` reads
    them; None for any other shape (duplicate keys, a key that is not a non-empty string,
    a group that is not a dict, a desc or rank list that is not a string, ...)."""
    kind = nodes.kind
    if kind[node] != _DICT:
        return None
    groups: dict[str, GroupConfig] = {}
    flat = nodes.items(node)
    for i in range(0, len(flat), 2):
        if kind[flat[i]] != _STR or kind[flat[i + 1]] != _DICT:
            return None
        key = nodes.string(flat[i])
        fields = nodes.items(flat[i + 1])
        if not key or key in groups or len(fields) > 16:
            return None
        cfg: dict[str, int] = {}
        for j in range(0, len(fields), 2):
            if kind[fields[j]] != _STR:
                return None
            cfg.setdefault(nodes.string(fields[j]), fields[j + 1])
        if len(cfg) * 2 != len(fields):
            return None
        desc, ranks = cfg.get("desc"), cfg.get("ranks")
        if ranks is None or kind[ranks] != _STR or (desc is not None and kind[desc] != _STR):
            return None
        text = "" if desc is None else nodes.string(desc)
        groups[key] = GroupConfig(name=key, desc=text, ranks=_ranks_node(nodes, ranks))
    return groups


# The last long rank list of each length and its reading: every rank's dump repeats the
# default group's list (100 KB at 16k ranks), and comparing it with the last one costs a
# tenth of hashing it for the lru_cache.
_LONG_LIST = 1024
_Raw = TypeVar("_Raw", str, bytes)
_LastOfLength = dict[int, tuple[_Raw, tuple[int, ...] | None]]
_last_ranks_text: _LastOfLength[str] = {}  # as text (see _ranks_text)


def _remember(
    last: _LastOfLength[_Raw], raw: _Raw, ranks: tuple[int, ...] | None
) -> tuple[int, ...] | None:
    """Keep `raw`'s reading as the last of its length (a few dozen lengths at most)."""
    if len(last) >= 64:
        last.clear()
    last[len(raw)] = (raw, ranks)
    return ranks


# The last long rank list of each length, as bytes, and its reading (see _ranks_text).
_last_ranks_bytes: _LastOfLength[bytes] = {}


def _ranks_node(nodes: scan.Nodes, node: int) -> tuple[int, ...] | None:
    """`_ranks_text` of a string node; a long list equal byte for byte to the last one of
    its length is not decoded again."""
    length = int(nodes.aux[node])
    if length < _LONG_LIST:
        return _ranks_text(nodes.string(node))
    start = int(nodes.val[node])
    raw = bytes(nodes.data[start : start + length])  # (comparing a memoryview is 25x slower)
    last = _last_ranks_bytes.get(length)
    if last is not None and last[0] == raw:
        return last[1]
    return _remember(_last_ranks_bytes, raw, _ranks_text(nodes.string(node)))


def _load_json(data: bytes, name: str) -> object:
    if len(data) > MAX_JSON_BYTES:
        raise FrParseError(f"{name}: {len(data)} bytes is over the {MAX_JSON_BYTES}-byte limit")
    try:
        return json.loads(data)
    except RecursionError:
        raise FrParseError(f"{name}: nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise FrParseError(f"{name}: not valid JSON: {exc}") from None


def _to_parsed(doc: object, name: str) -> ParsedDump:
    if not isinstance(doc, dict):
        raise FrParseError(f"{name}: the dump is a {type(doc).__name__}, expected a dict")
    version = doc.get("version")
    if not isinstance(version, str) or not version.startswith("2."):
        raise FrParseError(f"{name}: unsupported dump version {version!r} (expected 2.x)")
    entries = doc.get("entries", [])
    if not isinstance(entries, list):
        raise FrParseError(f"{name}: 'entries' is a {type(entries).__name__}, expected a list")
    if len(entries) > MAX_ENTRIES:
        raise FrParseError(f"{name}: {len(entries)} entries is over the {MAX_ENTRIES} limit")
    frame = _entry_columns(entries, name)
    backend = ""
    if entries:
        backend = str(entries[0]["profiling_name"]).partition(":")[0]
    return ParsedDump(
        name=name,
        rank=rank_from_name(name),
        version=version,
        backend=backend,
        pg_config=_pg_config(doc.get("pg_config"), name),
        entries=frame,
        frames=_tail_frames(entries, name),
    )


def _pg_config(raw: object, name: str) -> dict[str, GroupConfig]:
    """Groups by name; entries without a usable name or rank list are dropped.

    Gloo in PyTorch 2.13 records pg_config before the group is named (a single key
    ''), so a broken config is normal: the entries' process_group is authoritative.
    """
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise FrParseError(f"{name}: 'pg_config' is a {type(raw).__name__}, expected a dict")
    groups: dict[str, GroupConfig] = {}
    # A pickle can share one rank list among all its groups (a memo reference costs two
    # bytes): each distinct list is read once, or a few KB could cost groups x ranks.
    seen: dict[int, tuple[int, ...] | None] = {}
    for key, cfg in raw.items():
        if not isinstance(key, str) or not key or not isinstance(cfg, dict):
            continue
        desc = cfg.get("desc", "")
        ranks_raw = cfg.get("ranks")
        if isinstance(ranks_raw, list):
            if id(ranks_raw) not in seen:
                seen[id(ranks_raw)] = _ranks(ranks_raw)
            ranks = seen[id(ranks_raw)]
        else:
            ranks = _ranks(ranks_raw)
        groups[key] = GroupConfig(name=key, desc=desc if isinstance(desc, str) else "", ranks=ranks)
    return groups


def _ranks(raw: object) -> tuple[int, ...] | None:
    """NCCL writes ranks as the string "[0, 1, 2]"; accept a list as well."""
    if isinstance(raw, str):
        return _ranks_text(raw)
    if isinstance(raw, list) and all(type(r) is int for r in raw):
        return _sorted_ranks(raw)
    return None


def _ranks_text(raw: str) -> tuple[int, ...] | None:
    last = _last_ranks_text.get(len(raw))
    if last is not None and last[0] == raw:
        return last[1]
    ranks = _ranks_text_cached(raw)
    return _remember(_last_ranks_text, raw, ranks) if len(raw) >= _LONG_LIST else ranks


@lru_cache(maxsize=4096)
def _ranks_text_cached(raw: str) -> tuple[int, ...] | None:
    """Cached: every rank's dump repeats the same strings, the default group's 16k long."""
    text = raw.strip().removeprefix("[").removesuffix("]").strip()
    try:
        return _sorted_ranks([int(part) for part in text.split(",")]) if text else None
    except ValueError:
        return None


def _sorted_ranks(ranks: list[int]) -> tuple[int, ...] | None:
    return tuple(sorted(set(ranks))) if ranks and min(ranks) >= 0 else None


def _entry_columns(entries: list[Any], name: str) -> pl.DataFrame:
    """Build the entry columns with C-level map/zip and strict polars typing.

    One Python loop per entry would cost more than the unpickling itself at 16k ranks,
    so every check here runs over a whole column at once.
    """
    if not entries:
        return pl.DataFrame(schema=ENTRY_SCHEMA)
    if set(map(type, entries)) != {dict}:
        raise FrParseError(f"{name}: every entry must be a dict")
    try:
        columns = list(zip(*map(_get_required, entries), strict=True))
    except KeyError as exc:
        raise FrParseError(f"{name}: an entry lacks the field {exc}") from None
    (rid, pgs, seq, p2p_seq, pname, ins, outs, in_dt, out_dt, state, t0, t1, t2) = columns
    n = len(entries)

    if not set(map(type, pgs)) <= {tuple, list} or set(map(len, pgs)) != {2}:
        raise FrParseError(f"{name}: 'process_group' must be a (name, desc) pair")
    pg_names, pg_descs = zip(*pgs, strict=True)
    if not set(map(type, pname)) <= {str}:
        raise FrParseError(f"{name}: 'profiling_name' must be a string")
    names = {p: _op_and_peer(p) for p in set(pname)}
    op_col = [names[p][0] for p in pname]
    peer_col = [names[p][1] for p in pname]

    is_p2p_raw = list(map(methodcaller("get", "is_p2p"), entries))
    if None in is_p2p_raw:
        # Older 2.x dumps lack is_p2p: send and recv are the only p2p operations.
        is_p2p_raw = [
            v if v is not None else op in _P2P_OPS for v, op in zip(is_p2p_raw, op_col, strict=True)
        ]
    durations = list(map(methodcaller("get", "duration_ms"), entries))
    if not set(map(type, durations)) <= {float, int, type(None)}:
        raise FrParseError(f"{name}: 'duration_ms' must be a number")
    # One type per column before polars sees it (its mixed-type fallbacks are the risky path).
    try:
        durations = [None if d is None else float(d) for d in durations]
    except OverflowError:
        raise FrParseError(f"{name}: 'duration_ms' is out of range") from None

    # Every value is checked in Python before polars sees it: polars (2.1) can crash the whole
    # process on some hostile mixes of types and sizes instead of raising.
    _check_ints(rid, name, "record_id", nullable=False)
    for field, values in (
        ("collective_seq_id", seq),
        ("p2p_seq_id", p2p_seq),
        ("time_created_ns", t0),
        ("time_discovered_started_ns", t1),
        ("time_discovered_completed_ns", t2),
    ):
        _check_ints(values, name, field, nullable=True)
    for field, values in (("process_group name", pg_names), ("process_group desc", pg_descs)):
        if not set(map(type, values)) <= {str}:
            raise FrParseError(f"{name}: '{field}' must be a string")
    if not set(map(type, is_p2p_raw)) <= {bool}:
        raise FrParseError(f"{name}: 'is_p2p' must be a boolean")
    state_codes = _states(state, name)
    in_sig = _signatures(ins, in_dt, name, "input")
    out_sig = _signatures(outs, out_dt, name, "output")
    try:
        frame = pl.DataFrame(
            {
                "record_id": pl.Series(rid, dtype=pl.Int64, strict=True),
                "pg": pl.Series(pg_names, dtype=pl.String, strict=True),
                "pg_desc": pl.Series(pg_descs, dtype=pl.String, strict=True),
                "seq": pl.Series(seq, dtype=pl.Int64, strict=True),
                "p2p_seq": pl.Series(p2p_seq, dtype=pl.Int64, strict=True),
                "is_p2p": pl.Series(is_p2p_raw, dtype=pl.Boolean, strict=True),
                "op": pl.Series(op_col, dtype=pl.String),
                "peer": pl.Series(peer_col, dtype=pl.Int32),
                "in_sig": pl.Series(in_sig, dtype=pl.String),
                "out_sig": pl.Series(out_sig, dtype=pl.String),
                "state": pl.Series(state_codes, dtype=pl.Int8),
                "t_created": pl.Series(t0, dtype=pl.Int64, strict=True),
                "t_started": pl.Series(t1, dtype=pl.Int64, strict=True),
                "t_completed": pl.Series(t2, dtype=pl.Int64, strict=True),
                "duration_ms": pl.Series(durations, dtype=pl.Float64, strict=True),
            }
        )
    except (TypeError, OverflowError, pl.exceptions.PolarsError) as exc:
        raise FrParseError(f"{name}: an entry field has the wrong type: {exc}") from None
    assert frame.height == n
    return _finish_columns(frame)


def _finish_columns(frame: pl.DataFrame) -> pl.DataFrame:
    # JSON dumps write a missing timestamp as 0, pickles as None: one spelling, null.
    return frame.with_columns(
        pl.col("t_started").replace(0, None),
        pl.col("t_completed").replace(0, None),
        pl.col(["pg", "pg_desc", "op", "in_sig", "out_sig"]).cast(pl.Categorical),
    ).select(list(ENTRY_SCHEMA))


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _check_ints(values: Sequence[object], name: str, field: str, *, nullable: bool) -> None:
    allowed = {int, type(None)} if nullable else {int}
    types = set(map(type, values))
    if not types <= allowed:  # bool is not int here: type() is exact
        raise FrParseError(f"{name}: '{field}' must be an integer")
    # Copy out the Nones only when there are any: this runs over every entry of every rank.
    present = cast(
        "Sequence[int]", [v for v in values if v is not None] if type(None) in types else values
    )
    if present and (min(present) < _INT64_MIN or max(present) > _INT64_MAX):
        raise FrParseError(f"{name}: '{field}' is out of the 64-bit range")


def _op_and_peer(profiling_name: str) -> tuple[str, int | None]:
    """'nccl:send 0->1' is a send to group rank 1, 'nccl:recv 1<-0' a receive from 0."""
    op, _, meta = profiling_name.partition(":")[2].partition(" ")
    arrow = {"send": "->", "recv": "<-"}.get(op)
    if arrow and arrow in meta:
        peer = meta.partition(arrow)[2].strip()
        if peer.isdigit() and len(peer) <= 9:  # a group rank fits an Int32 column
            return op, int(peer)
    return op, None


def _states(states: Sequence[object], name: str) -> list[int]:
    if not set(map(type, states)) <= {str}:
        raise FrParseError(f"{name}: 'state' must be a string")
    unknown = set(states) - STATE_CODES.keys()
    if unknown:
        raise FrParseError(f"{name}: unknown entry state(s) {sorted(map(repr, unknown))}")
    return list(map(STATE_CODES.__getitem__, states))  # type: ignore[arg-type]


def _signatures(sizes: Sequence[Any], dtypes: Sequence[Any], name: str, which: str) -> list[str]:
    """One readable string per entry for its tensor sizes and dtypes.

    The shapes are checked for type and bounded in total before anything walks them;
    equal values are rendered once (a job repeats the same few shapes all the time).
    """
    lists = {list, tuple}
    n = len(sizes)
    if not set(map(type, sizes)) <= lists or not set(map(type, dtypes)) <= lists:
        raise FrParseError(f"{name}: '{which}_sizes' and '{which}_dtypes' must be lists")
    if sum(map(len, sizes)) > n * MAX_TENSORS_PER_ENTRY or sum(map(len, dtypes)) > n * (
        MAX_TENSORS_PER_ENTRY
    ):
        raise FrParseError(f"{name}: too many tensors in '{which}_sizes'")
    tensors: list[Any] = list(chain.from_iterable(sizes))
    if not set(map(type, tensors)) <= lists:
        raise FrParseError(f"{name}: '{which}_sizes' must be a list of lists of ints")
    if sum(map(len, tensors)) > max(len(tensors), 1) * MAX_DIMS_PER_TENSOR:
        raise FrParseError(f"{name}: too many dimensions in '{which}_sizes'")
    if not set(map(type, chain.from_iterable(tensors))) <= {int}:
        raise FrParseError(f"{name}: '{which}_sizes' must be a list of lists of ints")
    if not set(map(type, chain.from_iterable(dtypes))) <= {str}:
        raise FrParseError(f"{name}: '{which}_dtypes' must be a list of strings")
    # marshal is a fast, exact key for these (now proven plain and small) values;
    # version 2 has no back-references, so equal values give equal bytes.
    keys = list(map(marshal.dumps, zip(sizes, dtypes, strict=True), repeat(2, n)))
    # render each distinct value once, from (the last) entry that has it
    where = dict(zip(keys, range(n), strict=True))
    text = {key: _signature_text(sizes[i], dtypes[i]) for key, i in where.items()}
    return list(map(text.__getitem__, keys))


def _signature_text(sizes: Sequence[Any], dtypes: Sequence[Any]) -> str:
    return f"{[list(t) for t in sizes]} {list(dtypes)}"


def _tail_frames(entries: list[Any], name: str) -> dict[int, tuple[str, ...]]:
    kept: dict[int, tuple[str, ...]] = {}
    for entry in entries[-FRAMES_KEPT:]:
        frames = entry.get("frames")
        if frames is None:
            continue
        if not isinstance(frames, list) or len(frames) > MAX_FRAMES_PER_ENTRY:
            raise _bad_frames(name)
        kept[int(entry["record_id"])] = tuple(_frame_line(frame, name) for frame in frames)
    return kept


def _bad_frames(name: str) -> FrParseError:
    return FrParseError(f"{name}: 'frames' must be a list of at most {MAX_FRAMES_PER_ENTRY} frames")


def _frame_line(frame: object, name: str) -> str:
    if not isinstance(frame, dict):
        raise FrParseError(f"{name}: a stack frame must be a dict")
    fn, file, line = frame.get("name"), frame.get("filename"), frame.get("line")
    if not (isinstance(fn, str) and isinstance(file, str) and type(line) is int):
        raise FrParseError(f"{name}: a stack frame needs name, filename and line")
    return f"{fn} at {file}:{line}"


# Rendered stacks by the hash of their text (scan.Nodes.stack_keys): every rank runs the
# same code, so a worker renders each distinct stack once, not 64 per dump (a tenth of a
# dump's parse), and a chunk's dumps share the same tuples (pickled once per chunk).
_stack_texts: dict[tuple[int, int], tuple[str, ...]] = {}


def _fast_tail_frames(
    nodes: scan.Nodes, rows: npt.NDArray[np.int64], name: str
) -> dict[int, tuple[str, ...]] | None:
    """`_tail_frames` over nodes, or None where it would refuse the dump."""
    keys = nodes.stack_keys(rows[:, 1], MAX_FRAMES_PER_ENTRY)
    if keys is None:
        return None
    known = _stack_texts
    if not all(key is None or key in known for key in keys):
        texts = _render_stacks(nodes, rows[:, 1])
        if texts is None:
            return None
        if len(known) > 4096:
            known.clear()
        for key, text in zip(keys, texts, strict=True):
            if key is not None and text is not None:
                known[key] = text
    return {
        rid: known[key]
        for rid, key in zip(rows[:, 0].tolist(), keys, strict=True)
        if key is not None
    }


def _render_stacks(
    nodes: scan.Nodes, frames: npt.NDArray[np.int64]
) -> list[tuple[str, ...] | None] | None:
    """Each entry's stack as text (None: no stack), or None where one is not proper.

    PyTorch shares each frame dict among the entries that have it, so each distinct
    frame is rendered once."""
    stacks = nodes.stacks(frames, MAX_FRAMES_PER_ENTRY)
    if stacks is None:
        return None
    distinct = sorted({frame for stack in stacks if stack for frame in stack})
    rendered = nodes.frame_lines(distinct)
    if rendered is None:
        return None
    lines = dict(zip(distinct, rendered, strict=True))
    return [None if stack is None else tuple(map(lines.__getitem__, stack)) for stack in stacks]


def read_dump(path: Path) -> ParsedDump:
    """Read and parse one file, refusing oversized files before reading them."""
    return parse_dump(_read_bytes(path), str(path))


def _read_bytes(path: Path) -> bytes:
    try:
        _check_size(path, path.stat().st_size)
        return path.read_bytes()
    except OSError as exc:
        raise _unreadable(path, exc) from None


def _check_size(path: Path, size: int) -> None:
    """Refuse an oversized file before reading it."""
    if size > max(MAX_PICKLE_BYTES, MAX_JSON_BYTES):
        raise FrParseError(f"{path}: {size} bytes is over the size limit")


def _unreadable(path: Path, exc: OSError) -> FrParseError:
    return FrParseError(f"{path}: cannot read: {exc.strerror or exc}")


class _ReadBuffer:
    """One buffer for every file of a chunk: a fresh 500 KB bytes object per dump costs
    page faults (kernel time) comparable to parsing it. It is replaced, never resized,
    when a file is larger, so a view still alive elsewhere stays valid."""

    def __init__(self) -> None:
        self.buffer = bytearray(1 << 20)

    def read(self, path: Path) -> memoryview:
        """The file's bytes, with the same checks as _read_bytes; valid until the next read."""
        try:
            with path.open("rb", buffering=0) as f:
                size = os.fstat(f.fileno()).st_size
                _check_size(path, size)
                if len(self.buffer) <= size:
                    self.buffer = bytearray(size + size // 4 + 1)
                n = 0
                while True:  # a file still being written may have grown: read to its end
                    got = f.readinto(memoryview(self.buffer)[n:])
                    if not got:
                        return memoryview(self.buffer)[:n]
                    n += got
                    if n == len(self.buffer):
                        bigger = bytearray(2 * n)
                        bigger[:n] = self.buffer
                        self.buffer = bigger
        except OSError as exc:
            raise _unreadable(path, exc) from None


def _read_chunk(paths: Sequence[Path]) -> list[ParsedDump]:
    return [read_dump(p) for p in paths]


def _read_chunk_set(paths: Sequence[Path], spill: Path | None = None) -> DumpSet:
    """A worker's share of `read_dump_set`: one table for all its dumps' entries, its
    tables written to files in `spill` where one is given."""
    with no_cycle_collection():
        part = _read_chunk_set_unguarded(paths)
    return part.spilled_to(spill)


def _read_chunk_set_unguarded(paths: Sequence[Path]) -> DumpSet:
    builder = DumpSetBuilder()
    reader = _ReadBuffer()
    for path in paths:
        builder.add(reader.read(path), str(path))
    return builder.build()


class DumpSetBuilder:
    """Collects dumps one at a time into a DumpSet without a DataFrame per dump.

    For callers that read dumps themselves (the service decompresses uploads and keeps
    going past a bad file): `add` raises FrParseError for a bad dump and keeps nothing
    of it; `build` makes the tables once.
    """

    def __init__(self) -> None:
        self._scanned: list[Scanned] = []
        self._checked: list[ParsedDump] = []

    def add(self, data: bytes | memoryview, name: str) -> None:
        """Parse one dump; `data` may be reused by the caller once this returns."""
        fast = None
        if len(data) and data[0] == 0x80 and len(data) <= FAST_MAX_BYTES:
            fast = _scan_fast(data, name)
        if fast is not None:
            self._scanned.append(fast)
        else:
            self._checked.append(parse_dump(bytes(data), name))

    def build(self) -> DumpSet:
        scanned, checked = self._scanned, self._checked
        metas = [s.meta for s in scanned] + [_with_entries(d, _NO_ENTRIES) for d in checked]
        tables = [split_tables(scanned)] if scanned else []
        if checked or not scanned:
            rest = [d.ranked_entries() for d in checked]
            entries = pl.concat(rest) if rest else pl.DataFrame(schema=RANKED_SCHEMA)
            split = DumpSet.split([], entries)
            tables.append((split.collectives, split.p2p))
        part = DumpSet(
            dumps=metas,
            collectives=pl.concat([c for c, _ in tables]),
            p2p=pl.concat([p for _, p in tables]),
        )
        part.members = per_group_and_rank(part.collectives, part.p2p)
        part.spread = collective_spread(part.collectives)
        return part


def read_dumps(
    paths: Sequence[Path],
    workers: int = 2,
    on_progress: Callable[[int], None] | None = None,
) -> list[ParsedDump]:
    """Parse many files, each to its own ParsedDump (see `read_dump_set` for analysis)."""
    out: list[ParsedDump] = []
    for chunk in map_chunks(_read_chunk, paths, workers):
        out.extend(chunk)
        if on_progress:
            on_progress(len(chunk))
    return out


def read_dump_set(
    paths: Sequence[Path],
    workers: int = 2,
    on_progress: Callable[[int], None] | None = None,
    spill_parent: Path | None = None,
    pool: ProcessPoolExecutor | None = None,
) -> DumpSet:
    """Read many ranks' dumps for one analysis, their entries as two tables.

    Read by a pool, the tables stay in files the workers write (see `spill_for`), removed
    with the returned set. `pool`: one `pool_settings.start_pool` started earlier, which
    the read uses and shuts down (else the read starts its own where it needs one)."""
    spill = spill_for(len(paths), workers, spill_parent)
    work = partial(_read_chunk_set, spill=spill.path if spill else None)
    parts: list[DumpSet] = []
    with no_cycle_collection():
        for part in map_chunks(work, paths, workers, pool):
            parts.append(part)
            if on_progress:
                on_progress(len(part.dumps))
    return merge_parts(parts, spill)


def merge_parts(parts: Sequence[DumpSet], spill: SpillDir | None = None) -> DumpSet:
    """One set from the sets of disjoint chunks of ranks (each built by a DumpSetBuilder);
    `spill`: the directory their spilled tables are in, which the set keeps alive."""
    if not parts:
        return DumpSet.of([])
    return DumpSet(
        dumps=[d for part in parts for d in part.dumps],
        collectives=pl.concat([part.collectives for part in parts]),
        p2p=pl.concat([part.p2p for part in parts]),
        members=_concat_all([p.members for p in parts]),
        spread=_concat_all(_numbered([p.spread for p in parts])),
        spilled=tuple(t for part in parts for t in part.spilled),
        spill_dir=spill,
    )


def _numbered(spreads: list[pl.DataFrame | None]) -> list[pl.DataFrame | None]:
    """The spreads with a `part` column that tells the sets apart (a merged set's parts
    keep their own numbers, after the sets before it)."""
    out: list[pl.DataFrame | None] = []
    base = 0
    for spread in spreads:
        if spread is None:
            out.append(None)
        elif "part" in spread.columns:
            out.append(spread.with_columns(pl.col("part") + base))
            base += int(spread["part"].max() or 0) + 1  # type: ignore[arg-type]
        else:
            out.append(spread.with_columns(part=pl.lit(base, pl.Int32)))
            base += 1
    return out


def _concat_all(tables: list[pl.DataFrame | None]) -> pl.DataFrame | None:
    """The parts' summaries as one, or None (the analyzer computes it) if one lacks it."""
    present = [t for t in tables if t is not None]
    return pl.concat(present) if len(present) == len(tables) else None


def spill_for(items: int, workers: int, parent: Path | None) -> SpillDir | None:
    """Where the workers of a pooled read leave their tables: a new directory under
    `parent` (else the temporary directory); None where the read is not pooled or no
    directory can be made (the tables then come back through the pipe)."""
    return SpillDir.make(parent) if pooled(items, workers) else None


_T = TypeVar("_T")
_Item = TypeVar("_Item")


def map_chunks(
    work: Callable[[Sequence[_Item]], _T],
    items: Sequence[_Item],
    workers: int,
    pool: ProcessPoolExecutor | None = None,
) -> Iterator[_T]:
    """`work` over chunks of `items` (one dump each), in order, in `workers` processes
    when there are enough of them: those of `pool` (`pool_settings.start_pool`) if given,
    which is shut down once its last result is in, else a pool of its own.

    Parsing is CPU-bound Python (the GIL rules out threads); chunks amortise the cost
    of shipping results back, which travel as Arrow buffers inside the DataFrames.
    `work` must be a module-level function (it is pickled to the workers).
    """
    if not pooled(len(items), workers):
        if pool is not None:
            pool.shutdown(wait=False)
        for i in range(0, len(items), 16):
            yield work(items[i : i + 16])
        return
    # Up to 256 dumps a chunk: each chunk costs its worker and this process a fixed ~20 ms
    # (its tables' and summaries' polars calls, its files, its metadata pickled and read
    # back with its own copy of the shared rank lists): at 16k ranks, chunks of 128 took
    # 35.2-35.8 CPU-s and 18.9-19.2 s, of 256 33.2-34.5 and 17.6-18.5 s (alternated
    # re-reads), the collecting process peaking at 0.72 GiB instead of 0.89 and a worker
    # at 0.37 instead of 0.30 (512: 0.65 and 0.48, no faster).
    size = max(8, min(256, len(items) // (workers * 8)))
    # The last few chunks smaller, so that the workers finish at about the same time
    # (the analysis waits for the last one; a whole chunk is half a second).
    tail = min(len(items), 2 * workers * size)
    cut = len(items) - tail
    small = max(8, size // 4)
    chunks = [items[i : i + size] for i in range(0, cut, size)]
    chunks += [items[i : i + small] for i in range(cut, len(items), small)]
    # This process receives and frees a result per chunk, as the workers make them.
    pool_settings.keep_freed_memory()
    if pool is None:
        pool = pool_settings.start_pool(workers)
    try:
        results = pool.map(work, chunks)
        # While the workers start (their imports take half a second), load what the
        # analysis will run here, instead of after the last chunk.
        grouping.warm_up()
        yield from results
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    # Every result is in: the workers exit (a third of a second at 16k ranks, freeing what
    # they hold) while the caller analyses; the interpreter still waits for them at exit.
    pool.shutdown(wait=False)
