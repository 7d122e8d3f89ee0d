"""Membership of a prompt in known public corpora: an index of sampled word shingles.

Each corpus item is cut into overlapping 8-word shingles of its skeleton (numbers masked, so a
re-filled number still matches); only shingles whose hash falls in a fixed residue class are
kept (the "0 mod p" sampling of document fingerprinting), at least three per item. A prompt
matches an item when it contains most of the item's kept shingles, whatever wrapper
surrounds it. Lookups are one dictionary probe per shingle of the prompt; the index grows by
`add`, so an operator can extend it with corpora of their own.
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
        self._keys = np.zeros(0, dtype=np.uint64)  # the same, as sorted arrays for lookups
        self._values = np.zeros(0, dtype=np.int64)
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
                    fresh += 1
            self._items.append((corpus, position, max(1, fresh)))
            self._sizes[corpus] = position + 1
            added += 1
        keys = np.fromiter(self._owner.keys(), dtype=np.uint64, count=len(self._owner))
        values = np.fromiter(self._owner.values(), dtype=np.int64, count=len(self._owner))
        order = np.argsort(keys)
        self._keys, self._values = keys[order], values[order]
        return added

    def match(self, hashes: np.ndarray) -> CorpusMatch | None:
        """`hashes`: the prompt's word hashes (`word_hashes(skeleton_words(text))`)."""
        if not self._owner or len(hashes) < SHINGLE:
            return None
        query = shingles(hashes, SHINGLE)
        keys = self._keys
        at = np.searchsorted(keys, query)
        at[at == len(keys)] = 0
        found = set(at[keys[at] == query].tolist())  # distinct indexed shingles present
        if not found:
            return None
        values = self._values
        hits: dict[int, int] = {}
        for position in found:
            item = int(values[position])
            hits[item] = hits.get(item, 0) + 1
        best = max(hits, key=lambda i: (hits[i] / self._items[i][2], -i))
        corpus, position, kept = self._items[best]
        containment = min(1.0, hits[best] / kept)
        if containment < self.min_containment:
            return None
        return CorpusMatch(corpus, position, round(containment, 3))
