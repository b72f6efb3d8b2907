"""Redis names (queues, channels, keys) and connection helpers, in one place.

Reply channels carry a random token so that no client can guess, and subscribe to,
another client's channel.
"""

from __future__ import annotations

import secrets

import redis
import redis.asyncio as aioredis

from shared.config import Settings

PREFIX = "s2t"

#: Queue names, highest priority first; workers listen in this order (see :mod:`shared.queue`).
QUEUE_FINAL = f"{PREFIX}-final"
QUEUE_PARTIAL = f"{PREFIX}-partial"
QUEUES = (QUEUE_FINAL, QUEUE_PARTIAL)

#: Every worker listens here for pool-wide commands (model loads).
CONTROL_CHANNEL = f"{PREFIX}:control"

#: Worker heartbeats: one key per worker, expiring unless refreshed.
WORKER_KEY_PREFIX = f"{PREFIX}:worker:"
WORKER_HEARTBEAT_TTL_S = 15


#: Hash of jobs being transcribed right now: RQ job id -> msgpack of the worker that
#: took it and the job's routing fields (never its audio). The audio service's reaper
#: retries or reports the entries whose worker's heartbeat has gone (see :mod:`shared.queue`).
INFLIGHT_KEY = f"{PREFIX}:inflight"


def new_reply_channel() -> str:
    return f"{PREFIX}:reply:{secrets.token_urlsafe(24)}"


def stream_key(stream_id: str) -> str:
    """Hash of a live stream's job bookkeeping; its fields belong to :mod:`shared.stream_ledger`."""
    return f"{PREFIX}:stream:{stream_id}"


def worker_key(worker_id: str) -> str:
    return f"{WORKER_KEY_PREFIX}{worker_id}"


def _options(settings: Settings) -> dict[str, object]:
    """S2T_REDIS_PASSWORD, when set, wins over a password in the URL."""
    options: dict[str, object] = {"health_check_interval": 30}
    if settings.redis_password is not None:
        options["password"] = settings.redis_password.get_secret_value()
    return options


def sync_client(settings: Settings) -> redis.Redis:
    return redis.Redis.from_url(settings.redis_url, **_options(settings))


def async_client(settings: Settings) -> aioredis.Redis:
    return aioredis.Redis.from_url(settings.redis_url, **_options(settings))


#: A job a worker answered (or skipped, or the reaper handed on): the audio service's
#: requeue buffer (:mod:`shared.requeue`) forgets it instead of queueing it again.
SETTLED_KEY_PREFIX = f"{PREFIX}:settled:"
SETTLED_TTL_S = 300


def settled_key(job_id: str) -> str:
    return f"{SETTLED_KEY_PREFIX}{job_id}"
