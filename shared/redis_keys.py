"""Redis names (queues, channels, keys) and connection helpers, in one place: every
client of the project's Redis (plain or through Sentinel, see :mod:`shared.redis_url`)
is made here.

Reply channels carry a random token so that no client can guess, and subscribe to,
another client's channel.
"""

from __future__ import annotations

import secrets

import redis
import redis.asyncio as aioredis
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.sentinel import Sentinel

from shared.config import Settings
from shared.redis_url import SentinelUrl, is_sentinel_url, parse_sentinel_url

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

#: Sorted set of the live streams admitted pool-wide: stream id -> when its lease ends (unix
#: seconds). Every gateway shares it; a crashed gateway's streams drop out when their leases
#: end. Its operations belong to :mod:`shared.admission`.
LIVE_STREAMS_KEY = f"{PREFIX}:live:streams"


def new_reply_channel() -> str:
    return f"{PREFIX}:reply:{secrets.token_urlsafe(24)}"


def stream_key(stream_id: str) -> str:
    """Hash of a live stream's job bookkeeping; its fields belong to :mod:`shared.stream_ledger`."""
    return f"{PREFIX}:stream:{stream_id}"


def worker_key(worker_id: str) -> str:
    return f"{WORKER_KEY_PREFIX}{worker_id}"


#: Socket timeouts towards each Sentinel daemon (not the primary), in seconds.
SENTINEL_TIMEOUT_S = 2.0


def _options(settings: Settings, overrides: dict[str, object]) -> dict[str, object]:
    """S2T_REDIS_PASSWORD, when set, wins over a password in the URL; ``overrides`` (a
    caller's own timeouts) win over both."""
    options: dict[str, object] = {"health_check_interval": 30}
    if settings.redis_password is not None:
        options["password"] = settings.redis_password.get_secret_value()
    return {**options, **overrides}


def _sentinel_arguments(
    url: SentinelUrl, options: dict[str, object]
) -> tuple[list[tuple[str, int]], dict[str, object], dict[str, object]]:
    """(sentinels, how to reach the daemons, how to reach the primary). The daemons get
    their own credentials, never the primary's, and short timeouts unless the caller sets
    its own: they are asked one after another, so an unreachable one must not hold up the
    next for a TCP timeout."""
    daemon: dict[str, object] = {
        "socket_timeout": SENTINEL_TIMEOUT_S,
        "socket_connect_timeout": SENTINEL_TIMEOUT_S,
        **{k: v for k, v in options.items() if k.startswith("socket_")},
    }
    if url.sentinel_username:
        daemon["username"] = url.sentinel_username
    if url.sentinel_password:
        daemon["password"] = url.sentinel_password
    primary: dict[str, object] = {"db": url.db}
    if url.username:
        primary["username"] = url.username
    if url.password:
        primary["password"] = url.password
    return list(url.sentinels), daemon, {**primary, **options}


def sync_client(settings: Settings, **overrides: object) -> redis.Redis:
    """A client of the Redis at S2T_REDIS_URL; for a Sentinel URL, of the current primary,
    found again through the Sentinels whenever a connection is made (after a failover)."""
    options = _options(settings, overrides)
    if not is_sentinel_url(settings.redis_url):
        return redis.Redis.from_url(settings.redis_url, **options)
    parsed = parse_sentinel_url(settings.redis_url)
    sentinels, daemon, primary = _sentinel_arguments(parsed, options)
    return Sentinel(sentinels, sentinel_kwargs=daemon).master_for(parsed.service_name, **primary)


def async_client(settings: Settings, **overrides: object) -> aioredis.Redis:
    """The asyncio twin of :func:`sync_client`."""
    options = _options(settings, overrides)
    if not is_sentinel_url(settings.redis_url):
        return aioredis.Redis.from_url(settings.redis_url, **options)
    parsed = parse_sentinel_url(settings.redis_url)
    sentinels, daemon, primary = _sentinel_arguments(parsed, options)
    return AsyncSentinel(sentinels, sentinel_kwargs=daemon).master_for(parsed.service_name, **primary)


#: A job a worker answered (or skipped, or the reaper handed on): the audio service's
#: requeue buffer (:mod:`shared.requeue`) forgets it instead of queueing it again.
SETTLED_KEY_PREFIX = f"{PREFIX}:settled:"
SETTLED_TTL_S = 300


def settled_key(job_id: str) -> str:
    return f"{SETTLED_KEY_PREFIX}{job_id}"
