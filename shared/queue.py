"""The job queue: the project's only contact with RQ.

Every service talks to the queue through the typed operations here, so RQ's key names,
its job records and its private members are known in one module, and an RQ upgrade is
checked against one file (``tests/test_queue_contract.py`` pins what this one relies on).

- The audio service :meth:`JobQueue.enqueue`\\ s pieces (finals and partials on their own
  queues; msgpack payloads, never pickle; a bounded lifetime) and bounds the backlog
  with :meth:`JobQueue.length`.
- A worker runs :func:`run_worker_loop`; inside the job function :func:`started` names the
  job RQ started, :func:`gather` takes more waiting jobs for the same batch, and
  :func:`claim` / :func:`release` keep the in-flight hash that lets a dead worker's job
  be retried.
- The audio service's reaper reads that hash (:meth:`JobQueue.inflight_entries`), wins an
  orphan with :meth:`JobQueue.claim_orphan` and reads back (and deletes) the dead
  attempt with :meth:`JobQueue.take_dead_attempt`.
- The gateway reads :func:`queue_depths_async` for ``/metrics`` and ``/api/status``.
- Redis restarts: the audio service's :class:`JobQueue` keeps what it queued in a
  :class:`~shared.requeue.RequeueBuffer` (an enqueue that fails while Redis is away waits
  there); workers :func:`settle` each job they answer or skip, and
  :meth:`JobQueue.job_states` tells the requeue pass which kept jobs Redis still holds.

Why batching takes jobs off RQ's lists itself (:func:`gather`): RQ hands a worker one job
at a time. When more jobs wait behind it, the model does more work per second if it sees
several at once, so the job function takes up to ``S2T_BATCH_SIZE - 1`` more of them
straight off RQ's queue lists (finals first, like RQ itself) and answers each on its own
reply channel. It never waits for more jobs to arrive: with nothing waiting, a job runs
exactly as it would alone. RQ's bookkeeping for a job taken that way stays sane:

- it is popped from the queue list (``LPOP``), so no other worker, nor RQ, runs it again;
- its record is made persistent while it runs (what RQ does for the jobs it starts), so
  that the reaper can still read its audio and retry it if this worker dies; the caller
  claims it (:func:`claim`) right away;
- when answered, its record is deleted, as RQ does for a finished job with ``result_ttl=0``;
- a job for another model is pushed back to the FRONT of its queue and gathering stops
  there (partials are not looked at either), so queue order and the priority of finals
  are kept and that job is the next one any worker takes.

Why the in-flight hash (:data:`shared.redis_keys.INFLIGHT_KEY`): RQ notices an abandoned
job only in its periodic maintenance (minutes) and then merely marks it failed. Instead
each worker records the job it starts and removes it when done; the reaper retries or
reports entries whose worker's heartbeat has expired. An entry holds routing fields
only, never audio or text.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any

import redis
import redis.asyncio as aioredis
import structlog
from rq import Queue, SimpleWorker, get_current_job
from rq.exceptions import NoSuchJobError, StopRequested
from rq.job import Job
from rq.timeouts import JobTimeoutException
from tenacity import Retrying, retry_if_exception_type, wait_exponential

from shared import codec
from shared.codec import MsgpackSerializer
from shared.config import Settings
from shared.jobs import TRANSCRIBE_FUNC, TranscriptionJob
from shared.redis_keys import (
    INFLIGHT_KEY,
    QUEUE_FINAL,
    QUEUE_PARTIAL,
    QUEUES,
    SETTLED_TTL_S,
    settled_key,
    sync_client,
)
from shared.requeue import RequeueBuffer

__all__ = [
    "JOB_KEY_PATTERN",
    "InflightEntry",
    "JobQueue",
    "JobState",
    "JobTimeout",
    "Taken",
    "claim",
    "gather",
    "job_key",
    "note_redis_server",
    "queue_depths",
    "queue_depths_async",
    "queue_key",
    "redis_restarted_within",
    "release",
    "run_worker_loop",
    "settle",
    "started",
    "stop_requested",
]

log = structlog.get_logger()

#: Raised inside the job function when RQ's time limit for the job fires (SIGALRM).
JobTimeout = JobTimeoutException

#: Where RQ keeps a queue's waiting job ids (a list) and each job's record (a hash);
#: rq.Queue.redis_queue_namespace_prefix and rq.job.Job.redis_job_namespace_prefix.
_QUEUE_PREFIX = "rq:queue:"
_JOB_PREFIX = "rq:job:"
#: Every job record, for checks that no audio is left behind.
JOB_KEY_PATTERN = f"{_JOB_PREFIX}*"

#: A failed record holds audio: keep it briefly.
FAILURE_TTL_S = 60
#: How long the worker loop waits at most between attempts to reach Redis again.
REDIS_WAIT_MAX_S = 10.0
#: What "Redis is away" raises: the requeue buffer keeps the job instead.
REDIS_AWAY = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


def queue_key(queue_name: str) -> str:
    """The Redis list RQ keeps a queue's waiting job ids in."""
    return f"{_QUEUE_PREFIX}{queue_name}"


