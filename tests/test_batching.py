"""Cross-request batching: a batch gives each piece the text it gets alone, and one bad
piece in a batch costs the others nothing. Real tiny.en, real Redis, a real worker."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from audio_service.splitter import split
from shared import codec
from shared.config import Settings
from shared.jobs import TranscriptionJob
from shared.queue import JOB_KEY_PATTERN, JobQueue, Taken, gather, job_key, queue_key, release
from shared.redis_keys import INFLIGHT_KEY, QUEUES, new_reply_channel
from shared.stream_ledger import StreamLedger
from tests.conftest import private_redis
from tests.helpers import fixture_pcm, manifest, wer
from tests.services import Services
from whisper_appliance.embedded_redis import free_port
from whisper_service import filters
from whisper_service.backends import DecodeOptions, Transcription
from whisper_service.backends.faster_whisper_backend import FasterWhisperTranscriber

#: Every test here loads tiny.en or base, or starts a Redis and a worker: the slow tier.
pytestmark = pytest.mark.slow

#: The settings the worker uses: finals and files with beam search and segment times,
#: live partials greedy without timestamps.
FINAL = DecodeOptions(beam_size=5)
LIVE_PARTIAL = DecodeOptions(beam_size=1, without_timestamps=True)


@pytest.fixture(scope="module")
def transcriber() -> FasterWhisperTranscriber:
    return FasterWhisperTranscriber("tiny.en", device="cpu", compute_type="int8", cpu_threads=2)


@pytest.fixture(scope="module")
def utterances() -> list[np.ndarray]:
    """Four 2-5 s sentences of the OSR recording cut at its pauses, as live utterances are."""
    pcm = fixture_pcm("osr_us_000_0034")
    return [pcm[p.start : p.end] for p in split(pcm.astype(np.float32) / 32768.0, 5.0)][:4]


def as_float(pcm: np.ndarray) -> np.ndarray:
    return pcm.astype(np.float32) / 32768.0


@pytest.mark.parametrize("options", [FINAL, LIVE_PARTIAL], ids=["beam5-timestamps", "greedy-live"])
def test_batch_equals_one_by_one(
    transcriber: FasterWhisperTranscriber, utterances: list[np.ndarray], options: DecodeOptions
) -> None:
    """English pieces decode at temperature 0: the batch must give exactly what each piece
    gives alone. German speech makes tiny.en miss its thresholds, so faster-whisper falls
    back to sampling at higher temperatures, which is random even one by one (CTranslate2
    samples on several threads): such a piece must leave the batch for that same fallback."""
    english = [as_float(u) for u in utterances] + [as_float(fixture_pcm("jfk"))]
    german = [as_float(fixture_pcm("thorsten_gt_03"))]
    audios = english + german
    alone = [transcriber.transcribe(a, options) for a in audios]
    batched = transcriber.transcribe_batch([(a, options) for a in audios])

    def sampled(t: Transcription | Exception) -> bool:
        assert isinstance(t, Transcription)
        return any(s.temperature > 0 for s in t.segments)

    assert not any(sampled(t) for t in alone[: len(english)])
    assert batched[: len(english)] == alone[: len(english)]  # text, times and decoder figures
    assert wer(manifest()["jfk"]["reference"], alone[len(english) - 1].text) < 0.3  # speech, not noise
    assert all(t.text for t in alone)
    assert [sampled(t) for t in batched[len(english) :]] == [sampled(t) for t in alone[len(english) :]]
    assert any(sampled(t) for t in alone[len(english) :]), "no piece took the fallback: nothing was tested"


def test_batch_mixes_options_and_isolates_a_bad_piece(
    transcriber: FasterWhisperTranscriber, utterances: list[np.ndarray]
) -> None:
    """Beam and greedy pieces, a prompted piece, a whole 35 s file (two windows) and a
    piece the feature extractor rejects, all in one call."""
    prompted = DecodeOptions(beam_size=5, initial_prompt="Harvard sentences, list 72.")
    osr = as_float(fixture_pcm("osr_us_000_0034"))
    items = [
        (as_float(utterances[0]), FINAL),
        (np.array(["not audio"]), FINAL),  # no samples to compute features of: this piece fails
        (as_float(utterances[1]), LIVE_PARTIAL),
        (as_float(utterances[2]), prompted),
        (osr, FINAL),
    ]
    batched = transcriber.transcribe_batch(items)
    assert isinstance(batched[1], Exception)
    for (audio, options), got in zip(items[:1] + items[2:], batched[:1] + batched[2:], strict=True):
        assert isinstance(got, Transcription)
        assert got == transcriber.transcribe(audio, options)
    assert wer(manifest()["osr_us_000_0034"]["reference"], batched[4].text) < 0.3


def test_batch_detects_each_pieces_language_as_one_by_one() -> None:
    """Multilingual ``base`` with no language given: the batch detects per piece (one
    English, one German recording in the same call) what each piece alone detects."""
    base = FasterWhisperTranscriber("base", device="cpu", compute_type="int8", cpu_threads=2)
    audios = [as_float(fixture_pcm(i)) for i in ("jfk", "thorsten_gt_03")]
    options = DecodeOptions(beam_size=1, without_timestamps=True)
    batched = base.transcribe_batch([(a, options) for a in audios])
    assert batched == [base.transcribe(a, options) for a in audios]
    assert [t.language for t in batched if isinstance(t, Transcription)] == ["en", "de"]
    german = batched[1]
    assert isinstance(german, Transcription)
    assert wer(manifest()["thorsten_gt_03"]["reference"], german.text) < 0.5


# --- through a real worker process ----------------------------------------------------------


@pytest.fixture
def worker_services() -> Iterator[tuple[Services, int]]:
    with private_redis() as url:
        port = free_port()
        env = {"S2T_BATCH_SIZE": "4", "S2T_CPU_THREADS": "2", "S2T_WORKER_METRICS_PORT": str(port)}
        services = Services(url, env)
        try:
            yield services, port
        finally:
            services.stop()


def job(utterance_id: str, pcm: bytes, reply_channel: str, **fields: object) -> TranscriptionJob:
    return TranscriptionJob(utterance_id, reply_channel, pcm, "tiny.en", **fields)  # type: ignore[arg-type]


def test_worker_answers_every_job_of_a_batch_with_a_failing_one(
    worker_services: tuple[Services, int], transcriber: FasterWhisperTranscriber, utterances: list[np.ndarray]
) -> None:
    services, metrics_port = worker_services
    client = redis.Redis.from_url(services.redis_url)
    settings = Settings(redis_url=services.redis_url)
    channel = new_reply_channel()
    pubsub = client.pubsub()
    pubsub.subscribe(channel)

    jfk = fixture_pcm("jfk").astype("<i2").tobytes()
    good = [u.astype("<i2").tobytes() for u in utterances[:2]]
    ledger = StreamLedger.for_settings(client, settings)
    ledger.supersede("s1", 7)
    jobs = [
        job("jfk", jfk, channel),
        job("bad", b"\x01\x02\x03", channel),  # an odd number of bytes is no 16-bit PCM: fails alone
        job("osr-1", good[0], channel),
        job("osr-2", good[1], channel, kind="partial", stream_id="s1", seq=6),  # superseded by seq 7
        job("osr-2", good[1], channel, kind="partial", stream_id="s1", seq=7),
    ]
    # Queued before the worker starts, so they wait together as under load; finals first.
    JobQueue(settings).enqueue(jobs)
    services.start_worker()

    replies: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + 120
    while len(replies) < 4 and time.monotonic() < deadline:
        message = pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
        if message is not None:
            reply = codec.loads(message["data"])
            replies[reply["utterance_id"]] = reply
    assert set(replies) == {"jfk", "bad", "osr-1", "osr-2"}, replies

    bad = replies[jobs[1].utterance_id]
    assert bad["type"] == "error" and bad["code"] == "transcription_failed", bad
    assert wer(manifest()["jfk"]["reference"], str(replies[jobs[0].utterance_id]["transcript"])) < 0.3
    # Each job got the text it would get alone, with its own settings (finals beam 5 with
    # segment times, live partials greedy without).
    for index, options in ((0, FINAL), (2, FINAL), (4, LIVE_PARTIAL)):
        alone = transcriber.transcribe(as_float(np.frombuffer(jobs[index].pcm, "<i2")), options)
        expected = " ".join(s.text for s in filters.clean(alone.segments)).strip()
        assert replies[jobs[index].utterance_id]["transcript"] == expected
    assert replies[jobs[4].utterance_id]["final"] is False

    assert ledger.partials_done("s1") == 7  # the stream may have its next partial
    # One model call for the four live jobs; the superseded partial skipped, no reply;
    # nothing left behind in Redis.
    body = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }
    assert samples[("s2t_worker_batch_size_count", ())] == 1.0, samples
    assert samples[("s2t_worker_batch_size_sum", ())] == 4.0
    assert samples[("s2t_worker_jobs_total", (("kind", "partial"), ("outcome", "skipped")))] == 1.0
    assert samples[("s2t_worker_jobs_total", (("kind", "final"), ("outcome", "error")))] == 1.0
    assert samples[("s2t_worker_jobs_total", (("kind", "final"), ("outcome", "ok")))] == 2.0
    assert client.hlen(INFLIGHT_KEY) == 0
    assert all(client.llen(queue_key(q)) == 0 for q in QUEUES)
    assert not [k for k in client.scan_iter(JOB_KEY_PATTERN)], "job records (with audio) left in Redis"


@pytest.fixture
def own_redis() -> Iterator[str]:
    with private_redis() as url:
        yield url


def test_gather_takes_waiting_jobs_finals_first_and_leaves_other_models_in_order(own_redis: str) -> None:
    """Real Redis and RQ's own lists: a job for another model stops the gathering and goes
    back to the front of its queue, so queue order is kept for the next worker."""
    client = redis.Redis.from_url(own_redis)
    queue = JobQueue(Settings(redis_url=own_redis))
    channel = new_reply_channel()
    queue.enqueue(
        [
            job("p1", b"\0\0", channel, kind="partial", stream_id="s", seq=1),
            job("f1", b"\0\0", channel),
            job("f2", b"\0\0", channel),
            TranscriptionJob("b1", channel, b"\0\0", "base"),
            job("f3", b"\0\0", channel),
        ]
    )
    seen: list[str] = []

    def accept(taken: Taken) -> bool:
        seen.append(taken.job.utterance_id)
        return taken.job.utterance_id != "f2"  # as if superseded: settled, does not count

    taken = gather(client, "tiny.en", 2, accept)
    assert [t.job.utterance_id for t in taken] == ["f1"] and seen == ["f1", "f2"]
    final_q, partial_q = (queue_key(q) for q in QUEUES)
    assert [j.decode() for j in client.lrange(final_q, 0, -1)] == ["b1", "f3"]
    assert client.llen(partial_q) == 1  # finals stopped at b1 before partials were reached
    assert client.ttl(job_key(taken[0].rq_id or "")) == -1  # kept while it runs (the reaper reads it)
    release(client, taken[0])
    assert not client.exists(job_key(taken[0].rq_id or ""))


@pytest.mark.parametrize(
    "options",
    [DecodeOptions(beam_size=5, without_timestamps=True, temperature_fallback=False), FINAL],
    ids=["json-no-timestamps", "timestamps"],
)
def test_aligned_words_keep_the_text_and_take_the_decoders_timings(
    transcriber: FasterWhisperTranscriber, options: DecodeOptions
) -> None:
    """A diarized file piece gets its words by alignment after a plain decode: the text is
    exactly the plain decode's, each segment's words spell its text, and where the model's
    own word-timed decode reads the same words their times agree (within 0.1 s)."""
    audio = as_float(fixture_pcm("jfk"))
    plain = transcriber.transcribe(audio, options)
    aligned = transcriber.align_words(audio, plain, options)
    timed = transcriber.transcribe(audio, dataclasses.replace(options, word_timestamps=True))
    assert [s.text for s in aligned.segments] == [s.text for s in plain.segments if s.text.strip()]
    assert aligned.text == plain.text and wer(manifest()["jfk"]["reference"], aligned.text) < 0.1
    for seg in aligned.segments:
        assert seg.words and "".join(w.word for w in seg.words).split() == seg.text.split()
        assert all(0 <= w.start <= w.end <= len(audio) / 16000 + 0.05 for w in seg.words)
    ours = [(w.word.strip(), w.start) for s in aligned.segments for w in s.words or []]
    theirs = [(w.word.strip(), w.start) for s in timed.segments for w in s.words or []]
    same = [(a[1], b[1]) for a, b in zip(ours, theirs, strict=False) if a[0] == b[0]]
    assert len(same) >= 0.8 * len(ours) and all(abs(a - b) <= 0.1 for a, b in same), (ours, theirs)
