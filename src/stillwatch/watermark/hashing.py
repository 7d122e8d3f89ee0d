"""Keyed 64-bit hashes of (context, token) pairs, vectorised with numpy.

Everything a detector needs is integer arithmetic on token ids: no model, no random
permutation of the vocabulary, and the same function scores one key or a thousand (broadcast
over a key axis). The mixer is the SplitMix64 finaliser; multiplication wraps modulo 2**64.
"""

from __future__ import annotations

import numpy as np

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_TOKEN = np.uint64(0xD6E8FEB86659FD93)
_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)
_S11 = np.uint64(11)
_UNIT = 1.0 / float(1 << 53)


def mix64(x: np.ndarray) -> np.ndarray:
    """A bijective avalanche of uint64 values (new array)."""
    return _mixed(np.array(x, dtype=np.uint64))


def _mixed(x: np.ndarray) -> np.ndarray:
    """`mix64` in place on an array the caller owns (one scratch array, no other copies)."""
    if x.ndim == 0:
        x = x.reshape(1)
        return _mixed(x)[0]
    t = np.empty_like(x)
    with np.errstate(over="ignore"):
        np.right_shift(x, _S30, out=t)
        x ^= t
        x *= _M1
        np.right_shift(x, _S27, out=t)
        x ^= t
        x *= _M2
        np.right_shift(x, _S31, out=t)
        x ^= t
    return x


def context_hashes(tokens: np.ndarray, width: int) -> np.ndarray:
    """Hash of the `width` tokens before each position; positions with a shorter past get
    the hash of what there is (the first token has none: 0)."""
    tokens = np.asarray(tokens, dtype=np.uint64)
    n = tokens.shape[-1]
    terms = []
    for j in range(1, width + 1):
        if j >= n + 1:
            break
        shifted = np.zeros_like(tokens)
        shifted[..., j:] = _context_term(tokens[..., : n - j], j)
        terms.append(shifted)
    return _fold(terms, tokens.shape)


def context_of(back: list[np.ndarray]) -> np.ndarray:
    """The same hash from explicit past tokens: `back[j - 1]` holds the token j positions
    back, for positions whose whole context is present."""
    return _fold([_context_term(np.asarray(t, np.uint64), j) for j, t in enumerate(back, 1)],
                 np.shape(back[0]))


def _context_term(tokens: np.ndarray, j: int) -> np.ndarray:
    with np.errstate(over="ignore"):
        return tokens + (np.uint64(j) * _GOLDEN + np.uint64(1))


def _fold(terms: list[np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
    ctx = np.zeros(shape, dtype=np.uint64)
    for term in terms:
        ctx ^= term
        ctx = _mixed(ctx)
    return ctx


def pair_hashes(ctx: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """Unkeyed hash of (context, token): what de-duplication compares."""
    with np.errstate(over="ignore"):
        h = np.asarray(tokens, np.uint64) * _TOKEN
        return _mixed(np.bitwise_xor(h, np.asarray(ctx, dtype=np.uint64)))


def keyed(pairs: np.ndarray, keys: np.ndarray | int) -> np.ndarray:
    """Keyed hashes; `keys` of shape (K,) gives a (K, n) array."""
    k = np.asarray(keys, dtype=np.uint64)
    if k.ndim == 1:
        k = k[:, None]
    with np.errstate(over="ignore"):
        return _mixed(pairs ^ mix64(k + _GOLDEN))


def unit(h: np.ndarray) -> np.ndarray:
    """Uniform floats in (0, 1) from 64-bit hashes (53 bits, never exactly 0 or 1)."""
    return ((h >> _S11).astype(np.float64) + 0.5) * _UNIT


def threshold(gamma: float) -> np.uint64:
    """A hash below this is green: P = gamma exactly up to 2**-64."""
    return np.uint64(min(int(gamma * 2.0**64), 2**64 - 1))
