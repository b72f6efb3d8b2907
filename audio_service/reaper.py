"""Jobs whose worker died mid-transcription: retried on another worker, then reported.

A SIGKILLed worker cannot answer, and RQ would only mark its job failed minutes later.
Every few seconds this reaper reads the in-flight hash (``shared/inflight.py``); an
entry whose worker's heartbeat key has expired belongs to a dead worker. Removing the
entry with HDEL is the claim (only one reaper wins it, however many audio services run);
the job is then enqueued again at the front, at most :data:`MAX_RETRIES` times and only
while some worker is alive, otherwise its client gets ``error`` ``worker_lost`` with the
utterance_id, so nothing is dropped silently.
"""

from __future__ import annotations

import contextlib
import threading

import redis
import structlog
from rq.job import Job

from audio_service.enqueue import JobQueue
from shared import codec, inflight, protocol
from shared.codec import MsgpackSerializer
from shared.jobs import TranscriptionJob
from shared.redis_keys import INFLIGHT_KEY, WORKER_KEY_PREFIX, worker_key

log = structlog.get_logger()

MAX_RETRIES = 2
REAP_INTERVAL_S = 2.0


def reap_once(queue: JobQueue, max_retries: int = MAX_RETRIES) -> int:
    """One pass; returns how many orphaned jobs were handled."""
    client = queue.redis
    handled = 0
    for entry in inflight.entries(client):
        if client.exists(worker_key(entry.worker_id)):
            continue
        if not client.hdel(INFLIGHT_KEY, entry.job_id):
            continue  # another reaper took it, or the worker finished after all
        handled += 1
        _recover(queue, client, entry, max_retries)
    return handled


def _recover(queue: JobQueue, client: redis.Redis, entry: inflight.InflightEntry, max_retries: int) -> None:
    routing = entry.routing_job()
    old = None
    with contextlib.suppress(Exception):
        old = Job.fetch(entry.job_id, connection=client, serializer=MsgpackSerializer)
    payload = old.args[0] if old is not None and old.args else None
    if old is not None:
        with contextlib.suppress(Exception):
            old.delete()  # the dead attempt's record holds audio: do not keep it
    if routing.kind == "partial":
        # A partial is replaced by the next one anyway; only let the stream send it.
        if routing.stream_id is not None:
            queue.mark_stream(routing.stream_id, done=routing.seq)  # keeps the key's expiry
        log.info("partial_lost", utterance_id=routing.utterance_id, worker_id=entry.worker_id)
        return
    if isinstance(payload, dict) and routing.attempt < max_retries and _any_worker(client):
        job = TranscriptionJob.from_wire(payload)
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
    client.publish(routing.reply_channel, codec.dumps({**reply, **routing.routing(entry.worker_id)}))


def _any_worker(client: redis.Redis) -> bool:
    return next(iter(client.scan_iter(match=f"{WORKER_KEY_PREFIX}*", count=100)), None) is not None


def reap_forever(queue: JobQueue, stop: threading.Event, interval_s: float = REAP_INTERVAL_S) -> None:
    """The reaper thread's loop; Redis errors are logged and retried on the next pass."""
    while not stop.wait(interval_s):
        try:
            reap_once(queue)
        except Exception as exc:
            log.warning("reaper_error", error=str(exc))
