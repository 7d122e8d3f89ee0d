"""Synthetic watermarked token sequences for the watermark tests (no model needed).

A stand-in "model" proposes `k` uniformly random candidate tokens at each step; a watermarked
generator picks the candidate the key favours (the green one, or the largest r for Gumbel),
which is what biased sampling does to a model with that much entropy."""

from __future__ import annotations

import numpy as np

from stillwatch.watermark import hashing
from stillwatch.watermark.schemes import GreenList, Scheme

VOCAB = 49152


def next_context(seq: list[int], width: int) -> np.uint64:
    return hashing.context_hashes(np.array([*seq, 0], dtype=np.uint64), width)[-1]


def watermarked(
    n: int, scheme: Scheme, key: int | None, rng: np.random.Generator, k: int = 4,
    prefix: list[int] | None = None, vocab: int = VOCAB,
) -> np.ndarray:
    seq = list(prefix or [int(rng.integers(vocab))])
    start = len(seq)
    while len(seq) < start + n:
        cand = rng.integers(0, vocab, size=k).astype(np.uint64)
        if key is None:
            seq.append(int(cand[0]))
            continue
        pairs = hashing.pair_hashes(np.full(k, next_context(seq, scheme.width)), cand)
        h = hashing.keyed(pairs, np.uint64(key))
        if isinstance(scheme, GreenList):
            green = np.flatnonzero(h < hashing.threshold(scheme.gamma))
            seq.append(int(cand[green[0]] if green.size else cand[0]))
        else:
            seq.append(int(cand[int(np.argmax(hashing.unit(h)))]))
    return np.array(seq, dtype=np.uint64)


def random_tokens(n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, VOCAB, size=n).astype(np.uint64)
