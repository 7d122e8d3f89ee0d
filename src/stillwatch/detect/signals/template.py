"""A template fingerprint that survives filled-in slots: MinHash of the prompt's skeleton.

The skeleton is the word sequence with numbers masked; its 3-word shingles are hashed once
and permuted four times (multiply-shift hashing). Two prompts cut from one template share most
shingles, so each of the four minima agrees with probability equal to their Jaccard similarity,
and at least one of them agrees with high probability. Stable across processes, so fingerprints
can be shared as indicators.
"""

from __future__ import annotations

import numpy as np

from stillwatch.detect.signals.hashing import shingles

_A = np.array(
    [0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x27D4EB2F165667C5, 0xBF58476D1CE4E5B9],
    dtype=np.uint64,
)
_B = np.array(
    [0x7F4A7C159E3779B9, 0x165667B19E3779F9, 0x94D049BB133111EB, 0xD6E8FEB86659FD93],
    dtype=np.uint64,
)
_S32 = np.uint64(32)
TEMPLATE_WIDTH = 3
MIN_WORDS = 6
MAX_WORDS = 120


def template_minhash(hashes: np.ndarray) -> tuple[int, ...]:
    """Four 32-bit minima of the word hashes' 3-shingles, or () for prompts too short to
    have a template."""
    if len(hashes) < MIN_WORDS:
        return ()
    h = shingles(hashes[:MAX_WORDS], TEMPLATE_WIDTH)
    permuted = (h[:, None] * _A + _B) >> _S32  # wraps modulo 2**64, as intended
    return tuple(permuted.min(axis=0).tolist())


def fingerprint_text(minhash: tuple[int, ...]) -> str | None:
    return "-".join(f"{v:08x}" for v in minhash) if minhash else None