def job_key(job_id: str) -> str:
    """The Redis hash of one job's record (its payload: audio)."""
    return f"{_JOB_PREFIX}{job_id}"


class UncompressedJob(Job):
    """RQ job records whose payload is stored as is, not zlib-compressed.

    RQ compresses every job's data with zlib when it saves the record. Our payload is
    mostly 16-bit PCM, which zlib shrinks by about 12 % at a cost of about 12 ms per 11 s
    of audio: on the path of every file and every live utterance, for nothing. RQ's own
    ``Job.restore`` already falls back to uncompressed data when ``zlib.decompress``
    fails (a msgpack array never starts with a zlib header), so workers, the reaper and
    :func:`gather` read these records with stock RQ."""

    def to_dict(self, include_meta: bool = True, include_result: bool = True) -> dict[str, Any]:
        data = self.data
        self._data = b""  # RQ compresses this one: nothing
        try:
            record = super().to_dict(include_meta=include_meta, include_result=include_result)
        finally:
            self._data = data
        record["data"] = data
        return record


@dataclass
class Taken:
    """A job in a batch: the one RQ started (``gathered`` False) or one :func:`gather` took."""

    job: TranscriptionJob
    rq_id: str | None
    queue: str | None
    gathered: bool = False


@dataclass
class InflightEntry:
    job_id: str
    worker_id: str
    queue: str
    started_at: float
    job: dict[str, Any]  # TranscriptionJob.to_wire() without ``pcm``

    def routing_job(self) -> TranscriptionJob:
        """The job without its audio: enough to address a reply to its client."""
        return TranscriptionJob.from_wire({**self.job, "pcm": b""})


@dataclass(frozen=True)
class JobState:
    held: bool  # Redis has its record or a worker's claim on it
    settled: bool  # answered, skipped or handed on (:func:`settle`)


