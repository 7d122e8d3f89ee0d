"""In-process limiter: exact for one gateway process, the default."""

from __future__ import annotations

from stillwatch.limits.base import Check, Outcome, gcra


class MemoryLimiter:
    """Buckets in a dict. The event loop runs one coroutine at a time, so acquire is atomic."""

    def __init__(self, sweep_above: int = 200_000) -> None:
        self._tat: dict[str, float] = {}
        self._sweep_above = sweep_above

    async def acquire(
        self, checks: list[Check], now: float, *, event_time: bool = False
    ) -> Outcome:
        tats = self._tat
        results = [gcra(tats.get(c.key), now, c) for c in checks]
        allowed = all(r[0] for r in results)
        if allowed:
            for check, (_, new_tat, _) in zip(checks, results, strict=True):
                tats[check.key] = new_tat
            if len(tats) > self._sweep_above:
                self._sweep(now)
        return Outcome(allowed, tuple(r[2] for r in results), now)

    async def adjust(
        self, checks: list[Check], deltas: list[float], now: float, *, event_time: bool = False
    ) -> None:
        for check, delta in zip(checks, deltas, strict=True):
            if delta == 0:
                continue
            tat = self._tat.get(check.key)
            base = now if tat is None or tat < now else tat
            self._tat[check.key] = base + delta * check.interval

    def _sweep(self, now: float) -> None:
        """Forget buckets that have fully refilled: they hold no information."""
        for key in [k for k, tat in self._tat.items() if tat <= now]:
            del self._tat[key]

    def __len__(self) -> int:
        return len(self._tat)

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        return None
