"""Put transcription jobs on the RQ queues (msgpack payloads, bounded lifetime)."""

from __future__ import annotations

import redis
from rq import Queue

from shared.codec import MsgpackSerializer
from shared.config import Settings
from shared.jobs import TRANSCRIBE_FUNC, TranscriptionJob
from shared.redis_keys import QUEUE_FINAL, QUEUE_PARTIAL, queue_key, stream_key, sync_client
from shared.rq_job import UncompressedJob


class JobQueue:
    def __init__(self, settings: Settings, connection: redis.Redis | None = None) -> None:
        self._settings = settings
        connection = connection if connection is not None else sync_client(settings)
        self._queues = {
            name: Queue(queue, connection=connection, serializer=MsgpackSerializer, job_class=UncompressedJob)
            for name, queue in (("final", QUEUE_FINAL), ("partial", QUEUE_PARTIAL))
        }

    @property
    def redis(self) -> redis.Redis:
        return self._queues["final"].connection

    def mark_stream(self, stream_id: str, **fields: int) -> None:
        """Update a stream's job bookkeeping (see shared.redis_keys.stream_key): ``latest``
        job seq (older partials are skipped), ``revoked:<seq>`` (that candidate is void),
        ``cancelled`` (the client has gone: skip everything)."""
        key = stream_key(stream_id)
        pipe = self.redis.pipeline(transaction=False)
        pipe.hset(key, mapping=fields)
        pipe.expire(key, self._settings.job_ttl_s + self._settings.job_timeout_s)
        pipe.execute()

    def length(self) -> int:
        """Jobs waiting in Redis (both queues), for the ``S2T_MAX_QUEUE_LENGTH`` bound."""
        pipe = self.redis.pipeline(transaction=False)
        for name in (QUEUE_FINAL, QUEUE_PARTIAL):
            pipe.llen(queue_key(name))
        return int(sum(pipe.execute()))

    def partials_done(self, stream_id: str) -> int:
        """Seq of the last partial a worker finished or skipped for this stream."""
        done = self.redis.hget(stream_key(stream_id), "done")
        return int(done) if done is not None else 0

    def enqueue(self, jobs: list[TranscriptionJob], *, at_front: bool = False) -> None:
        """Enqueue every piece of a request at once, so idle workers take them in parallel.
        ``at_front``: a retry goes before newer work (its client has waited longest)."""
        for job in jobs:
            queue = self._queues["partial" if job.kind == "partial" else "final"]
            queue.enqueue_call(
                TRANSCRIBE_FUNC,
                args=(job.to_wire(),),
                timeout=self._settings.job_timeout_s,
                ttl=self._settings.job_ttl_s,  # a queued job nobody took in time expires
                result_ttl=0,  # results go over pub/sub; keep nothing
                failure_ttl=60,  # failed records hold audio: keep them briefly
                job_id=job.job_id,
                at_front=at_front,
                # RQ would otherwise describe the job by the repr of its arguments: the
                # audio. That costs milliseconds per job and puts audio bytes in logs.
                description=f"transcribe {job.job_id}",
            )
