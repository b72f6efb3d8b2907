"""Uploaded audio through /ws comes back as text: real Redis, real ffmpeg, real tiny.en,
real speech, WebM/Opus as a browser sends it."""

from __future__ import annotations

import io
import itertools
import threading
import wave

import numpy as np
import pytest
from websockets.sync.client import connect

from tests.conftest import Stack
from tests.helpers import (
    collect_until_complete,
    finals,
    fixture_webm,
    joined_text,
    manifest,
    process_audio_message,
    send_json,
    wer,
)

#: Every test here transcribes through the whole stack: the slow tier.
pytestmark = pytest.mark.slow


def test_jfk_webm_transcribed(stack: Stack) -> None:
    reference = manifest()["jfk"]["reference"]
    with connect(stack.ws_url, max_size=None) as ws:
        send_json(
            ws, process_audio_message(fixture_webm("jfk"), language="en", format="webm", request_id="r1")
        )
        messages = collect_until_complete(ws)
    results = finals(messages)
    assert len(results) == 1
    final = results[0]
    assert wer(reference, final["transcript"]) <= 0.10, final["transcript"]
    assert final["request_id"] == "r1" and final["source"] == "upload" and final["language"] == "en"
    assert 0.0 <= final["start"] < final["end"] <= 11.1
    assert final["latency_ms"] > 0 and final["utterance_id"]
    assert messages[-1] == {
        "type": "status",
        "message": "Processing complete",
        "processing": False,
        "request_id": "r1",
    }


def test_long_clip_split_into_pieces_on_two_workers(stack: Stack) -> None:
    reference = manifest()["osr_us_000_0034"]["reference"]
    with connect(stack.ws_url, max_size=None) as ws:
        send_json(ws, process_audio_message(fixture_webm("osr_us_000_0034"), format="webm"))
        messages = collect_until_complete(ws)
    pieces = finals(messages)
    assert len(pieces) >= 2, "a 36 s clip must be split into pieces of at most 30 s"
    assert wer(reference, joined_text(messages)) <= 0.15, joined_text(messages)
    assert len({p["worker_id"] for p in pieces}) == 2, "both workers should have transcribed a piece"
    assert len({p["utterance_id"] for p in pieces}) == len(pieces)
    for earlier, later in itertools.pairwise(pieces):
        assert earlier["end"] <= later["start"], "pieces must arrive in file order"
    for piece in pieces:
        assert piece["end"] - piece["start"] <= 30.0


def test_binary_frame_is_a_file(stack: Stack) -> None:
    with connect(stack.ws_url, max_size=None) as ws:
        ws.send(fixture_webm("jfk"))
        messages = collect_until_complete(ws)
    assert wer(manifest()["jfk"]["reference"], joined_text(messages)) <= 0.10


def test_two_clients_each_get_only_their_own(stack: Stack) -> None:
    osr = fixture_webm("osr_us_000_0034")
    jfk = fixture_webm("jfk")
    results: dict[str, list[dict]] = {}

    def client(name: str, audio: bytes) -> None:
        with connect(stack.ws_url, max_size=None) as ws:
            send_json(ws, process_audio_message(audio, request_id=name))
            results[name] = collect_until_complete(ws)

    threads = [threading.Thread(target=client, args=a) for a in (("a", jfk), ("b", osr))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    m = manifest()
    assert wer(m["jfk"]["reference"], joined_text(results["a"])) <= 0.10
    assert wer(m["osr_us_000_0034"]["reference"], joined_text(results["b"])) <= 0.15
    assert all(msg.get("request_id") == "a" for msg in results["a"] if msg["type"] != "pong")
    assert all(msg.get("request_id") == "b" for msg in results["b"] if msg["type"] != "pong")


def test_silence_gives_empty_final_not_invented_words(stack: Stack) -> None:
    rng = np.random.default_rng(0)
    noise = (rng.normal(0, 30, 16000 * 8)).astype("<i2").tobytes()
    wav = _wav(noise)
    with connect(stack.ws_url, max_size=None) as ws:
        send_json(ws, process_audio_message(wav, request_id="quiet"))
        messages = collect_until_complete(ws)
    [final] = finals(messages)
    assert final["transcript"] == "" and final.get("no_speech") is True


def _wav(pcm: bytes, rate: int = 16000) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)
    return buf.getvalue()
