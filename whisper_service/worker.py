"""A worker process: load the default model, announce itself, then take jobs.

RQ's SimpleWorker runs each job in this process (no fork per job), so the model
loaded here serves every job. Finals are listed before partials, and RQ always
pops from the first non-empty queue, which is how finals outrank partials. The job
function may take more waiting jobs (finals first) to decode with the one RQ started
(``S2T_BATCH_SIZE``, see :mod:`whisper_service.gather` and :mod:`whisper_service.jobs`).
"""

from __future__ import annotations

import contextlib
import threading
from types import FrameType

import redis
import structlog
from rq import SimpleWorker
from rq.exceptions import StopRequested
from tenacity import Retrying, retry_if_exception_type, wait_exponential

from shared.codec import MsgpackSerializer
from shared.config import Settings
from shared.heartbeats import remove_heartbeat
from shared.logging import configure_logging, log_settings
from shared.redis_keys import QUEUES, sync_client
from whisper_service import context, control, status_server

HEARTBEAT_INTERVAL_S = 5.0
REDIS_WAIT_MAX_S = 10.0


class _Worker(SimpleWorker):
    """Remembers a shutdown signal, so that :func:`_work_until_stopped` can tell a
    requested stop from RQ giving up: RQ leaves its loop on any Redis error outside its
    blocking pop (a job's bookkeeping, the heartbeat after it), and a worker must
    outlive a Redis restart, not die with it."""

    stopping = False

    def request_stop(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True
        super().request_stop(signum, frame)


def _rejoin(worker: _Worker) -> None:
    """Once Redis answers again, mark the previous run dead so RQ accepts the name anew.
    Gives up when a shutdown signal comes meanwhile (RQ's handler then raises, as it
    cannot reach Redis, or raises StopRequested)."""
    with contextlib.suppress(redis.exceptions.RedisError, StopRequested):
        for attempt in Retrying(
            retry=retry_if_exception_type(redis.exceptions.RedisError),
            wait=wait_exponential(multiplier=0.5, max=REDIS_WAIT_MAX_S),
            stop=lambda _: worker.stopping,
            reraise=True,
        ):
            with attempt:
                worker.connection.ping()
                worker.register_death()


def _work_until_stopped(worker: _Worker) -> None:
    log = structlog.get_logger()
    while not worker.stopping:
        try:
            worker.work(with_scheduler=False, logging_level="WARNING")
        except redis.exceptions.RedisError as exc:  # raised by RQ's own teardown
            log.warning("worker_loop_redis_error", error=str(exc))
        if worker.stopping:
            return
        log.warning("worker_loop_restarting", worker_id=worker.name)
        _rejoin(worker)


def _heartbeat_forever(ctx: context.WorkerContext, stop: threading.Event) -> None:
    while not stop.is_set():
        ctx.announce()
        stop.wait(HEARTBEAT_INTERVAL_S)


def run_worker(settings: Settings) -> None:
    log = configure_logging(settings, "whisper_service")
    log_settings(log, settings)
    client = sync_client(settings)
    ctx = context.WorkerContext.create(settings, client)
    context.install(ctx)
    log.info("worker_starting", worker_id=ctx.info.id, cpu_threads=settings.effective_cpu_threads())
    ctx.models.get(settings.model)
    if settings.worker_metrics_port and (
        server := status_server.start(ctx, settings.worker_metrics_host, settings.worker_metrics_port)
    ):
        ctx.info.metrics_port = server.server_address[1]

    stop = threading.Event()
    threading.Thread(target=_heartbeat_forever, args=(ctx, stop), daemon=True, name="heartbeat").start()
    threading.Thread(target=control.listen_forever, args=(ctx, stop), daemon=True, name="control").start()
    # RQ raises the socket timeout above its blocking pop; a fresh client has no pooled
    # connection that still carries the short default.
    worker = _Worker(
        list(QUEUES),
        connection=sync_client(settings),
        serializer=MsgpackSerializer,
        name=ctx.info.id,
        log_job_description=False,
    )
    try:
        _work_until_stopped(worker)
    finally:
        stop.set()
        with contextlib.suppress(redis.exceptions.RedisError):  # it expires by itself
            remove_heartbeat(client, ctx.info.id)
        log.info("worker_stopped", worker_id=ctx.info.id)