class JobQueue:
    """The producer's side (audio service, reaper): enqueue, backlog, orphans."""

    def __init__(
        self,
        settings: Settings,
        connection: redis.Redis | None = None,
        buffer: RequeueBuffer | None = None,
    ) -> None:
        self._settings = settings
        self._buffer = buffer
        self._away = False  # an enqueue found Redis away; the next answered pass clears it
        self._redis = connection if connection is not None else sync_client(settings)
        self._queues = {
            name: Queue(name, connection=self._redis, serializer=MsgpackSerializer, job_class=UncompressedJob)
            for name in QUEUES
        }

    @property
    def redis(self) -> redis.Redis:
        return self._redis

    @property
    def buffer(self) -> RequeueBuffer | None:
        return self._buffer

    @property
    def redis_away(self) -> bool:
        """Whether Redis was away at the last try. Meanwhile enqueues go straight to the
        buffer and callers skip Redis: each attempt on a stopped Redis costs seconds of
        redis-py's own retries, and a live stream must not stall on them."""
        return self._away

    def enqueue(self, jobs: list[TranscriptionJob], *, at_front: bool = False) -> None:
        """Enqueue every piece of a request at once, so idle workers take them in parallel.
        ``at_front``: a retry goes before newer work (its client has waited longest).

        With a requeue buffer, each final and file piece is kept there too, and one that
        cannot be enqueued because Redis is away waits there rather than failing (the
        requeue pass queues it once Redis answers); a partial then raises as without one."""
        for job in jobs:
            buffered = self._buffer is not None and self._buffer.wants(job)
            try:
                if self._away and buffered:
                    raise redis.exceptions.ConnectionError("Redis was away at the last try")
                self._enqueue_one(job, at_front=at_front)
            except REDIS_AWAY:
                if not buffered:
                    raise
                self._away = True
                log.warning("enqueue_deferred", job_id=job.job_id)
            if self._buffer is not None:
                # After the attempt, never before: a pass meanwhile must not queue it twice.
                self._buffer.add(job, time.monotonic())

    def buffer_has_room(self, jobs: list[TranscriptionJob]) -> bool:
        """Whether ``jobs`` would wait in the requeue buffer with their audio (Redis away)."""
        return self._buffer is not None and self._buffer.has_room(jobs)

    def check_redis(self) -> None:
        """Clears :attr:`redis_away` once Redis answers (raises while it does not)."""
        self._redis.ping()
        self._away = False

    def requeue(self, job: TranscriptionJob) -> None:
        """Queue a kept job again, under the same id, before newer work."""
        self._enqueue_one(job, at_front=True)

    def _enqueue_one(self, job: TranscriptionJob, *, at_front: bool) -> None:
        queue = self._queues[QUEUE_PARTIAL if job.kind == "partial" else QUEUE_FINAL]
        queue.enqueue_call(
            TRANSCRIBE_FUNC,
            args=(job.to_wire(),),
            timeout=self._settings.job_timeout_s,
            ttl=self._settings.job_ttl_s,  # a queued job nobody took in time expires
            result_ttl=0,  # results go over pub/sub; keep nothing
            failure_ttl=FAILURE_TTL_S,
            job_id=job.job_id,
            at_front=at_front,
            # RQ would otherwise describe the job by the repr of its arguments: the
            # audio. That costs milliseconds per job and puts audio bytes in logs.
            description=f"transcribe {job.job_id}",
        )

    def job_states(self, job_ids: list[str]) -> dict[str, JobState]:
        """Per job: whether Redis holds it (its record, waiting or running, or a worker's
        claim) and whether it was settled. One round trip."""
        pipe = self._redis.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.exists(job_key(job_id))
            pipe.hexists(INFLIGHT_KEY, job_id)
            pipe.exists(settled_key(job_id))
        flags = pipe.execute()
        self._away = False
        return {
            job_id: JobState(held=bool(flags[3 * i] or flags[3 * i + 1]), settled=bool(flags[3 * i + 2]))
            for i, job_id in enumerate(job_ids)
        }

    def length(self) -> int:
        """Jobs waiting in Redis (both queues), for the ``S2T_MAX_QUEUE_LENGTH`` bound;
        raises at once while :attr:`redis_away`."""
        if self._away:
            raise redis.exceptions.ConnectionError("Redis was away at the last try")
        try:
            return sum(queue_depths(self._redis).values())
        except REDIS_AWAY:
            self._away = self._buffer is not None
            raise

    def inflight_entries(self) -> list[InflightEntry]:
        """Every job a worker has claimed and not yet released; a malformed entry is dropped
        rather than blocking the reaper."""
        out = []
        for job_id, raw in self._redis.hgetall(INFLIGHT_KEY).items():
            try:
                data = codec.loads(raw)
                out.append(
                    InflightEntry(
                        job_id=job_id.decode() if isinstance(job_id, bytes) else str(job_id),
                        worker_id=str(data["worker"]),
                        queue=str(data["queue"]),
                        started_at=float(data["at"]),
                        job=dict(data["job"]),
                    )
                )
            except Exception:
                self._redis.hdel(INFLIGHT_KEY, job_id)
        return out

    def claim_orphan(self, job_id: str) -> bool:
        """Take an entry away from its (dead) worker. Removing it is the claim: only one
        reaper wins it, however many audio services run; False when another reaper took it
        or the worker finished after all."""
        return bool(self._redis.hdel(INFLIGHT_KEY, job_id))

    def take_dead_attempt(self, job_id: str) -> TranscriptionJob | None:
        """The dead attempt's job with its audio (None when its record is gone or is not
        a transcription job); its record is deleted either way, as it holds audio."""
        try:
            old = Job.fetch(job_id, connection=self._redis, serializer=MsgpackSerializer)
        except Exception:
            return None
        payload = None
        with contextlib.suppress(Exception):
            payload = old.args[0] if old.args else None
        with contextlib.suppress(Exception):
            old.delete()
        if not isinstance(payload, dict):
            return None
        try:
            return TranscriptionJob.from_wire(payload)
        except Exception:
            return None


