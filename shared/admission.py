"""Pool-wide admission of live streams: the set of admitted streams lives in Redis, so
every gateway replica in front of one worker pool counts the same streams.

A stream holds a lease (its score in :data:`shared.redis_keys.LIVE_STREAMS_KEY`, the unix
time it ends), refreshed by the gateway that holds it every :data:`LEASE_REFRESH_S`; a
gateway that crashes stops refreshing and its streams drop out within :data:`LEASE_TTL_S`.
Admission is one Lua script, so two gateways asking at once can never both take the last
place: it drops ended leases, then admits only while the count is under the limit.
Times are the gateways' clocks (kept in step by NTP; a few seconds of skew only shifts
when a crashed gateway's leases end).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

import redis.asyncio as aioredis

from shared.redis_keys import LIVE_STREAMS_KEY

LEASE_TTL_S = 30.0
LEASE_REFRESH_S = 10.0

_ADMIT = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZSCORE', KEYS[1], ARGV[3]) then
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
  return {1, redis.call('ZCARD', KEYS[1])}
end
local count = redis.call('ZCARD', KEYS[1])
if count < tonumber(ARGV[4]) then
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
  return {1, count + 1}
end
return {0, count}
"""


@dataclass(frozen=True)
class Decision:
    admitted: bool
    streams: int  # admitted streams pool-wide after the decision


async def admit(client: aioredis.Redis, stream_id: str, limit: int, now: float | None = None) -> Decision:
    """Admit ``stream_id`` if fewer than ``limit`` streams hold a lease (one already
    admitted stays admitted and has its lease renewed)."""
    now = time.time() if now is None else now
    admitted, streams = await client.eval(  # type: ignore[misc]
        _ADMIT, 1, LIVE_STREAMS_KEY, now, now + LEASE_TTL_S, stream_id, limit
    )
    return Decision(bool(admitted), int(streams))


async def refresh(client: aioredis.Redis, stream_ids: Iterable[str], now: float | None = None) -> None:
    """Renew the leases of streams still running; after a Redis restart (an empty set) this
    puts them back, so the running streams count again."""
    ids = list(stream_ids)
    if ids:
        until = (time.time() if now is None else now) + LEASE_TTL_S
        await client.zadd(LIVE_STREAMS_KEY, dict.fromkeys(ids, until))


async def release(client: aioredis.Redis, stream_id: str) -> None:
    await client.zrem(LIVE_STREAMS_KEY, stream_id)


async def admitted_count(client: aioredis.Redis, now: float | None = None) -> int:
    """Streams holding a lease now, pool-wide."""
    now = time.time() if now is None else now
    return int(await client.zcount(LIVE_STREAMS_KEY, now, "+inf"))
