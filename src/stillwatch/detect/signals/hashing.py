"""Stable, fast hashes of word sequences. Each distinct word is hashed once (CRC-32, cached);
shingles are polynomial combinations of their words' hashes, computed with numpy over the
whole prompt at once. Stable across processes, so fingerprints can be shared."""

from __future__ import annotations

import zlib

import numpy as np

_CACHE: dict[str, int] = {}
_CACHE_LIMIT = 500_000
_B = 0x100000001B3  # FNV prime: odd, so invertible modulo 2**64; mixes low bits upward
_BASE = np.uint64(_B)
_MIX = np.uint64(0xBF58476D1CE4E5B9)
_S29 = np.uint64(29)
_S32 = np.uint64(32)
_ROLLING_FROM = 5  # window width from which a prefix sum beats one pass per word of it


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


class _Powers:
    """B**k and B**-k modulo 2**64 for k < len, grown on demand."""

    def __init__(self) -> None:
        self.up = np.ones(1, dtype=np.uint64)
        self.down = np.ones(1, dtype=np.uint64)

    def upto(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        if len(self.up) < n:
            size = max(n, 2 * len(self.up), 2048)
            up, down, inverse = [1] * size, [1] * size, pow(_B, -1, 1 << 64)
            for k in range(1, size):
                up[k] = up[k - 1] * _B % (1 << 64)
                down[k] = down[k - 1] * inverse % (1 << 64)
            self.up = np.array(up, dtype=np.uint64)
            self.down = np.array(down, dtype=np.uint64)
        return self.up, self.down


_POWERS = _Powers()


def shingles(hashes: np.ndarray, width: int) -> np.ndarray:
    """One 64-bit hash per window of `width` words (the whole text if it is shorter):
    sum of h[i + j] * B**(width - 1 - j), mixed. Wide windows use the prefix sums of
    h[t] * B**-t, so the cost does not grow with the width (same values, modulo 2**64)."""
    n = len(hashes)
    if n == 0:
        return hashes
    if n <= width:
        width = n
    m = n - width + 1
    # unsigned array arithmetic wraps modulo 2**64 without warnings
    if width >= _ROLLING_FROM:
        up, down = _POWERS.upto(n)
        prefix = np.zeros(n + 1, dtype=np.uint64)
        np.cumsum(hashes * down[:n], out=prefix[1:])
        acc = prefix[width:] - prefix[:m]
        acc *= up[width - 1 : n]
    else:
        acc = hashes[:m].copy()
        for j in range(1, width):
            acc *= _BASE
            acc += hashes[j : j + m]
    acc ^= acc >> _S29
    acc *= _MIX
    acc ^= acc >> _S32
    return acc
