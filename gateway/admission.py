"""This gateway's side of pool-wide live admission: ask before a live recording starts,
hold the stream's lease while it runs (also while it is parked for a resume), give it
back when it ends.

The decision itself is :mod:`shared.capacity` (how many streams the live workers carry)
and :mod:`shared.admission` (the count in Redis, shared by every gateway). A refusal is a
:class:`shared.protocol.ProtocolError` with code ``busy`` and ``retry_after_s``, which each
protocol renders in its own shape, before any audio-service stream is opened.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import redis.asyncio as aioredis
import redis.exceptions
import structlog
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_exponential

from shared import admission, metrics
from shared.capacity import Capacity, JobCosts, admission_limit, pool_capacity
from shared.config import Settings
from shared.heartbeats import live_workers
from shared.protocol import ErrorCode, ProtocolError

log = structlog.get_logger()

#: How long a decision may wait for Redis: the first command after a Redis restart meets a
#: connection the server has dropped, and the next one, on a new connection, succeeds.
DECIDE_RETRY_S = 1.5
STALE_CONNECTION = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


async def current_capacity(client: aioredis.Redis, settings: Settings) -> Capacity:
    workers = await live_workers(client)
    return pool_capacity(
        (JobCosts.from_dict(w.costs) for w in workers),
        settings.live_latency_target_s,
        settings.partial_interval_s,
    )


class LiveAdmission:
    def __init__(self, client: aioredis.Redis, settings: Settings) -> None:
        self.redis = client
        self.settings = settings
        self._held: dict[str, asyncio.Task[None]] = {}  # stream id -> its release watcher
        self._refresher: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._refresher = asyncio.create_task(self._refresh_forever())

    async def acquire(self, stream_id: str) -> None:
        """Admit a new live stream or raise ``busy``: at once, whatever the reason."""
        retry = self.settings.live_retry_after_s
        try:
            async for attempt in AsyncRetrying(
                retry=retry_if_exception_type(
                    (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
                ),
                stop=stop_after_delay(DECIDE_RETRY_S),
                wait=wait_exponential(multiplier=0.1, max=0.5),
                reraise=True,
            ):
                with attempt:
                    capacity = await current_capacity(self.redis, self.settings)
                    limit = admission_limit(capacity, self.settings.max_live_streams)
                    decision = await admission.admit(self.redis, stream_id, limit.streams)
        except Exception as exc:  # Redis away: nobody can tell whether the pool has room
            metrics.LIVE_REFUSALS.labels(reason="redis_unavailable").inc()
            log.warning("live_admission_failed", error=repr(exc)[:200])
            raise ProtocolError(
                ErrorCode.BUSY, "Live capacity cannot be checked now; try again shortly", retry_after_s=retry
            ) from exc
        if decision.admitted:
            log.info(
                "live_stream_admitted", stream_id=stream_id, streams=decision.streams, limit=limit.streams
            )
            return
        metrics.LIVE_REFUSALS.labels(reason=limit.reason).inc()
        log.info("live_stream_refused", reason=limit.reason, streams=decision.streams, limit=limit.streams)
        why = {
            "no_workers": "no transcription worker is running",
            "max_live_streams": f"{limit.streams} is the cap on live streams (S2T_MAX_LIVE_STREAMS)",
            "capacity": f"the workers can carry {capacity.describe()} at the latency target",
        }[limit.reason]
        raise ProtocolError(
            ErrorCode.BUSY,
            f"The service is busy: {why}, and {decision.streams} are running; try again in {retry:g} s",
            retry_after_s=retry,
        )

    def hold(self, stream_id: str, ended: asyncio.Event) -> None:
        """Keep the lease until ``ended`` is set (stop, close, a parked session's expiry),
        whichever connection holds the recording by then."""

        async def release_when_ended() -> None:
            try:
                await ended.wait()
            finally:
                self._held.pop(stream_id, None)
                with contextlib.suppress(Exception):  # Redis away: the lease ends by itself
                    await admission.release(self.redis, stream_id)

        self._held[stream_id] = asyncio.create_task(release_when_ended())

    async def release(self, stream_id: str) -> None:
        """Give back a lease taken for a recording that then failed to start."""
        with contextlib.suppress(Exception):
            await admission.release(self.redis, stream_id)

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(admission.LEASE_REFRESH_S)
            try:
                await admission.refresh(self.redis, list(self._held), time.time())
            except Exception as exc:
                log.warning("live_lease_refresh_failed", error=repr(exc)[:200])

    async def aclose(self) -> None:
        tasks = [t for t in (self._refresher, *self._held.values()) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
