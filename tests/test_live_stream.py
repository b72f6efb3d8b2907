"""Live recordings over /ws: WebM/Opus chunks as MediaRecorder sends them, real VAD,
real workers, real tiny.en."""

from __future__ import annotations

import contextlib
import itertools
import threading
import time

import numpy as np
import psutil
import pytest
import redis
from websockets.sync.client import connect

from shared.config import Settings
from shared.stream_ledger import StreamLedger
from tests.conftest import Stack
from tests.helpers import (
    chunk_stream,
    finals,
    fixture_pcm,
    fixture_webm,
    manifest,
    pcm_to_webm,
    recv_json,
    send_json,
    stream_live,
    wer,
)

#: Every test here starts the whole stack and streams live to it: the slow tier.
pytestmark = pytest.mark.slow

RATE = 16000


def test_live_jfk_in_real_time_partials_then_finals(stack: Stack) -> None:
    item = manifest()["jfk"]
    with connect(stack.ws_url, max_size=None) as ws:
        result = stream_live(ws, chunk_stream(fixture_webm("jfk"), item["duration_s"]))
    transcripts = [m for m in result.messages if m["type"] == "transcript"]
    done = finals(result.messages)
    assert done, result.messages
    assert wer(item["reference"], " ".join(m["transcript"] for m in done)) <= 0.15, done
    assert all(m["source"] == "real_microphone" for m in transcripts)
    # partials arrive while the speaker is still speaking, before their utterance's final
    first_final_at = {m["utterance_id"]: transcripts.index(m) for m in done}
    partials = [(i, m) for i, m in enumerate(transcripts) if not m["final"]]
    assert partials, "no partial results"
    assert any(i < first_final_at.get(m["utterance_id"], 10**9) for i, m in partials)
    partial_times = [
        t for m, t in zip(result.messages, result.received_at, strict=True) if m.get("final") is False
    ]
    assert min(partial_times) < result.sent_until, (
        "the first partial should come while audio is still streaming"
    )
    # every final once, in stream order, inside the clip
    assert len({m["utterance_id"] for m in done}) == len(done)
    assert all(a["start"] < b["start"] for a, b in itertools.pairwise(done))
    assert all(0 <= m["start"] < m["end"] <= item["duration_s"] + 0.1 for m in done)
    # no partial for an utterance after its final
    for uid, position in first_final_at.items():
        assert not any(not m["final"] and m["utterance_id"] == uid for m in transcripts[position:])
    assert result.messages[-1]["recording"] is False


def test_silence_then_noise_gives_no_words(stack: Stack) -> None:
    rng = np.random.default_rng(7)
    silence = np.zeros(20 * RATE)
    t = np.arange(20 * RATE) / RATE
    noise = rng.normal(0, 2500, 20 * RATE) + 1500 * np.sin(2 * np.pi * 50 * t)  # hiss and mains hum
    pcm = np.clip(np.concatenate([silence, noise]), -32768, 32767).astype(np.int16)
    with connect(stack.ws_url, max_size=None) as ws:
        result = stream_live(ws, chunk_stream(pcm_to_webm(pcm), 40.0), speed=4.0)
    worded = [m for m in result.messages if m["type"] == "transcript" and m["transcript"].strip()]
    assert worded == [], worded
    assert not [m for m in result.messages if m["type"] == "error"]


def _audio_service_rss(stack: Stack) -> int:
    return _audio_service(stack).memory_info().rss


