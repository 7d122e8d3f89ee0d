"""GCRA arithmetic and the limiter interface shared by every storage."""

from __future__ import annotations

import math
from typing import NamedTuple, Protocol


class Check(NamedTuple):
    """One bucket a request must fit in.

    `interval` is the seconds one unit takes to replenish, `capacity` the most units the bucket
    holds, `cost` what this request takes from it. `dimension` and `kind` (`requests` or
    `tokens`) name it for headers and telemetry; `limit` is the per-period figure shown.
    """

    key: str
    interval: float
    capacity: int
    cost: float
    dimension: str
    kind: str
    limit: int


class BucketState(NamedTuple):
    remaining: int
    reset_after: float
    retry_after: float


class Outcome(NamedTuple):
    allowed: bool
    states: tuple[BucketState, ...]
    now: float
    degraded: bool = False  # the storage could not be asked; decided by the failure policy

    def refused_by(self, checks: list[Check]) -> Check | None:
        for check, state in zip(checks, self.states, strict=True):
            if state.retry_after > 0:
                return check
        return None


class LimiterUnavailable(RuntimeError):
    """The limiter's storage could not answer (Redis down)."""


def gcra(tat: float | None, now: float, check: Check) -> tuple[bool, float, BucketState]:
    """Try `check` against a bucket whose stored TAT is `tat`.

    Returns (allowed, the TAT to store if allowed, the state to report).
    """
    T, B, c = check.interval, check.capacity, check.cost
    base = now if tat is None or tat < now else tat
    new_tat = base + c * T
    allow_at = new_tat - B * T
    if c > B:
        return False, base, BucketState(_remaining(base, now, T, B), base - now, math.inf)
    if now < allow_at:
        return False, base, BucketState(_remaining(base, now, T, B), base - now, allow_at - now)
    return True, new_tat, BucketState(_remaining(new_tat, now, T, B), new_tat - now, 0.0)


def _remaining(tat: float, now: float, T: float, B: int) -> int:
    return max(0, min(B, math.floor((B * T - (tat - now)) / T + 1e-9)))


class Limiter(Protocol):
    async def acquire(
        self, checks: list[Check], now: float, *, event_time: bool = False
    ) -> Outcome:
        """Take every check's cost, or none of them if any bucket is short."""
        ...

    async def adjust(
        self, checks: list[Check], deltas: list[float], now: float, *, event_time: bool = False
    ) -> None:
        """Add `delta` units to each bucket (negative gives back); used to settle token
        reservations with real usage. Never refuses."""
        ...

    async def ping(self) -> bool: ...

    async def close(self) -> None: ...
