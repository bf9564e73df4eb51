"""Literal words a regex cannot match without, so most patterns skip most lines cheaply."""

from __future__ import annotations

import functools
import importlib
import re
from collections.abc import Iterable
from typing import Any, Final

# The stdlib's regex parser; `sre_parse` is its deprecated public alias.
_parser: Any = importlib.import_module("re._parser")
_c: Any = importlib.import_module("re._constants")

# Shorter literals occur in too many lines to be worth checking.
MIN_KEYWORD: Final = 3

Keywords = frozenset[str]


def _best(candidates: list[Keywords]) -> Keywords | None:
    """The candidate whose shortest word is longest: the most selective requirement."""
    usable = [c for c in candidates if c and min(len(w) for w in c) >= MIN_KEYWORD]
    return max(usable, key=lambda c: (min(len(w) for w in c), -len(c)), default=None)


def _sequence(items: Any) -> Keywords | None:
    candidates: list[Keywords] = []
    run: list[str] = []

    def close_run() -> None:
        if run:
            candidates.append(frozenset({"".join(run).lower()}))
            run.clear()

    for op, arg in items:
        if op is _c.LITERAL:
            run.append(chr(arg))
        elif op is _c.AT:
            continue  # zero-width (\b, ^, $): the literals around it are still adjacent text
        else:
            close_run()
            if op is _c.SUBPATTERN:
                inner = _sequence(arg[-1])
                if inner:
                    candidates.append(inner)
            elif op is _c.BRANCH:
                inner = _branch(arg[1])
                if inner:
                    candidates.append(inner)
            elif op in (_c.MAX_REPEAT, _c.MIN_REPEAT) and arg[0] >= 1:
                inner = _sequence(arg[2])
                if inner:
                    candidates.append(inner)
    close_run()
    return _best(candidates)


def _branch(alternatives: Any) -> Keywords | None:
    words: set[str] = set()
    for alternative in alternatives:
        required = _sequence(alternative)
        if required is None:
            return None  # one alternative needs no literal: the pattern can match anywhere
        words |= required
    return frozenset(words)


def required_keywords(regex: str) -> Keywords | None:
    """Lower-case words of which every match contains at least one, or None if unknown.

    Checked against the lower-cased line, so it also holds for case-insensitive patterns.
    """
    return _sequence(_parser.parse(regex))


def trie_regex(words: Iterable[str]) -> str:
    """One regex for a set of words, shaped as a trie so that a search tries one branch per
    character instead of every word: a few hundred keywords cost about what a few do.

    At any position it matches the longest of the words that starts there.
    """
    return _trie_regex(frozenset(words))


# Every log collector builds one from the same knowledge: a replay starts one agent per host.
@functools.lru_cache(maxsize=8)
def _trie_regex(words: frozenset[str]) -> str:
    root: dict[str, Any] = {}
    for word in words:
        node = root
        for char in word:
            node = node.setdefault(char, {})
        node[""] = {}

    def build(node: dict[str, Any]) -> str:
        branches = [re.escape(char) + build(child) for char, child in sorted(node.items()) if char]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        if "" not in node:
            return body
        return f"(?:{body})?" if len(branches) == 1 else body + "?"

    return build(root)
