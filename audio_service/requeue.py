"""The requeue pass: every job this audio service queued that Redis has lost is queued
again (see :mod:`shared.requeue` for what is kept and why).

Each pass (with the reaper's, every 2 s) asks Redis in one round trip which kept jobs it
still holds and which a worker settled, and acts on :func:`shared.requeue.decide`: settled
jobs are forgotten, lost ones are queued again at the front under the same id (oldest
first, so that a stream's utterances and a file's pieces keep their order), and a lost job
whose audio was past the buffer's bound is answered ``redis_unavailable`` on its reply
channel, so its client hears at once rather than from the watchdog. A pass while Redis is
still away fails at its first command and changes nothing; the next one tries again.
"""

from __future__ import annotations

import structlog

from shared import codec, metrics, protocol
from shared.queue import JobQueue
from shared.requeue import Decision, decide

log = structlog.get_logger()


def requeue_once(queue: JobQueue, now: float) -> dict[Decision, int]:
    """One pass; how many kept jobs got each decision."""
    buffer = queue.buffer
    counts = dict.fromkeys(Decision, 0)
    if buffer is None:
        return counts
    if queue.redis_away:
        queue.check_redis()
    metrics.REQUEUE_BUFFER_SECONDS.set(buffer.audio_s)
    if not len(buffer):
        return counts
    entries = buffer.entries()
    states = queue.job_states([e.job.job_id for e in entries])
    lost = []
    for entry in entries:
        state = states[entry.job.job_id]
        decision = decide(entry, held=state.held, settled=state.settled, now=now, max_age_s=buffer.max_age_s)
        counts[decision] += 1
        if decision is Decision.DROP:
            buffer.forget(entry.job.job_id)
        elif decision is not Decision.KEEP:
            lost.append((entry, decision))
    # At the front of the queue each goes before the one queued before it: newest first.
    for entry, decision in reversed(lost):
        job = entry.job
        if decision is Decision.REQUEUE:
            queue.requeue(job)
            log.warning("job_requeued", job_id=job.job_id, utterance_id=job.utterance_id)
            continue
        buffer.forget(job.job_id)
        log.warning("job_lost_with_redis", job_id=job.job_id, utterance_id=job.utterance_id)
        reply = protocol.error(
            protocol.ErrorCode.REDIS_UNAVAILABLE,
            "Redis restarted while this was queued, and its audio was past the requeue buffer's bound; "
            "send it again",
            utterance_id=job.utterance_id,
        )
        queue.redis.publish(job.reply_channel, codec.dumps({**reply, **job.routing()}))
    if counts[Decision.REQUEUE]:
        metrics.JOBS_REQUEUED.inc(counts[Decision.REQUEUE])
    return counts
