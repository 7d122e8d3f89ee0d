"""Stable, fast hashes of word sequences. Each distinct word is hashed once (CRC-32, cached);
shingles are polynomial combinations of their words' hashes, computed with numpy over the
whole prompt at once. Stable across processes, so fingerprints can be shared."""

from __future__ import annotations

import zlib

import numpy as np

_CACHE: dict[str, int] = {}
_CACHE_LIMIT = 500_000
_BASE = np.uint64(0x100000001B3)  # FNV prime: odd, mixes low bits upward
_MIX = np.uint64(0xBF58476D1CE4E5B9)
_S29 = np.uint64(29)
_S32 = np.uint64(32)


def word_hashes(words: list[str]) -> np.ndarray:
    cache = _CACHE
    out = list(map(cache.get, words))
    if None in out:
        if len(cache) >= _CACHE_LIMIT:
            cache.clear()
        for i, w in enumerate(words):
            if out[i] is None:
                out[i] = cache[w] = zlib.crc32(w.encode()) | (len(w) << 32)
    return np.array(out, dtype=np.uint64)


def shingles(hashes: np.ndarray, width: int) -> np.ndarray:
    """One 64-bit hash per window of `width` words (the whole text if it is shorter)."""
    n = len(hashes)
    if n == 0:
        return hashes
    if n <= width:
        width = n
    m = n - width + 1
    # unsigned array arithmetic wraps modulo 2**64 without warnings
    acc = hashes[:m].copy()
    for j in range(1, width):
        acc *= _BASE
        acc += hashes[j : j + m]
    acc ^= acc >> _S29
    acc *= _MIX
    acc ^= acc >> _S32
    return acc
