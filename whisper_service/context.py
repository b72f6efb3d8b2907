"""The state one worker process keeps between jobs: its id, Redis client and models.

RQ calls jobs as plain functions, so the job function finds the process's context
here; :func:`install` is called once by the worker's main before it takes jobs.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass, field

import redis
import structlog

from shared import codec
from shared.capacity import JobCosts
from shared.config import Settings
from shared.heartbeats import WorkerInfo, publish_heartbeat
from shared.queue import note_redis_server
from whisper_service.backends import load_transcriber
from whisper_service.model_cache import ModelCache


@dataclass
class WorkerContext:
    settings: Settings
    redis: redis.Redis
    models: ModelCache
    info: WorkerInfo
    #: This worker's live job costs, published with every heartbeat (:mod:`shared.capacity`).
    costs: JobCosts = field(default_factory=JobCosts)

    @classmethod
    def create(cls, settings: Settings, client: redis.Redis) -> WorkerContext:
        threads = settings.effective_cpu_threads()

        def loader(name: str):  # type: ignore[no-untyped-def]
            return load_transcriber(
                name, device=settings.device, compute_type=settings.compute_type, cpu_threads=threads
            )

        worker_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        info = WorkerInfo(id=worker_id, host=socket.gethostname(), pid=os.getpid())
        return cls(settings, client, ModelCache(loader, settings.max_models), info)

    def announce(self) -> None:
        """Refresh this worker's heartbeat now; called on the beat and right after the
        set of loaded models changed, so ``/api/status`` shows loads and evictions at once.
        Never raises: a missed beat is retried by the next one."""
        self.info.models = self.models.names()
        self.info.costs = self.costs.as_dict()
        try:
            publish_heartbeat(self.redis, self.info)
            note_redis_server(self.redis)  # so that a failover to a new primary is noticed
        except Exception as exc:
            structlog.get_logger().warning("heartbeat_failed", error=str(exc))

    def publish(self, channel: str, message: dict[str, object]) -> None:
        self.redis.publish(channel, codec.dumps(message))


_current: WorkerContext | None = None


def install(ctx: WorkerContext) -> None:
    global _current
    _current = ctx


def current() -> WorkerContext:
    if _current is None:
        raise RuntimeError("whisper_service job run outside a worker process")
    return _current