def test_a_long_stream_keeps_every_utterance_in_order_with_flat_memory(stack: Stack) -> None:
    """Two and a half minutes of speech at 8x (five minutes until CI's time ran short on a
    slower CPU): every utterance in order, and the audio service's memory flat over it."""
    m = manifest()
    pause = np.zeros(2 * RATE, dtype=np.int16)
    rounds = 3
    pcm = np.concatenate([fixture_pcm("jfk"), pause, fixture_pcm("osr_us_000_0034"), pause] * rounds)
    duration = len(pcm) / RATE
    assert duration >= 140
    reference = " ".join([m["jfk"]["reference"], m["osr_us_000_0034"]["reference"]] * rounds)
    samples: list[tuple[float, int]] = []
    stop = threading.Event()

    def sample_memory() -> None:
        start = time.monotonic()
        while not stop.wait(0.5):
            samples.append((time.monotonic() - start, _audio_service_rss(stack)))

    sampler = threading.Thread(target=sample_memory, daemon=True)
    with connect(stack.ws_url, max_size=None) as ws:
        sampler.start()
        result = stream_live(ws, chunk_stream(pcm_to_webm(pcm), duration), speed=8.0, timeout=300)
        stop.set()
    sampler.join(5)
    done = finals(result.messages)
    errors = [msg for msg in result.messages if msg["type"] == "error"]
    assert not errors, errors
    assert wer(reference, " ".join(msg["transcript"] for msg in done)) <= 0.2
    assert all(a["start"] < b["start"] for a, b in itertools.pairwise(done))
    assert done[-1]["end"] > duration - 10
    # memory after a quarter of the stream vs. the rest: no growth with stream length
    quarter = [rss for t, rss in samples if t <= result.sent_until / 4]
    later = [rss for t, rss in samples if t > result.sent_until / 2]
    assert quarter and later
    growth_mb = (max(later) - max(quarter)) / 2**20
    assert growth_mb < 25, f"audio service grew by {growth_mb:.1f} MB over the stream"


def _audio_service(stack: Stack) -> psutil.Process:
    for child in psutil.Process(stack.process.pid).children(recursive=True):
        if "audio" in child.cmdline():
            return child
    raise AssertionError("audio service process not found")


def _live_ffmpeg(audio: psutil.Process) -> list[psutil.Process]:
    """The audio service's running live-stream decoders (flushing per packet; the spare
    file decoder does not), a zombie counting as ended."""
    running = []
    for child in audio.children():
        with contextlib.suppress(psutil.Error):
            if child.status() != psutil.STATUS_ZOMBIE and "-flush_packets" in child.cmdline():
                running.append(child)
    return running


def test_client_leaving_mid_stream_leaves_nothing_behind(stack: Stack) -> None:
    chunks = chunk_stream(fixture_webm("osr_us_000_0034"), manifest()["osr_us_000_0034"]["duration_s"])
    audio = _audio_service(stack)
    with connect(stack.ws_url, max_size=None) as ws:
        send_json(ws, {"command": "start_real_recording", "language": "en", "format": "webm"})
        stream_id = recv_json(ws)["stream_id"]
        for chunk in chunks[:40]:  # 10 s of speech, then the tab is closed
            ws.send(chunk)
        deadline = time.monotonic() + 10
        while not _live_ffmpeg(audio):
            assert time.monotonic() < deadline, "no ffmpeg decoder was started for the stream"
            time.sleep(0.1)
    deadline = time.monotonic() + 10
    while _live_ffmpeg(audio):
        assert time.monotonic() < deadline, "the stream's ffmpeg outlived its client"
        time.sleep(0.1)
    client = redis.Redis.from_url(stack.redis_url)
    deadline = time.monotonic() + 10
    ledger = StreamLedger.for_settings(client, Settings())
    while not ledger.is_cancelled(stream_id):
        assert time.monotonic() < deadline, "the stream was not marked cancelled for the workers"
        time.sleep(0.1)


def test_stop_twice_and_record_again_on_one_connection(stack: Stack) -> None:
    chunks = chunk_stream(fixture_webm("jfk"), manifest()["jfk"]["duration_s"])[:12]
    with connect(stack.ws_url, max_size=None) as ws:
        first = stream_live(ws, chunks, speed=4.0)
        assert first.messages[-1]["recording"] is False
        send_json(ws, {"command": "stop_recording"})  # nothing left to flush: answered at once
        assert recv_json(ws, timeout=10)["recording"] is False
        second = stream_live(ws, chunks, speed=4.0)
        assert finals(second.messages), second.messages
        assert {m["utterance_id"] for m in finals(first.messages)}.isdisjoint(
            m["utterance_id"] for m in finals(second.messages)
        )
