"""Take jobs that are already waiting, to transcribe them in one batch with the job RQ gave us.

RQ hands a worker one job at a time. When more jobs wait behind it, the model does more
work per second if it sees several at once, so the job function takes up to
``S2T_BATCH_SIZE - 1`` more of them straight off RQ's queue lists (finals first, like RQ
itself) and answers each on its own reply channel. It never waits for more jobs to
arrive: with nothing waiting, a job runs exactly as it would alone.

RQ's bookkeeping for a job taken here stays sane:

- it is popped from the queue list (``LPOP``), so no other worker, nor RQ, runs it again;
- its record is made persistent while it runs (what RQ does for the jobs it starts), so
  that the audio service's reaper can still read its audio and retry it if this worker
  dies; the caller claims it in ``shared.inflight`` right away;
- when answered, its record is deleted, as RQ does for a finished job with ``result_ttl=0``;
- a job for another model is pushed back to the FRONT of its queue and gathering stops
  there (partials are not looked at either), so queue order and the priority of finals
  are kept and that job is the next one any worker takes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import redis
import structlog
from rq.exceptions import NoSuchJobError
from rq.job import Job

from shared.codec import MsgpackSerializer
from shared.jobs import TRANSCRIBE_FUNC, TranscriptionJob
from shared.redis_keys import QUEUES, queue_key

log = structlog.get_logger()


@dataclass
class Taken:
    """A job in a batch: the one RQ started (``gathered`` False) or one taken here."""

    job: TranscriptionJob
    rq_id: str | None
    queue: str | None
    gathered: bool = False


def gather(client: redis.Redis, model: str, limit: int, accept: Callable[[Taken], bool]) -> list[Taken]:
    """Up to ``limit`` jobs for ``model`` that are waiting now, finals first. ``accept`` sees
    each job as soon as it is taken (to claim it) and may settle it there (a superseded
    partial is skipped): a job it refuses does not count towards ``limit``."""
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
            client.persist(Job.key_for(job_id))
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


def done(client: redis.Redis, taken: Taken) -> None:
    """Forget a gathered job once it is answered or skipped (RQ's ``result_ttl=0``)."""
    if taken.gathered and taken.rq_id is not None:
        client.delete(Job.key_for(taken.rq_id))
