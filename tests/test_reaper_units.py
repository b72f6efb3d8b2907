"""The reaper's decisions, on fakeredis: retry while attempts and workers remain, then
``worker_lost``; partials are not retried; live workers' jobs are left alone."""

from __future__ import annotations

import fakeredis
import pytest

from audio_service.reaper import MAX_RETRIES, reap_once
from shared import codec
from shared.config import Settings
from shared.jobs import TranscriptionJob
from shared.queue import JobQueue, Taken, claim, job_key, queue_key
from shared.redis_keys import INFLIGHT_KEY, QUEUE_FINAL, QUEUE_PARTIAL, worker_key
from shared.stream_ledger import StreamLedger


@pytest.fixture
def queue() -> JobQueue:
    return JobQueue(Settings(), connection=fakeredis.FakeRedis())


@pytest.fixture
def ledger(queue: JobQueue) -> StreamLedger:
    return StreamLedger.for_settings(queue.redis, Settings())


def _start(queue: JobQueue, job: TranscriptionJob, worker: str = "dead-1") -> str:
    """Enqueue the job and record it as taken by ``worker`` (as a worker would)."""
    queue.enqueue([job])
    queue.redis.lpop(queue_key(QUEUE_FINAL))
    claim(queue.redis, Taken(job, job.job_id, QUEUE_FINAL), worker)
    return job.job_id


def _listen(queue: JobQueue, channel: str):  # type: ignore[no-untyped-def]
    pubsub = queue.redis.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(channel)
    return pubsub


def test_orphan_is_retried_at_front_while_a_worker_lives(queue: JobQueue, ledger: StreamLedger) -> None:
    queue.redis.set(worker_key("alive-1"), b"x")
    job = TranscriptionJob(utterance_id="u1", reply_channel="s2t:reply:a", pcm=b"\0\0" * 10, model="tiny.en")
    old_id = _start(queue, job)
    assert reap_once(queue, ledger) == 1
    assert not queue.redis.exists(job_key(old_id))
    queued = [j.decode() for j in queue.redis.lrange(queue_key(QUEUE_FINAL), 0, -1)]
    assert queued == ["u1-r1"]
    retry = queue.take_dead_attempt("u1-r1")  # reads the record back (and deletes it)
    assert retry is not None and retry.attempt == 1 and retry.pcm == job.pcm
    assert queue.redis.hlen(INFLIGHT_KEY) == 0


def test_jobs_of_live_workers_are_left_alone(queue: JobQueue, ledger: StreamLedger) -> None:
    queue.redis.set(worker_key("alive-1"), b"x")
    job = TranscriptionJob(utterance_id="u2", reply_channel="s2t:reply:a", pcm=b"\0\0", model="tiny.en")
    _start(queue, job, worker="alive-1")
    assert reap_once(queue, ledger) == 0
    assert queue.redis.hlen(INFLIGHT_KEY) == 1


@pytest.mark.parametrize("workers_alive", [True, False])
def test_worker_lost_after_max_retries_or_without_workers(
    queue: JobQueue, ledger: StreamLedger, workers_alive: bool
) -> None:
    if workers_alive:
        queue.redis.set(worker_key("alive-1"), b"x")
    attempt = MAX_RETRIES if workers_alive else 0
    job = TranscriptionJob(
        utterance_id="u3", reply_channel="s2t:reply:b", pcm=b"\0\0", model="tiny.en",
        request_id="r3", attempt=attempt,
    )  # fmt: skip
    pubsub = _listen(queue, "s2t:reply:b")
    _start(queue, job)
    assert reap_once(queue, ledger) == 1
    message = None
    for _ in range(20):  # the first call may only consume the subscribe confirmation
        if (message := pubsub.get_message(timeout=0.05)) is not None:
            break
    assert message is not None
    reply = codec.loads(message["data"])
    assert reply["type"] == "error" and reply["code"] == "worker_lost"
    assert reply["utterance_id"] == "u3" and reply["request_id"] == "r3"
    assert queue.redis.llen(queue_key(QUEUE_FINAL)) == 0


def test_lost_partial_is_not_retried_but_frees_its_stream(queue: JobQueue, ledger: StreamLedger) -> None:
    queue.redis.set(worker_key("alive-1"), b"x")
    job = TranscriptionJob(
        utterance_id="s-u0", reply_channel="s2t:reply:c", pcm=b"\0\0", model="tiny.en",
        kind="partial", stream_id="s", seq=7,
    )  # fmt: skip
    queue.enqueue([job])
    claim(queue.redis, Taken(job, job.job_id, QUEUE_PARTIAL), "dead-2")
    queue.redis.lpop(queue_key(QUEUE_PARTIAL))
    assert reap_once(queue, ledger) == 1
    assert ledger.partials_done("s") == 7
    assert queue.redis.ttl("s2t:stream:s") > 0
    assert queue.redis.llen(queue_key(QUEUE_PARTIAL)) == 0
    assert not queue.redis.exists(job_key(job.job_id))  # its audio is not kept
