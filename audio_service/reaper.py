"""Jobs whose worker died mid-transcription: retried on another worker, then reported.

A SIGKILLed worker cannot answer, and RQ would only mark its job failed minutes later.
Every few seconds this reaper reads the in-flight claims (:mod:`shared.queue`); an
entry whose worker's heartbeat key has expired belongs to a dead worker. Winning the
entry (:meth:`~shared.queue.JobQueue.claim_orphan`) means only one reaper handles it,
however many audio services run; the job is then enqueued again at the front, at most
:data:`MAX_RETRIES` times and only while some worker is alive, otherwise its client gets
``error`` ``worker_lost`` with the utterance_id, so nothing is dropped silently.
"""

from __future__ import annotations

import threading
import time

import structlog

from audio_service.requeue import requeue_once
from shared import codec, protocol
from shared.heartbeats import any_worker_alive, worker_alive
from shared.queue import InflightEntry, JobQueue, settle
from shared.stream_ledger import StreamLedger

log = structlog.get_logger()

MAX_RETRIES = 2
REAP_INTERVAL_S = 2.0


def reap_once(queue: JobQueue, ledger: StreamLedger, max_retries: int = MAX_RETRIES) -> int:
    """One pass; returns how many orphaned jobs were handled."""
    handled = 0
    for entry in queue.inflight_entries():
        if worker_alive(queue.redis, entry.worker_id):
            continue
        if not queue.claim_orphan(entry.job_id):
            continue  # another reaper took it, or the worker finished after all
        handled += 1
        _recover(queue, ledger, entry, max_retries)
    return handled


def _recover(queue: JobQueue, ledger: StreamLedger, entry: InflightEntry, max_retries: int) -> None:
    routing = entry.routing_job()
    job = queue.take_dead_attempt(entry.job_id)  # its record holds audio: it is deleted
    # Handed on (a retry has an id of its own) or answered below: no requeue buffer of any
    # audio service may queue the dead attempt again.
    settle(queue.redis, entry.job_id)
    if queue.buffer is not None:
        queue.buffer.forget(entry.job_id)
    if routing.kind == "partial":
        # A partial is replaced by the next one anyway; only let the stream send it.
        ledger.mark_partial_done(routing)
        log.info("partial_lost", utterance_id=routing.utterance_id, worker_id=entry.worker_id)
        return
    if job is not None and routing.attempt < max_retries and any_worker_alive(queue.redis):
        job.attempt = routing.attempt + 1
        queue.enqueue([job], at_front=True)
        log.warning(
            "job_retried", utterance_id=job.utterance_id, attempt=job.attempt, dead_worker=entry.worker_id
        )
        return
    log.warning("worker_lost", utterance_id=routing.utterance_id, attempts=routing.attempt + 1)
    reply = protocol.error(
        protocol.ErrorCode.WORKER_LOST,
        f"The worker transcribing this utterance stopped ({routing.attempt + 1} attempt(s)); send it again",
        utterance_id=routing.utterance_id,
    )
    queue.redis.publish(routing.reply_channel, codec.dumps({**reply, **routing.routing(entry.worker_id)}))


def reap_forever(
    queue: JobQueue, ledger: StreamLedger, stop: threading.Event, interval_s: float = REAP_INTERVAL_S
) -> None:
    """The reaper thread's loop; Redis errors are logged and retried on the next pass. The
    requeue pass runs in the same thread, after the reaper's: the two never race over a
    dead worker's job (deleted, then queued again as a retry)."""
    while not stop.wait(interval_s):
        try:
            reap_once(queue, ledger)
        except Exception as exc:
            log.warning("reaper_error", error=str(exc))
        try:
            requeue_once(queue, time.monotonic())
        except Exception as exc:
            log.info("requeue_pass_failed", error=str(exc))
