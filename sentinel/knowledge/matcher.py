"""Which knowledge patterns match a line: one search for a line that matches none.

Every pattern names literal words one of which any line it matches contains (`keywords`).
All those words form one trie-shaped regex: a line without any of them costs that one search,
and a line with some is tried only against the patterns those words belong to. The agent
decides with it what to ship and triage what a line means, so both read a line the same way.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

from sentinel.knowledge.keywords import trie_regex

if TYPE_CHECKING:
    from sentinel.knowledge import PatternSpec

# Lines can be megabytes (a JSON blob); the message is in the first few KiB.
MAX_LINE: Final = 4096
# NCCL_DEBUG=INFO floods a log with setup chatter; NCCL logs its failures as WARN.
NCCL_INFO: Final = " NCCL INFO "

Found = tuple["PatternSpec", re.Match[str]]


class Matcher:
    """The patterns of a catalog behind one keyword prefilter, in catalog order."""

    def __init__(self, patterns: Sequence[PatternSpec]) -> None:
        self.patterns = tuple(patterns)
        owners: dict[str, set[int]] = defaultdict(set)
        for index, spec in enumerate(self.patterns):
            for word in spec.keywords:
                owners[word].add(index)
        self.keywords: frozenset[str] = frozenset(owners)
        # Searched in lower-cased text: the keywords are lower case, whatever the pattern's case.
        # At a position it matches the longest word starting there.
        self.prefilter: re.Pattern[str] = re.compile(trie_regex(self.keywords))
        self._patterns_of: dict[str, tuple[int, ...]] = {}
        for word in self.keywords:
            prefixes = [other for other in self.keywords if word.startswith(other)]
            self._patterns_of[word] = tuple(sorted({i for p in prefixes for i in owners[p]}))

    def candidates(self, lowered: str) -> list[PatternSpec]:
        """The patterns one of whose keywords is in the (lower-cased) line, in catalog order."""
        found = self.prefilter.search(lowered)
        if found is None:
            return []
        indices: set[int] = set()
        while found is not None:
            # The longest word starting here; the shorter ones are its prefixes, counted with
            # it. Searching again one character on finds the words that overlap it.
            indices.update(self._patterns_of[found.group(0)])
            found = self.prefilter.search(lowered, found.start() + 1)
        return [self.patterns[i] for i in sorted(indices)]

    def matches(self, text: str, skip: frozenset[str] | set[str] = frozenset()) -> list[Found]:
        """The first matching pattern of each family not in `skip`, in catalog order.

        `text` is a line's message under its prefixes (see `lines.parse_line`).
        """
        text = text[:MAX_LINE]
        if NCCL_INFO in text:
            return []
        found: list[Found] = []
        done = set(skip)
        for spec in self.candidates(text.lower()):
            if spec.family in done:
                continue
            match = spec.compiled.search(text)
            if match is not None:
                done.add(spec.family)
                found.append((spec, match))
        return found
