from __future__ import annotations

import asyncio
import math

import pytest

from stillwatch.limits import Check, MemoryLimiter
from stillwatch.limits.redis import RedisLimiter


def check(
    key: str, per_minute: int, cost: float = 1, kind: str = "requests", burst: int | None = None
) -> Check:
    return Check(key, 60 / per_minute, burst or per_minute, cost, "key", kind, per_minute)


def limiters(redis_url: str | None) -> list:
    out = [MemoryLimiter()]
    if redis_url:
        out.append(RedisLimiter(redis_url, use_server_time=False))
    return out


async def _gcra_semantics(limiter) -> None:
    now = 1_000_000.0
    c = check("a", 10)
    allowed = [(await limiter.acquire([c], now)).allowed for _ in range(12)]
    assert allowed == [True] * 10 + [False] * 2
    refused = await limiter.acquire([c], now)
    assert refused.states[0].retry_after == pytest.approx(6.0)
    assert refused.states[0].remaining == 0
    # one interval later exactly one more fits
    assert (await limiter.acquire([c], now + 6.0)).allowed
    assert not (await limiter.acquire([c], now + 6.0)).allowed


async def _all_or_nothing(limiter) -> None:
    now = 2_000_000.0
    roomy, tight = check("roomy", 100), check("tight", 1)
    assert (await limiter.acquire([roomy, tight], now)).allowed
    refused = await limiter.acquire([roomy, tight], now)
    assert not refused.allowed
    # the refused request took nothing from the roomy bucket
    out = await limiter.acquire([roomy], now)
    assert out.states[0].remaining == 98


async def _too_large_and_adjust(limiter) -> None:
    now = 3_000_000.0
    tokens = check("tok", 1000, cost=5000, kind="tokens")
    out = await limiter.acquire([tokens], now)
    assert not out.allowed and math.isinf(out.states[0].retry_after)
    reserve = check("tok2", 1000, cost=900, kind="tokens")
    assert (await limiter.acquire([reserve], now)).allowed
    assert not (await limiter.acquire([check("tok2", 1000, cost=200, kind="tokens")], now)).allowed
    await limiter.adjust([reserve], [-800], now)  # real usage was 100 tokens
    out = await limiter.acquire([check("tok2", 1000, cost=200, kind="tokens")], now)
    assert out.allowed and out.states[0].remaining == 700


@pytest.mark.parametrize("scenario", [_gcra_semantics, _all_or_nothing, _too_large_and_adjust])
def test_memory_limiter(scenario) -> None:
    asyncio.run(scenario(MemoryLimiter()))


@pytest.mark.redis
@pytest.mark.parametrize("scenario", [_gcra_semantics, _all_or_nothing, _too_large_and_adjust])
def test_redis_limiter_matches_memory(redis_url: str, scenario) -> None:
    async def run() -> None:
        limiter = RedisLimiter(redis_url, use_server_time=False)
        try:
            await scenario(limiter)
        finally:
            await limiter.close()

    asyncio.run(run())


@pytest.mark.redis
def test_redis_limiter_is_exact_under_concurrency(redis_url: str) -> None:
    async def run() -> int:
        limiters = [RedisLimiter(redis_url) for _ in range(4)]
        c = check("shared", 37)
        results = await asyncio.gather(*(limiters[i % 4].acquire([c], 0.0) for i in range(200)))
        for lim in limiters:
            await lim.close()
        return sum(r.allowed for r in results)

    assert asyncio.run(run()) == 37


def test_redis_unreachable_raises_limiter_unavailable() -> None:
    from stillwatch.limits import LimiterUnavailable

    async def run() -> None:
        limiter = RedisLimiter("redis://127.0.0.1:1/0", timeout=0.2)
        with pytest.raises(LimiterUnavailable):
            await limiter.acquire([check("x", 1)], 0.0)
        assert not await limiter.ping()
        await limiter.close()

    asyncio.run(run())


def test_memory_limiter_forgets_refilled_buckets() -> None:
    async def run() -> None:
        limiter = MemoryLimiter(sweep_above=100)
        for i in range(150):
            await limiter.acquire([check(f"k{i}", 60)], 0.0)
        await limiter.acquire([check("late", 60)], 10_000.0)
        assert len(limiter) <= 2

    asyncio.run(run())
