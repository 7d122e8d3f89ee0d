"""Small statistics the tests and reports need, without a scientific-stack dependency."""

from __future__ import annotations

import bisect
import math


def ks_2samp(a: list[float], b: list[float]) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov statistic D and its asymptotic p-value."""
    if not a or not b:
        raise ValueError("both samples need values")
    xs, ys = sorted(a), sorted(b)
    d = 0.0
    for v in set(xs) | set(ys):
        fa = bisect.bisect_right(xs, v) / len(xs)
        fb = bisect.bisect_right(ys, v) / len(ys)
        d = max(d, abs(fa - fb))
    ne = len(xs) * len(ys) / (len(xs) + len(ys))
    lam = (math.sqrt(ne) + 0.12 + 0.11 / math.sqrt(ne)) * d
    if lam < 1e-3:
        return d, 1.0
    p = 2 * sum((-1) ** (k - 1) * math.exp(-2 * k * k * lam * lam) for k in range(1, 101))
    return d, min(1.0, max(0.0, p))
