"""The queue module's operations on fakeredis: batching takes waiting jobs finals first and
keeps queue order, in-flight claims come and go, the reaper reads back a dead attempt."""

from __future__ import annotations

import asyncio

import fakeredis
import pytest

from shared import queue
from shared.config import Settings
from shared.jobs import TranscriptionJob
from shared.queue import JobQueue, Taken
from shared.redis_keys import INFLIGHT_KEY, QUEUE_FINAL, QUEUE_PARTIAL


def _job(utterance_id: str, model: str = "tiny.en", **fields: object) -> TranscriptionJob:
    return TranscriptionJob(utterance_id, "s2t:reply:x", b"\0\0", model, **fields)  # type: ignore[arg-type]


@pytest.fixture
def jobs() -> JobQueue:
    return JobQueue(Settings(), connection=fakeredis.FakeRedis())


def _waiting(jobs: JobQueue, name: str) -> list[str]:
    return [j.decode() for j in jobs.redis.lrange(queue.queue_key(name), 0, -1)]


def test_gather_takes_finals_first_then_partials(jobs: JobQueue) -> None:
    jobs.enqueue([_job("p1", kind="partial", stream_id="s", seq=1), _job("f1"), _job("f2")])
    taken = queue.gather(jobs.redis, "tiny.en", 3, lambda _: True)
    assert [(t.job.utterance_id, t.queue, t.gathered) for t in taken] == [
        ("f1", QUEUE_FINAL, True),
        ("f2", QUEUE_FINAL, True),
        ("p1", QUEUE_PARTIAL, True),
    ]
    assert all(jobs.redis.ttl(queue.job_key(t.rq_id or "")) == -1 for t in taken)  # kept while it runs
    assert jobs.length() == 0


def test_gather_stops_at_another_models_job_and_puts_it_back_in_front(jobs: JobQueue) -> None:
    jobs.enqueue([_job("f1"), _job("b1", model="base"), _job("f2"), _job("p1", kind="partial", seq=1)])
    taken = queue.gather(jobs.redis, "tiny.en", 3, lambda _: True)
    assert [t.job.utterance_id for t in taken] == ["f1"]
    assert _waiting(jobs, QUEUE_FINAL) == ["b1", "f2"]  # the next worker takes b1 first
    assert _waiting(jobs, QUEUE_PARTIAL) == ["p1-p1"]  # partials not even looked at


def test_refused_jobs_do_not_count_towards_the_limit(jobs: JobQueue) -> None:
    jobs.enqueue([_job("f1"), _job("f2"), _job("f3")])
    seen: list[str] = []

    def accept(taken: Taken) -> bool:
        seen.append(taken.job.utterance_id)
        return taken.job.utterance_id != "f1"  # as if superseded: settled by the caller

    taken = queue.gather(jobs.redis, "tiny.en", 2, accept)
    assert seen == ["f1", "f2", "f3"] and [t.job.utterance_id for t in taken] == ["f2", "f3"]


def test_gather_skips_an_expired_job_and_leaves_a_foreign_one(jobs: JobQueue) -> None:
    jobs.enqueue([_job("f1"), _job("f2")])
    jobs.redis.delete(queue.job_key("f1"))  # expired while it waited
    jobs.redis.rpush(queue.queue_key(QUEUE_FINAL), "junk")
    jobs.redis.hset(queue.job_key("junk"), "data", b"not msgpack")
    taken = queue.gather(jobs.redis, "tiny.en", 5, lambda _: True)
    assert [t.job.utterance_id for t in taken] == ["f2"]
    assert _waiting(jobs, QUEUE_FINAL) == ["junk"]  # RQ runs (or fails) it as it would have


def test_gather_with_nothing_waiting_takes_nothing(jobs: JobQueue) -> None:
    assert queue.gather(jobs.redis, "tiny.en", 3, lambda _: True) == []


def test_claim_entries_release(jobs: JobQueue) -> None:
    lead = Taken(_job("f1", request_id="r1"), "f1", QUEUE_FINAL)
    queue.claim(jobs.redis, lead, "w1")
    queue.claim(jobs.redis, Taken(_job("local"), None, None), "w1")  # not from the queue: nothing
    (entry,) = jobs.inflight_entries()
    assert (entry.job_id, entry.worker_id, entry.queue) == ("f1", "w1", QUEUE_FINAL)
    assert "pcm" not in entry.job  # routing fields only, never audio
    assert entry.routing_job().request_id == "r1"
    queue.release(jobs.redis, lead)
    assert jobs.inflight_entries() == []


def test_release_deletes_a_gathered_jobs_record_but_not_the_started_ones(jobs: JobQueue) -> None:
    jobs.enqueue([_job("f1"), _job("f2")])
    queue.release(jobs.redis, Taken(_job("f1"), "f1", QUEUE_FINAL))  # RQ deletes its own
    assert jobs.redis.exists(queue.job_key("f1"))
    (gathered,) = queue.gather(jobs.redis, "tiny.en", 1, lambda _: True)
    assert gathered.rq_id == "f1"
    queue.release(jobs.redis, gathered)
    assert not jobs.redis.exists(queue.job_key("f1"))


def test_a_malformed_claim_is_dropped(jobs: JobQueue) -> None:
    jobs.redis.hset(INFLIGHT_KEY, "bad", b"\xc1")
    assert jobs.inflight_entries() == []
    assert jobs.redis.hlen(INFLIGHT_KEY) == 0


def test_only_one_reaper_wins_an_orphan(jobs: JobQueue) -> None:
    queue.claim(jobs.redis, Taken(_job("f1"), "f1", QUEUE_FINAL), "dead")
    assert jobs.claim_orphan("f1") is True
    assert jobs.claim_orphan("f1") is False


def test_take_dead_attempt_reads_the_audio_and_deletes_the_record(jobs: JobQueue) -> None:
    job = TranscriptionJob("f1", "s2t:reply:x", bytes(range(256)) * 4, "tiny.en", attempt=1)
    jobs.enqueue([job])
    back = jobs.take_dead_attempt(job.job_id)
    assert back is not None and back.pcm == job.pcm and back.attempt == 1
    assert not jobs.redis.exists(queue.job_key(job.job_id))
    assert jobs.take_dead_attempt(job.job_id) is None  # gone: nothing to retry


def test_depths_sync_and_async(jobs: JobQueue) -> None:
    jobs.enqueue([_job("f1"), _job("f2"), _job("p1", kind="partial", seq=1)])
    assert queue.queue_depths(jobs.redis) == {QUEUE_FINAL: 2, QUEUE_PARTIAL: 1}
    assert jobs.length() == 3
    server = fakeredis.FakeServer()
    sync = fakeredis.FakeRedis(server=server)
    JobQueue(Settings(), connection=sync).enqueue([_job("f1")])

    async def depths() -> dict[str, int]:
        client = fakeredis.FakeAsyncRedis(server=server)
        try:
            return await queue.queue_depths_async(client)
        finally:
            await client.aclose()

    assert asyncio.run(depths()) == {QUEUE_FINAL: 1, QUEUE_PARTIAL: 0}
