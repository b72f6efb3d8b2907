"""Worker heartbeats: each worker refreshes one expiring key; readers see live workers.

A worker that dies stops refreshing and drops out within the key's TTL, which is how
the gateway's ``/health`` knows whether anyone can transcribe.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import redis
import redis.asyncio as aioredis

from shared import codec
from shared.redis_keys import WORKER_HEARTBEAT_TTL_S, WORKER_KEY_PREFIX, worker_key


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
