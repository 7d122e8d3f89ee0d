"""Watermark detection from token ids and a key: exact p-values, windows, many texts at once.

The green count is discrete, so its plain tail probability is conservative: fewer than a
share alpha of foreign texts reach p <= alpha. `p_value` breaks ties with a uniform drawn
from a hash of the text's pairs and the key (the same text always gets the same value), which
makes it exactly uniform under the null; `p_upper` is the plain tail.

Only distinct (context, token) pairs are scored (the first occurrence in a text), and the
first `width` tokens of a text, whose context lies in a prompt the detector does not have,
are skipped. Windowed detection scans windows of several lengths for a watermarked passage
inside other text and corrects its best p-value for the number of windows tried.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stillwatch.watermark import hashing
from stillwatch.watermark.schemes import Scheme

WINDOWS = (50, 100, 200, 400)


@dataclass(frozen=True)
class Score:
    tokens: int  # tokens in the text
    scored: int  # distinct (context, token) pairs scored
    statistic: float  # green count (greenlist) or sum of -ln(1 - r) (gumbel)
    expected: float  # the statistic's mean when the text is not ours
    p_value: float  # exactly uniform when the text is not ours (randomised at ties)
    p_upper: float  # P(statistic >= observed): the conservative bound, to quote in a dispute


@dataclass(frozen=True)
class WindowScore:
    start: int  # token offsets of the best window
    end: int
    scored: int
    statistic: float
    p_value: float  # of that window alone
    p_adjusted: float  # times the number of windows tried (Bonferroni)
    windows: int


def _as_tokens(tokens: object) -> np.ndarray:
    arr = np.asarray(tokens)
    if arr.ndim != 1:
        raise ValueError("token ids must be one flat sequence per text")
    if arr.size and (not np.issubdtype(arr.dtype, np.integer) or arr.min() < 0):
        raise ValueError("token ids must be non-negative integers")
    return arr.astype(np.uint64, copy=False)


def scored_pairs(tokens: object, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(pair hashes, first-occurrence mask) of the positions with a full context."""
    toks = _as_tokens(tokens)
    pairs = hashing.pair_hashes(hashing.context_hashes(toks, width), toks)[width:]
    first = np.zeros(pairs.shape, dtype=bool)
    if pairs.size:
        _, idx = np.unique(pairs, return_index=True)
        first[idx] = True
    return pairs, first


def score(tokens: object, scheme: Scheme, keys: np.ndarray | list[int] | int) -> list[Score]:
    """One score per key (a key is a 64-bit int from `MasterKeys.derive`)."""
    toks = _as_tokens(tokens)
    pairs, first = scored_pairs(toks, scheme.width)
    unique = pairs[first]
    key_arr = np.atleast_1d(np.asarray(keys, dtype=np.uint64))
    stat = scheme.token_scores(hashing.keyed(unique, key_arr)).sum(axis=1)
    n = np.full(stat.shape, unique.size, dtype=np.float64)
    digest = np.bitwise_xor.reduce(unique) if unique.size else np.uint64(0)
    u = tie_breaks(np.full(key_arr.shape, digest, dtype=np.uint64), key_arr)
    p = scheme.pvalues(n, stat, u)
    upper = scheme.pvalues(n, stat)
    exp = scheme.expected(unique.size)
    return [
        Score(int(toks.size), int(unique.size), float(s), float(exp), float(pv), float(pu))
        for s, pv, pu in zip(stat, p, upper, strict=True)
    ]


def tie_breaks(digests: np.ndarray, keys: np.ndarray | np.uint64) -> np.ndarray:
    """A uniform in (0, 1) per (text digest, key), for the randomised p-value."""
    with np.errstate(over="ignore"):
        return hashing.unit(hashing.mix64(digests ^ hashing.mix64(np.asarray(keys) + np.uint64(7))))


