"""Layered rate limits: one interface (`Limiter`), two storages (in-process, Redis).

Every limit is a GCRA bucket: one theoretical arrival time (TAT) per key. A request passes
all of its buckets or none (all-or-nothing), so a refused request costs no dimension.
"""

from stillwatch.limits.base import Check, Limiter, LimiterUnavailable, Outcome, gcra
from stillwatch.limits.memory import MemoryLimiter

__all__ = ["Check", "Limiter", "LimiterUnavailable", "MemoryLimiter", "Outcome", "gcra"]
