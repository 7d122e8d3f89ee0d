"""Membership of a prompt in known public corpora: an index of sampled word shingles.

Each corpus item is cut into overlapping 8-word shingles of its skeleton (numbers masked, so a
re-filled number still matches); only shingles whose hash falls in a fixed residue class are
kept (the "0 mod p" sampling of document fingerprinting), at least three per item. A prompt
matches an item when it contains most of the item's kept shingles, whatever wrapper
surrounds it. A bitmap of the kept shingles' low bits screens the prompt's shingles in one
array lookup; only those it lets through (the indexed ones and a few percent of the others)
are probed in the dictionary. The index grows by `add`, so an operator can extend it with
corpora of their own.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from stillwatch.detect.signals.hashing import shingles, word_hashes
from stillwatch.detect.signals.text import skeleton_words

SHINGLE = 8
SAMPLE_MOD = 4
MIN_KEPT = 3
SCREEN_BITS = 21  # 2 MiB of flags: about 5% of unindexed shingles pass for 100,000 kept
_SCREEN_MASK = (1 << SCREEN_BITS) - 1


def shingle_hashes(words: list[str], width: int = SHINGLE) -> list[int]:
    return shingles(word_hashes(words), width).tolist()


@dataclass(frozen=True, slots=True)
class CorpusMatch:
    corpus: str
    item: int  # position of the item in its corpus
    containment: float  # share of the item's kept shingles found in the prompt


class CorpusIndex:
    def __init__(self, min_containment: float = 0.5) -> None:
        self.min_containment = min_containment
        self._owner: dict[int, int] = {}  # shingle hash -> item number (first owner wins)
        self._screen = np.zeros(1 << SCREEN_BITS, dtype=bool)  # low bits of kept shingles
        self._items: list[tuple[str, int, int]] = []  # (corpus, position, kept shingles)
        self._sizes: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._items)

    @property
    def corpora(self) -> dict[str, int]:
        return dict(self._sizes)

    def add(self, corpus: str, texts: Iterable[str]) -> int:
        added = 0
        for text in texts:
            words = skeleton_words(text, limit=2000)
            if len(words) < SHINGLE:  # too short to tell from a person's own words
                continue
            hashes = sorted(set(shingle_hashes(words)))
            kept = [h for h in hashes if h % SAMPLE_MOD == 0]
            if len(kept) < MIN_KEPT:
                kept = sorted(set(kept) | set(hashes[:MIN_KEPT]))
            number = len(self._items)
            position = self._sizes.get(corpus, 0)
            fresh = 0
            for h in kept:
                if h not in self._owner:
                    self._owner[h] = number
                    self._screen[h & _SCREEN_MASK] = True
                    fresh += 1
            self._items.append((corpus, position, max(1, fresh)))
            self._sizes[corpus] = position + 1
            added += 1
        return added

    def match(self, hashes: np.ndarray) -> CorpusMatch | None:
        """`hashes`: the prompt's word hashes (`word_hashes(skeleton_words(text))`)."""
        if not self._owner or len(hashes) < SHINGLE:
            return None
        hits: dict[int, int] = {}
        query = shingles(hashes, SHINGLE)
        passed = query[self._screen[(query & np.uint64(_SCREEN_MASK)).astype(np.intp)]]
        # distinct indexed shingles present
        for item in map(self._owner.get, set(passed.tolist())):
            if item is not None:
                hits[item] = hits.get(item, 0) + 1
        if not hits:
            return None
        best = max(hits, key=lambda i: (hits[i] / self._items[i][2], -i))
        corpus, position, kept = self._items[best]
        containment = min(1.0, hits[best] / kept)
        if containment < self.min_containment:
            return None
        return CorpusMatch(corpus, position, round(containment, 3))
