"""Worker heartbeats: each worker refreshes one expiring key; readers see live workers.

A worker that dies stops refreshing and drops out within the key's TTL, which is how
the gateway's ``/health`` knows whether anyone can transcribe.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import redis
import redis.asyncio as aioredis

from shared import codec
from shared.redis_keys import WORKER_HEARTBEAT_TTL_S, WORKER_KEY_PREFIX, worker_key

#: How often a worker refreshes its heartbeat (its key lives ``WORKER_HEARTBEAT_TTL_S``).
HEARTBEAT_INTERVAL_S = 5.0
#: How long :func:`workers_for_new_work` waits for heartbeats after a Redis restart: one
#: beat, and a second for the beat to land.
RESTART_WAIT_S = HEARTBEAT_INTERVAL_S + 1.0


@dataclass
class WorkerInfo:
    id: str
    host: str
    pid: int
    models: list[str] = field(default_factory=list)
    busy: bool = False
    jobs_done: int = 0
    metrics_port: int | None = None  # where this worker serves /metrics and /health
    #: Running means of its live jobs' model time (:class:`shared.capacity.JobCosts`), from
    #: which the gateway works out how many live streams the pool can carry.
    costs: dict[str, float | None] | None = None
    started_at: float = field(default_factory=time.time)
    seen_at: float = field(default_factory=time.time)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def publish_heartbeat(client: redis.Redis, info: WorkerInfo) -> None:
    info.seen_at = time.time()
    client.set(worker_key(info.id), codec.dumps(info.as_dict()), ex=WORKER_HEARTBEAT_TTL_S)


def remove_heartbeat(client: redis.Redis, worker_id: str) -> None:
    client.delete(worker_key(worker_id))


def worker_alive(client: redis.Redis, worker_id: str) -> bool:
    """Whether this worker refreshed its heartbeat within the TTL (a dead one has not)."""
    return bool(client.exists(worker_key(worker_id)))


def any_worker_alive(client: redis.Redis) -> bool:
    """Whether any worker at all could take a job now (the reaper retries only then)."""
    return next(iter(client.scan_iter(match=f"{WORKER_KEY_PREFIX}*", count=100)), None) is not None


async def live_workers(client: aioredis.Redis) -> list[WorkerInfo]:
    keys = [k async for k in client.scan_iter(match=f"{WORKER_KEY_PREFIX}*", count=200)]
    if not keys:
        return []
    workers = []
    for raw in await client.mget(keys):
        if raw is None:
            continue
        try:
            data = codec.loads(raw)
            workers.append(WorkerInfo(**{k: data[k] for k in WorkerInfo.__dataclass_fields__ if k in data}))
        except Exception:  # a malformed key must not break /health
            continue
    return sorted(workers, key=lambda w: w.id)


async def workers_for_new_work(client: aioredis.Redis, wait_s: float = RESTART_WAIT_S) -> list[WorkerInfo]:
    """The live workers, for deciding whether new work (a file) can be taken. A Redis that
    just restarted holds no heartbeats until each worker beats again, and the first
    command after a restart meets a dropped connection; both looked like "no worker" and
    a file sent then got ``no_workers`` (twice in the 20-minute soak). So while Redis is
    unreachable or younger than ``wait_s``, this waits up to ``wait_s`` for a heartbeat;
    otherwise it answers at once, as before."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            if workers := await live_workers(client):
                return workers
            uptime = float((await client.info("server")).get("uptime_in_seconds", wait_s))
            recovering = uptime < wait_s
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
            recovering = True
        except redis.exceptions.ResponseError:  # INFO renamed away: no grace
            recovering = False
        if not recovering or time.monotonic() >= deadline:
            return []
        await asyncio.sleep(0.25)
