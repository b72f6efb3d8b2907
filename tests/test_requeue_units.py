"""The requeue buffer's bounds and the requeue decision (pure), the requeue pass on
fakeredis (what a Redis that came back empty no longer holds is queued again, once, in
order), enqueues while Redis is away, the worker's reply retry, and the recording's
watchdog while its session is parked."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import fakeredis
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from audio_service.reaper import reap_once
from audio_service.requeue import requeue_once
from gateway import events, recording
from gateway.live_sessions import LiveSessions
from shared import codec
from shared.config import Settings
from shared.jobs import TranscriptionJob
from shared.queue import JobQueue, Taken, claim, job_key, queue_key, settle
from shared.redis_keys import QUEUE_FINAL
from shared.requeue import Decision, Entry, RequeueBuffer, decide
from shared.stream_ledger import StreamLedger
from whisper_service import reply_publisher
from whisper_service.reply_publisher import publish_reply

ONE_S = b"\0\0" * 16000  # one second of 16 kHz PCM


def _job(uid: str, seconds: int = 1, kind: str = "final", **fields: Any) -> TranscriptionJob:
    return TranscriptionJob(
        utterance_id=uid,
        reply_channel="s2t:reply:a",
        pcm=ONE_S * seconds,
        model="tiny.en",
        kind=kind,
        **fields,
    )


# --- bounds -----------------------------------------------------------------------------


def test_jobs_keep_their_audio_up_to_the_seconds_bound_then_only_their_routing() -> None:
    buffer = RequeueBuffer(max_audio_s=5.0, max_jobs=10, max_age_s=660)
    assert buffer.add(_job("a", 3), now=0.0)
    assert buffer.add(_job("b", 2), now=0.0)  # exactly at the bound
    assert not buffer.add(_job("c", 1), now=0.0)  # past it: routing only
    assert buffer.audio_s == pytest.approx(5.0)
    kept = {e.job.utterance_id: e for e in buffer.entries()}
    assert kept["c"].job.pcm == b"" and not kept["c"].audio_kept and kept["a"].job.pcm == ONE_S * 3
    buffer.forget("a")
    assert buffer.audio_s == pytest.approx(2.0)
    assert buffer.add(_job("d", 3), now=1.0)  # room again


def test_the_count_bound_and_the_hard_cap_on_entries() -> None:
    buffer = RequeueBuffer(max_audio_s=1000.0, max_jobs=2, max_age_s=660)
    assert [buffer.add(_job(f"j{i}"), now=0.0) for i in range(5)] == [True, True, False, False, False]
    assert len(buffer) == 4  # twice max_jobs: the fifth is not kept at all
    assert not buffer.has_room([_job("x")])


def test_a_job_kept_again_under_its_id_is_counted_once() -> None:
    buffer = RequeueBuffer(max_audio_s=3.0, max_jobs=10, max_age_s=660)
    buffer.add(_job("a", 2), now=0.0)
    buffer.add(_job("a", 2), now=1.0)
    assert len(buffer) == 1 and buffer.audio_s == pytest.approx(2.0)
    assert buffer.has_room([_job("b", 1)]) and not buffer.has_room([_job("b", 1), _job("c", 1)])


def test_partials_are_not_kept_and_a_cancelled_streams_jobs_or_a_revoked_candidate_are_forgotten() -> None:
    buffer = RequeueBuffer(max_audio_s=100.0, max_jobs=10, max_age_s=660)
    assert not buffer.add(_job("s-u0", kind="partial", stream_id="s", seq=1), now=0.0)
    buffer.add(_job("s-u0", kind="candidate", stream_id="s", seq=2), now=0.0)
    buffer.add(_job("s-u1", stream_id="s", seq=3), now=0.0)
    buffer.add(_job("t-u0", stream_id="t", seq=1), now=0.0)
    buffer.forget_job("s", 2)
    assert sorted(e.job.utterance_id for e in buffer.entries()) == ["s-u1", "t-u0"]
    buffer.forget_stream("s")
    assert [e.job.utterance_id for e in buffer.entries()] == ["t-u0"]


# --- the decision -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("held", "settled", "age", "audio", "expected"),
    [
        (True, False, 1.0, True, Decision.KEEP),  # queued or running
        (False, True, 1.0, True, Decision.DROP),  # answered
        (True, True, 1.0, True, Decision.DROP),  # answered, RQ not done deleting yet
        (False, False, 1.0, True, Decision.REQUEUE),  # Redis lost it
        (False, False, 1.0, False, Decision.REPORT),  # lost, and its audio was past the bound
        (False, False, 700.0, True, Decision.DROP),  # the gateway's watchdog has answered it
    ],
)
def test_requeue_decision(held: bool, settled: bool, age: float, audio: bool, expected: Decision) -> None:
    entry = Entry(_job("a"), added_at=100.0, audio_kept=audio)
    assert decide(entry, held=held, settled=settled, now=100.0 + age, max_age_s=660.0) is expected


# --- the pass on fakeredis ------------------------------------------------------------------


@pytest.fixture
def queue() -> JobQueue:
    settings = Settings(requeue_buffer_seconds=2.5)
    return JobQueue(settings, connection=fakeredis.FakeRedis(), buffer=RequeueBuffer.for_settings(settings))


def _queued(queue: JobQueue) -> list[str]:
    return [j.decode() for j in queue.redis.lrange(queue_key(QUEUE_FINAL), 0, -1)]


def test_what_an_empty_redis_lost_is_queued_again_once_in_order_with_its_audio(queue: JobQueue) -> None:
    queue.enqueue([_job("f-0"), _job("f-1")])
    counts = requeue_once(queue, now=_now(queue))
    assert counts[Decision.KEEP] == 2 and _queued(queue) == ["f-0", "f-1"]
    queue.redis.flushall()  # Redis restarted empty
    requeue_once(queue, now=_now(queue))
    assert _queued(queue) == ["f-0", "f-1"]  # same ids, same order, at the front
    requeue_once(queue, now=_now(queue))
    assert _queued(queue) == ["f-0", "f-1"]  # held again: not queued twice
    assert queue.take_dead_attempt("f-1").pcm == ONE_S  # type: ignore[union-attr]
    queue.redis.flushall()
    assert requeue_once(queue, now=_now(queue) + 661)[Decision.DROP] == 2  # the watchdog's by now
    assert _queued(queue) == [] and not len(queue.buffer)  # type: ignore[arg-type]


def test_settled_jobs_are_forgotten_and_running_ones_kept(queue: JobQueue) -> None:
    queue.enqueue([_job("a"), _job("b")])
    queue.redis.lpop(queue_key(QUEUE_FINAL))
    claim(queue.redis, Taken(_job("a"), "a", QUEUE_FINAL), "w-1")
    queue.redis.delete(job_key("a"))  # running: only the claim says so
    settle(queue.redis, "b")
    queue.redis.delete(job_key("b"))  # answered: RQ deleted its record
    counts = requeue_once(queue, now=_now(queue))
    assert counts[Decision.KEEP] == 1 and counts[Decision.DROP] == 1
    assert [e.job.job_id for e in queue.buffer.entries()] == ["a"]  # type: ignore[union-attr]


def test_a_lost_job_past_the_bound_gets_redis_unavailable_on_its_reply_channel(queue: JobQueue) -> None:
    pubsub = queue.redis.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe("s2t:reply:a")
    queue.enqueue([_job("big", 2), _job("over", 1, request_id="r", index=1, count=2)])
    queue.redis.flushall()
    counts = requeue_once(queue, now=_now(queue))
    assert counts[Decision.REQUEUE] == 1 and counts[Decision.REPORT] == 1
    assert _queued(queue) == ["big"]
    message = None
    for _ in range(20):
        message = message or pubsub.get_message(timeout=0.1)
    reply = codec.loads(message["data"])  # type: ignore[index]
    assert reply["code"] == "redis_unavailable" and reply["utterance_id"] == "over"
    assert reply["request_id"] == "r" and reply["index"] == 1


def test_a_reaped_job_is_not_queued_again_under_its_dead_id(queue: JobQueue) -> None:
    ledger = StreamLedger.for_settings(queue.redis, Settings())
    queue.redis.set("s2t:worker:alive-1", b"x")
    queue.enqueue([_job("u")])
    queue.redis.lpop(queue_key(QUEUE_FINAL))
    claim(queue.redis, Taken(_job("u"), "u", QUEUE_FINAL), "dead-1")
    assert reap_once(queue, ledger) == 1
    requeue_once(queue, now=_now(queue))
    assert _queued(queue) == ["u-r1"]


def test_enqueue_while_redis_is_away_waits_in_the_buffer() -> None:
    settings = Settings()
    away = redis.Redis(port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    queue = JobQueue(settings, connection=away, buffer=RequeueBuffer.for_settings(settings))
    queue.enqueue([_job("f-0"), _job("f-1")])  # no error: both wait
    assert [e.job.job_id for e in queue.buffer.entries()] == ["f-0", "f-1"]  # type: ignore[union-attr]
    assert queue.redis_away
    with pytest.raises(redis.exceptions.ConnectionError):
        queue.length()  # at once, without trying Redis again
    with pytest.raises(redis.exceptions.ConnectionError):
        queue.enqueue([_job("p", kind="partial", stream_id="s", seq=1)])
    assert JobQueue(settings, connection=away).buffer is None
    with pytest.raises(redis.exceptions.ConnectionError):
        JobQueue(settings, connection=away).enqueue([_job("f")])  # without a buffer: as before
    away.connection_pool = fakeredis.FakeRedis().connection_pool  # Redis answers again
    requeue_once(queue, now=_now(queue))
    assert not queue.redis_away and _queued(queue) == ["f-0", "f-1"]


def _now(queue: JobQueue) -> float:
    """A clock just after the newest entry was kept."""
    return max(e.added_at for e in queue.buffer.entries()) + 0.1  # type: ignore[union-attr]


# --- the worker's reply ---------------------------------------------------------------------


class _FlakyRedis:
    """Answers ``publish`` from a script: an exception to raise or a subscriber count."""

    def __init__(self, script: list[Any], uptime_s: float) -> None:
        self.script, self.uptime_s, self.calls = script, uptime_s, 0

    def publish(self, channel: str, data: bytes) -> int:
        self.calls += 1
        step = self.script.pop(0) if self.script else 1
        if isinstance(step, Exception):
            raise step
        return int(step)

    def info(self, section: str) -> dict[str, Any]:
        return {"uptime_in_seconds": self.uptime_s}


@pytest.fixture(autouse=False)
def fast_retry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reply_publisher, "RETRY_FIRST_DELAY_S", 0.01)
    monkeypatch.setattr(reply_publisher, "RETRY_MAX_DELAY_S", 0.02)


def test_a_reply_is_retried_while_redis_is_away_and_until_the_gateway_has_subscribed_again(
    fast_retry: None,
) -> None:
    client = _FlakyRedis([redis.exceptions.ConnectionError("away")] * 3 + [0, 0, 1], uptime_s=2)
    assert publish_reply(client, "c", b"x", retry_s=5.0, stopping=lambda: False) == 1  # type: ignore[arg-type]
    assert client.calls == 6


def test_no_subscriber_long_after_a_restart_means_the_client_has_gone(fast_retry: None) -> None:
    client = _FlakyRedis([0, 1], uptime_s=reply_publisher.RESUBSCRIBE_GRACE_S + 1)
    assert publish_reply(client, "c", b"x", retry_s=5.0, stopping=lambda: False) == 0  # type: ignore[arg-type]
    assert client.calls == 1


def test_a_reply_that_cannot_go_out_in_time_raises(fast_retry: None) -> None:
    client = _FlakyRedis([redis.exceptions.ConnectionError("away")] * 1000, uptime_s=1)
    with pytest.raises(redis.exceptions.ConnectionError):
        publish_reply(client, "c", b"x", retry_s=0.3, stopping=lambda: False)  # type: ignore[arg-type]


def test_a_shutdown_ends_the_reply_retries_at_once(fast_retry: None) -> None:
    client = _FlakyRedis([redis.exceptions.ConnectionError("away")] * 1000, uptime_s=1)
    with pytest.raises(redis.exceptions.ConnectionError):
        publish_reply(client, "c", b"x", retry_s=60.0, stopping=lambda: True)  # type: ignore[arg-type]
    assert client.calls == 1


# --- the gateway's backstop ---------------------------------------------------------------


def test_a_parked_recordings_stuck_final_still_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """The watchdog belongs to the recording, not to a client connection: a recording
    whose client has gone (parked in its resume window) still answers a final that no
    result reaches, into its session's journal."""
    monkeypatch.setattr(recording, "WATCHDOG_INTERVAL_S", 0.01)
    ctx = SimpleNamespace(settings=Settings(job_ttl_s=0, job_timeout_s=0))

    async def run() -> list[events.LiveEvent]:
        sessions = LiveSessions(window_s=30.0, api_key=None)
        session, _ = sessions.create()
        rec = recording.Recording(
            ctx, session.sink, language="en", task="transcribe", model="tiny.en", fmt=None
        )  # type: ignore[arg-type]
        session.recording = rec
        rec.machine.queued(0, 1, 0.0, 1.0, now=0.0)
        watchdog = asyncio.create_task(rec._watch())
        await asyncio.sleep(0.1)
        watchdog.cancel()
        return session.replay(0)

    journal = asyncio.run(run())
    assert [(type(e).__name__, getattr(e, "code", None)) for e in journal] == [("UtteranceFailed", "timeout")]


def test_a_promoted_primary_counts_as_new_from_when_it_was_first_seen() -> None:
    """A Sentinel failover keeps the uptime of the promoted replica, so the worker's
    reply grace must come from the change of server, not its uptime."""
    from shared.queue import ServerWatch

    watch = ServerWatch()
    assert watch.seen("a", 100.0) == float("inf")  # the first server: there all along
    assert watch.seen("a", 105.0) == float("inf")
    assert watch.seen("b", 200.0) == 0.0  # failover: new from now
    assert watch.seen("b", 207.5) == 7.5
    assert watch.seen("a", 300.0) == 0.0  # and back again