def queue_depths(client: redis.Redis) -> dict[str, int]:
    """Jobs waiting per queue, finals first."""
    pipe = client.pipeline(transaction=False)
    for name in QUEUES:
        pipe.llen(queue_key(name))
    return {name: int(n) for name, n in zip(QUEUES, pipe.execute(), strict=True)}


async def queue_depths_async(client: aioredis.Redis) -> dict[str, int]:
    """:func:`queue_depths` for the gateway's async client."""
    return {name: int(await client.llen(queue_key(name))) for name in QUEUES}


# --- the worker's side ------------------------------------------------------------------


def started(job: TranscriptionJob) -> Taken:
    """The job RQ started in this process, as the first of its batch."""
    rq_job = get_current_job()
    return Taken(job, rq_job.id if rq_job else None, rq_job.origin if rq_job else None)


def claim(client: redis.Redis, taken: Taken, worker_id: str) -> None:
    """If this worker dies from now on, the reaper retries the job elsewhere."""
    if taken.rq_id is None:
        return
    wire = {k: v for k, v in taken.job.to_wire().items() if k != "pcm"}
    entry = {"worker": worker_id, "queue": taken.queue or "", "at": time.time(), "job": wire}
    client.hset(INFLIGHT_KEY, taken.rq_id, codec.dumps(entry))


