"""Traitor tracing: which account's key explains a leaked text.

Every candidate key is scored on the same de-duplicated pairs in one vectorised pass; the
smallest p-value is multiplied by the number of candidates (Bonferroni), so the chance of
naming anyone for a text that is no one's stays below `alpha` however many accounts there are.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from stillwatch.watermark.detect import score
from stillwatch.watermark.schemes import Scheme


@dataclass(frozen=True)
class Suspect:
    key_id: str
    p_value: float
    statistic: float


@dataclass(frozen=True)
class TraceResult:
    named: str | None  # the key id whose key explains the text, or None
    p_adjusted: float  # the best p-value times the number of candidates
    scored: int
    candidates: int
    top: list[Suspect] = field(default_factory=list)


def trace(
    tokens: object,
    scheme: Scheme,
    candidates: list[tuple[str, int]],
    *,
    alpha: float = 1e-6,
    top: int = 5,
) -> TraceResult:
    if not candidates:
        raise ValueError("no candidate keys to trace against")
    keys = np.array([k for _, k in candidates], dtype=np.uint64)
    scores = score(tokens, scheme, keys)
    p = np.array([s.p_value for s in scores])
    order = np.argsort(p, kind="stable")
    best = int(order[0])
    p_adj = min(1.0, float(p[best]) * len(candidates))
    suspects = [
        Suspect(candidates[i][0], float(p[i]), scores[i].statistic) for i in order[:top]
    ]
    return TraceResult(
        named=candidates[best][0] if p_adj <= alpha else None,
        p_adjusted=p_adj,
        scored=scores[0].scored if scores else 0,
        candidates=len(candidates),
        top=suspects,
    )
