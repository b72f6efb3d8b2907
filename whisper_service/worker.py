"""A worker process: load the default model, announce itself, then take jobs.

The queue's worker loop (:func:`shared.queue.run_worker_loop`) runs each job in this
process (no fork per job), so the model loaded here serves every job, finals before
partials. The job function may take more waiting jobs (finals first) to decode with the
one the queue started (``S2T_BATCH_SIZE``, see :func:`shared.queue.gather` and
:mod:`whisper_service.jobs`).
"""

from __future__ import annotations

import contextlib
import threading

import redis

from shared.config import Settings
from shared.heartbeats import HEARTBEAT_INTERVAL_S, remove_heartbeat
from shared.logging import configure_logging, log_settings
from shared.queue import run_worker_loop
from shared.redis_keys import sync_client
from whisper_service import context, control, status_server


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
    try:
        # A client of its own: the queue raises its socket timeout above the blocking pop.
        run_worker_loop(sync_client(settings), ctx.info.id)
    finally:
        stop.set()
        with contextlib.suppress(redis.exceptions.RedisError):  # it expires by itself
            remove_heartbeat(client, ctx.info.id)
        log.info("worker_stopped", worker_id=ctx.info.id)