class ServerWatch:
    """Which Redis server (by ``run_id``) this process talks to, and since when.

    A restart shows in the server's uptime, but a Sentinel failover does not: the replica
    promoted to primary has been up all along, yet it holds none of the old primary's
    subscriptions. So a server first seen after another one counts as new from the moment
    this process first saw it. The first server a process sees is not new (it was there
    before the process); the worker's heartbeat notes it every beat, so a failover is
    noticed by whichever call (beat or reply) meets the new primary first.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._current: str | None = None
        self._since = float("-inf")  # monotonic time this process first saw ``_current``

    def seen(self, run_id: str, now: float) -> float:
        """Note ``run_id``; how long ago (monotonic seconds) this process first saw it."""
        with self._lock:
            if run_id != self._current:
                self._since = now if self._current is not None else float("-inf")
                self._current = run_id
            return now - self._since


SERVER_WATCH = ServerWatch()


def note_redis_server(client: redis.Redis) -> None:
    """Record which server answers now (see :class:`ServerWatch`); never raises."""
    with contextlib.suppress(redis.exceptions.RedisError):
        if run_id := client.info("server").get("run_id"):
            SERVER_WATCH.seen(str(run_id), time.monotonic())


def redis_restarted_within(client: redis.Redis, seconds: float) -> bool:
    """Whether the Redis server started, or became the one this process talks to (a
    Sentinel failover), less than ``seconds`` ago: what lived only in the old one
    (subscriptions, heartbeats) may still be on its way back. False where INFO is not
    served (renamed away on a managed Redis, fakeredis): no grace then, as before."""
    try:
        info = client.info("server")
    except redis.exceptions.ResponseError:
        return False
    if float(info.get("uptime_in_seconds", seconds)) < seconds:
        return True
    run_id = info.get("run_id")
    return run_id is not None and SERVER_WATCH.seen(str(run_id), time.monotonic()) < seconds


def settle(client: redis.Redis, job_id: str | None) -> None:
    """The job needs nobody's copy any more (answered, skipped, or retried under another
    id): the audio service's requeue buffer forgets it. Called before :func:`release`, so
    that a kept job always has its record, its claim or this mark, and is never taken for
    lost while it is merely finishing."""
    if job_id is not None:
        client.set(settled_key(job_id), 1, ex=SETTLED_TTL_S)


def release(client: redis.Redis, taken: Taken) -> None:
    """The job is answered or skipped: drop its claim, and the record of a gathered job
    (RQ deletes the one it started itself, ``result_ttl=0``)."""
    if taken.rq_id is None:
        return
    client.hdel(INFLIGHT_KEY, taken.rq_id)
    if taken.gathered:
        client.delete(job_key(taken.rq_id))


def gather(client: redis.Redis, model: str, limit: int, accept: Callable[[Taken], bool]) -> list[Taken]:
    """Up to ``limit`` jobs for ``model`` that are waiting now, finals first (see the module
    docstring). ``accept`` sees each job as soon as it is taken (to claim it) and may settle
    it there (a superseded partial is skipped): a job it refuses does not count towards
    ``limit``."""
    taken: list[Taken] = []
    for name in QUEUES:
        key = queue_key(name)
        while len(taken) < limit:
            raw = client.lpop(key)
            if raw is None:
                break
            job_id = raw.decode() if isinstance(raw, bytes) else str(raw)
            try:
                job = _fetch(client, job_id)
            except NoSuchJobError:
                continue  # expired while it waited: RQ would skip it too
            except Exception as exc:  # not ours to judge: RQ runs (or fails) it as it would have
                log.warning("gather_left_job", job_id=job_id, error=repr(exc)[:200])
                job = None
            if job is None or job.model != model:
                # Back to the front, and no further: the next worker takes it first, and
                # nothing behind it (partials included) overtakes it through this batch.
                client.lpush(key, job_id)
                return taken
            client.persist(job_key(job_id))
            candidate = Taken(job, job_id, name, gathered=True)
            if accept(candidate):
                taken.append(candidate)
    return taken


def _fetch(client: redis.Redis, job_id: str) -> TranscriptionJob | None:
    """The job's payload, or None when it is not a transcription job."""
    rq_job = Job.fetch(job_id, connection=client, serializer=MsgpackSerializer)
    if rq_job.func_name != TRANSCRIBE_FUNC or not rq_job.args:
        return None
    return TranscriptionJob.from_wire(rq_job.args[0])


class _Worker(SimpleWorker):
    """RQ's SimpleWorker runs each job in this process (no fork per job), so the model the
    worker loaded serves every job. It remembers a shutdown signal, so that
    :func:`run_worker_loop` can tell a requested stop from RQ giving up: RQ leaves its loop
    on any Redis error outside its blocking pop (a job's bookkeeping, the heartbeat after
    it), and a worker must outlive a Redis restart, not die with it."""

    stopping = False

    def request_stop(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True
        _stop_requested.set()
        super().request_stop(signum, frame)


#: Set once this process's worker was asked to shut down (see :func:`stop_requested`).
_stop_requested = threading.Event()


def stop_requested() -> bool:
    """Whether this worker process was asked to shut down: waits inside a job (a reply
    retried through a Redis outage) give up rather than hold up the shutdown."""
    return _stop_requested.is_set()


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
    while not worker.stopping:
        try:
            worker.work(with_scheduler=False, logging_level="WARNING")
        except redis.exceptions.RedisError as exc:  # raised by RQ's own teardown
            log.warning("worker_loop_redis_error", error=str(exc))
        if worker.stopping:
            return
        log.warning("worker_loop_restarting", worker_id=worker.name)
        _rejoin(worker)


def run_worker_loop(connection: redis.Redis, name: str) -> None:
    """Take jobs until SIGTERM/SIGINT, through Redis restarts. Finals are listed before
    partials, and RQ always pops from the first non-empty queue, which is how finals
    outrank partials. ``connection`` should be a client of its own: RQ raises its socket
    timeout above the blocking pop, and a pooled connection may still carry the short
    default."""
    worker = _Worker(
        list(QUEUES),
        connection=connection,
        serializer=MsgpackSerializer,
        name=name,
        log_job_description=False,
    )
    _work_until_stopped(worker)
