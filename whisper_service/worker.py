"""A worker process: load the default model, announce itself, then take jobs.

RQ's SimpleWorker runs each job in this process (no fork per job), so the model
loaded here serves every job. Finals are listed before partials, and RQ always
pops from the first non-empty queue, which is how finals outrank partials.
"""

from __future__ import annotations

import threading

from rq import SimpleWorker

from shared.codec import MsgpackSerializer
from shared.config import Settings
from shared.heartbeats import remove_heartbeat
from shared.logging import configure_logging, log_settings
from shared.redis_keys import QUEUES, sync_client
from whisper_service import context, control, status_server

HEARTBEAT_INTERVAL_S = 5.0


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
    worker = SimpleWorker(
        list(QUEUES),
        connection=sync_client(settings),
        serializer=MsgpackSerializer,
        name=ctx.info.id,
        log_job_description=False,
    )
    try:
        worker.work(with_scheduler=False, logging_level="WARNING")
    finally:
        stop.set()
        remove_heartbeat(client, ctx.info.id)
        log.info("worker_stopped", worker_id=ctx.info.id)
