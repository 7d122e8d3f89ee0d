"""Redis limiter: exact across gateway replicas, one atomic round trip per request.

All of a request's buckets go to one Lua script that checks every bucket and takes the cost
from all of them only if all have room. Time is Redis's own clock unless the caller passes
an event time (log replay), so replicas with skewed clocks still agree.
"""

from __future__ import annotations

import math

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from stillwatch.limits.base import BucketState, Check, LimiterUnavailable, Outcome

# KEYS: buckets. ARGV[1]: now (negative: use Redis TIME). Then per bucket: interval, capacity, cost.
_ACQUIRE = """
local now = tonumber(ARGV[1])
if now < 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local n = #KEYS
local ok = 1
local rows = {}
for i = 1, n do
  local T = tonumber(ARGV[2 + (i - 1) * 3])
  local B = tonumber(ARGV[3 + (i - 1) * 3])
  local c = tonumber(ARGV[4 + (i - 1) * 3])
  local tat = tonumber(redis.call('GET', KEYS[i]))
  if tat == nil or tat < now then tat = now end
  local new_tat = tat + c * T
  if c > B or now < new_tat - B * T then ok = 0 end
  rows[i] = {tat, new_tat, T, B, c}
end
local out = {ok, string.format('%.6f', now)}
for i = 1, n do
  local tat, new_tat, T, B, c = rows[i][1], rows[i][2], rows[i][3], rows[i][4], rows[i][5]
  local held = tat
  local retry = 0
  if ok == 1 then
    held = new_tat
    redis.call('SET', KEYS[i], string.format('%.6f', new_tat), 'PX',
               math.ceil((new_tat - now) * 1000) + 1000)
  else
    if c > B then retry = -1 elseif now < new_tat - B * T then retry = new_tat - B * T - now end
  end
  local remaining = math.floor((B * T - (held - now)) / T + 1e-9)
  if remaining < 0 then remaining = 0 end
  if remaining > B then remaining = B end
  out[#out + 1] = remaining
  out[#out + 1] = string.format('%.6f', held - now)
  out[#out + 1] = string.format('%.6f', retry)
end
return out
"""

# KEYS: buckets. ARGV[1]: now (negative: Redis TIME). Then per bucket: interval, delta.
_ADJUST = """
local now = tonumber(ARGV[1])
if now < 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
for i = 1, #KEYS do
  local T = tonumber(ARGV[2 + (i - 1) * 2])
  local d = tonumber(ARGV[3 + (i - 1) * 2])
  local tat = tonumber(redis.call('GET', KEYS[i]))
  if tat == nil or tat < now then tat = now end
  local new_tat = tat + d * T
  if new_tat > now then
    redis.call('SET', KEYS[i], string.format('%.6f', new_tat), 'PX',
               math.ceil((new_tat - now) * 1000) + 1000)
  else
    redis.call('DEL', KEYS[i])
  end
end
return 1
"""


class RedisLimiter:
    def __init__(
        self,
        url: str,
        *,
        prefix: str = "sw:rl:",
        timeout: float = 0.5,
        use_server_time: bool = True,
    ) -> None:
        self._redis = aioredis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, decode_responses=False
        )
        self._prefix = prefix
        self._acquire = self._redis.register_script(_ACQUIRE)
        self._adjust = self._redis.register_script(_ADJUST)
        self._server_time = use_server_time

    def _now_arg(self, now: float, event_time: bool) -> str:
        return repr(now) if (event_time or not self._server_time) else "-1"

    async def acquire(
        self, checks: list[Check], now: float, *, event_time: bool = False
    ) -> Outcome:
        keys = [self._prefix + c.key for c in checks]
        args: list[str] = [self._now_arg(now, event_time)]
        for c in checks:
            args += [repr(c.interval), str(c.capacity), repr(float(c.cost))]
        try:
            raw = await self._acquire(keys=keys, args=args)
        except (RedisError, OSError) as exc:
            raise LimiterUnavailable(str(exc)) from exc
        states = []
        for i in range(len(checks)):
            remaining, reset, retry = raw[2 + 3 * i : 5 + 3 * i]
            retry_f = float(retry)
            states.append(
                BucketState(int(remaining), float(reset), math.inf if retry_f < 0 else retry_f)
            )
        return Outcome(bool(int(raw[0])), tuple(states), float(raw[1]))

    async def adjust(
        self, checks: list[Check], deltas: list[float], now: float, *, event_time: bool = False
    ) -> None:
        pairs = [(c, d) for c, d in zip(checks, deltas, strict=True) if d != 0]
        if not pairs:
            return
        args: list[str] = [self._now_arg(now, event_time)]
        for c, d in pairs:
            args += [repr(c.interval), repr(float(d))]
        try:
            await self._adjust(keys=[self._prefix + c.key for c, _ in pairs], args=args)
        except (RedisError, OSError) as exc:
            raise LimiterUnavailable(str(exc)) from exc

    async def ping(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except (RedisError, OSError):
            return False

    async def close(self) -> None:
        await self._redis.aclose()