def score_many(
    texts: list[np.ndarray], scheme: Scheme, key: int, *, upper: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(scored pairs, statistic, p-value) per text, for many texts in one vectorised pass
    (the same rules as `score`: per-text de-duplication, the context never crosses texts).
    `upper`: the conservative p-value instead of the randomised one."""
    if not texts:
        empty = np.zeros(0)
        return empty, empty, empty
    arrays = [np.asarray(t) for t in texts]
    lengths = np.fromiter((a.size for a in arrays), dtype=np.int64, count=len(arrays))
    if any(a.ndim != 1 for a in arrays) or len({a.dtype for a in arrays}) > 1:
        arrays = [_as_tokens(a) for a in arrays]  # per text, for a clear error or one dtype
    toks = _as_tokens(np.concatenate(arrays))
    pairs, text_id = _distinct_pairs(toks, lengths, scheme.width)
    s = scheme.token_scores(hashing.keyed(pairs, np.uint64(key)))
    n = np.bincount(text_id, minlength=len(texts)).astype(np.float64)
    stat = np.bincount(text_id, weights=s, minlength=len(texts))
    if upper:
        return n, stat, scheme.pvalues(n, stat)
    digests = np.zeros(len(texts), dtype=np.uint64)
    if pairs.size:  # text_id is sorted: each text's pairs are one run
        starts = np.flatnonzero(np.concatenate([[True], text_id[1:] != text_id[:-1]]))
        digests[text_id[starts]] = np.bitwise_xor.reduceat(pairs, starts)
    return n, stat, scheme.pvalues(n, stat, tie_breaks(digests, np.uint64(key)))


def _distinct_pairs(
    toks: np.ndarray, lengths: np.ndarray, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """Each text's distinct (context, token) pairs as (pair hashes, text ids), each text's
    pairs one contiguous run.

    When the `width + 1` token ids of a pair fit in one word (the usual case: a 49k vocabulary
    and width 1 or 2), each text's packed pairs become one row of a padded matrix whose rows
    are sorted on their own (short sorts, far faster than one long one); the result is exact
    and each distinct pair is hashed once. Otherwise pair hashes are de-duplicated directly."""
    tok_bits = (int(toks.max()) + 1).bit_length() if toks.size else 1
    counts = np.maximum(lengths - width, 0)
    first_at = np.cumsum(lengths) - lengths + width
    if (width + 1) * tok_bits > 64:
        return _distinct_hashed(toks, counts, first_at, width)
    dtype = np.uint32 if (width + 1) * tok_bits <= 32 else np.uint64
    # the largest id is at most 2**tok_bits - 2, so no code is all ones: that pads the rows
    pad = np.iinfo(dtype).max
    # rows of a bucket share a width: the counts rounded up by at most an eighth
    step = np.maximum(16, 1 << np.maximum(np.log2(np.maximum(counts, 1)).astype(np.int64) - 3, 0))
    row_width = -(-counts // step) * step
    low = np.uint64((1 << tok_bits) - 1)
    pairs, ids = [], []
    for w in np.unique(row_width[counts > 0]):
        texts = np.flatnonzero((row_width == w) & (counts > 0))
        cols = np.arange(int(w))
        at = first_at[texts, None] + cols
        valid = cols < counts[texts, None]
        at = np.where(valid, at, 0)
        rows = toks[at].astype(dtype)
        for j in range(1, width + 1):
            rows |= toks[np.maximum(at - j, 0)].astype(dtype) << dtype(j * tok_bits)
        rows[~valid] = pad
        rows.sort(axis=1)
        new = rows != pad
        new[:, 1:] &= rows[:, 1:] != rows[:, :-1]
        packed = rows[new].astype(np.uint64)
        back = [(packed >> np.uint64(j * tok_bits)) & low for j in range(1, width + 1)]
        pairs.append(hashing.pair_hashes(hashing.context_of(back), packed & low))
        ids.append(np.repeat(texts, new.sum(axis=1)))
    if not pairs:
        return np.zeros(0, np.uint64), np.zeros(0, np.int64)
    return np.concatenate(pairs), np.concatenate(ids)


def _distinct_hashed(
    toks: np.ndarray, counts: np.ndarray, first_at: np.ndarray, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """De-duplication on pair hashes, for token ids too wide to pack."""
    text_id = np.repeat(np.arange(counts.size, dtype=np.int64), counts)
    at = np.arange(text_id.size) - np.repeat(np.cumsum(counts) - counts, counts)
    at += first_at[text_id]
    pairs = hashing.pair_hashes(hashing.context_hashes(toks, width), toks)[at]
    tagged = pairs ^ hashing.mix64(text_id.astype(np.uint64) + np.uint64(1))
    _, first = np.unique(tagged, return_index=True)
    first.sort()  # positions ascend, so each text's pairs stay one run
    return pairs[first], text_id[first]


def best_window(
    tokens: object, scheme: Scheme, key: int, sizes: tuple[int, ...] = WINDOWS
) -> WindowScore | None:
    """The window most likely to be ours, over windows of each size at a quarter-size
    stride. None for a text shorter than the smallest window."""
    toks = _as_tokens(tokens)
    pairs, first = scored_pairs(toks, scheme.width)
    n = pairs.size
    if n < min(sizes):
        return None
    s = scheme.token_scores(hashing.keyed(pairs, np.uint64(key))) * first
    cs = np.concatenate([[0.0], np.cumsum(s)])
    cn = np.concatenate([[0], np.cumsum(first)])
    best: tuple[float, int, int, float, float] | None = None
    tried = 0
    for size in sizes:
        if size > n:
            break
        starts = np.arange(0, n - size + 1, max(1, size // 4))
        ends = starts + size
        wn = (cn[ends] - cn[starts]).astype(np.float64)
        ws = cs[ends] - cs[starts]
        p = scheme.pvalues(wn, ws)
        tried += starts.size
        i = int(np.argmin(p))
        if best is None or p[i] < best[0]:
            best = (float(p[i]), int(starts[i]), int(ends[i]), float(wn[i]), float(ws[i]))
    assert best is not None
    p, a, b, wn, ws = best
    width = scheme.width
    return WindowScore(a + width, b + width, int(wn), ws, p, min(1.0, p * tried), tried)
