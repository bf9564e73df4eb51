"""Slurm hostlist expressions: ``node[1-3,7],login1`` to names and back."""

from __future__ import annotations

import itertools
import re
from collections import defaultdict
from collections.abc import Iterable

# One bracket expression can stand for millions of names; a 16k-GPU cluster has ~2k hosts.
MAX_HOSTS = 100_000

_TRAILING_DIGITS = re.compile(r"^(.*?)(\d+)$")


class HostlistError(ValueError):
    pass


def _split_top_level(expr: str) -> list[str]:
    """Split on commas outside brackets."""
    parts: list[str] = []
    depth = 0
    start = 0
    for i, ch in enumerate(expr):
        if ch == "[":
            depth += 1
            if depth > 1:
                raise HostlistError(f"nested brackets in {expr!r}")
        elif ch == "]":
            depth -= 1
            if depth < 0:
                raise HostlistError(f"unbalanced ']' in {expr!r}")
        elif ch == "," and depth == 0:
            parts.append(expr[start:i])
            start = i + 1
    if depth != 0:
        raise HostlistError(f"unbalanced '[' in {expr!r}")
    parts.append(expr[start:])
    return [p.strip() for p in parts if p.strip()]


def _range_values(body: str, expr: str) -> list[str]:
    values: list[str] = []
    for item in body.split(","):
        item = item.strip()
        lo, sep, hi = item.partition("-")
        if not lo.isdigit() or (sep and not hi.isdigit()):
            raise HostlistError(f"bad range {item!r} in {expr!r}")
        if not sep:
            values.append(lo)
            continue
        if int(hi) < int(lo):
            raise HostlistError(f"descending range {item!r} in {expr!r}")
        if int(hi) - int(lo) >= MAX_HOSTS:
            raise HostlistError(f"range {item!r} in {expr!r} is too large")
        # Slurm pads to the width of the lower bound: node[01-10] -> node01..node10.
        width = len(lo) if lo.startswith("0") else 0
        values.extend(str(n).zfill(width) for n in range(int(lo), int(hi) + 1))
    return values


def expand(expr: str) -> list[str]:
    """All names in ``expr``, in the order written; ``rack[1-2]-n[1-2]`` is a product."""
    names: list[str] = []
    for part in _split_top_level(expr):
        pieces = re.split(r"(\[[^\]]*\])", part)
        choices: list[list[str]] = []
        for piece in pieces:
            if piece.startswith("["):
                choices.append(_range_values(piece[1:-1], expr))
            elif piece:
                choices.append([piece])
        for combo in itertools.product(*choices):
            names.append("".join(combo))
            if len(names) > MAX_HOSTS:
                raise HostlistError(f"{expr!r} names more than {MAX_HOSTS} hosts")
    return names


def compress(names: Iterable[str]) -> str:
    """The shortest usual form of a set of names, sorted: ``node[1-3,7],login1``.

    Names are grouped by prefix and by the zero-padded width of their trailing number, so
    that ``expand(compress(x))`` gives back exactly the set ``x``.
    """
    groups: dict[tuple[str, int], set[int]] = defaultdict(set)
    plain: set[str] = set()
    for name in names:
        if not name or any(c in name for c in "[], "):
            raise HostlistError(f"cannot put {name!r} in a hostlist")
        m = _TRAILING_DIGITS.match(name)
        if not m:
            plain.add(name)
            continue
        prefix, digits = m.groups()
        width = len(digits) if digits.startswith("0") and len(digits) > 1 else 0
        groups[(prefix, width)].add(int(digits))
    out: list[tuple[tuple[str, int, int], str]] = [((n, -1, -1), n) for n in plain]
    for (prefix, width), numbers in groups.items():
        ranges: list[str] = []
        ordered = sorted(numbers)
        for _, run in itertools.groupby(enumerate(ordered), key=lambda p: p[1] - p[0]):
            seq = [n for _, n in run]
            lo, hi = str(seq[0]).zfill(width), str(seq[-1]).zfill(width)
            ranges.append(lo if lo == hi else f"{lo}-{hi}")
        text = f"{prefix}{ranges[0]}" if len(ordered) == 1 else f"{prefix}[{','.join(ranges)}]"
        out.append(((prefix, width, ordered[0]), text))
    return ",".join(text for _, text in sorted(out))
