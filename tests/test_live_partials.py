"""Partial scheduling on a real stack (issue 14 parts 3, 5, 6): the first partial of an
utterance comes early, and under load partials are thinned and paused, with a ``status``
when they pause and resume, while every final still arrives."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from websockets.sync.client import connect

from shared.config import Settings
from tests.conftest import Stack, private_redis, start_stack, stop_stack
from tests.helpers import chunk_stream, finals, fixture_pcm, fixture_webm, manifest, stream_live, wer
from whisper_service.backends import DecodeOptions
from whisper_service.backends.faster_whisper_backend import FasterWhisperTranscriber

#: Every test here starts the whole stack and streams live to it: the slow tier.
pytestmark = pytest.mark.slow


def _first_text_span(messages: list[dict[str, object]], utterance_id: str) -> float:
    """Audio seconds the utterance's first transcript covers, from the utterance's start."""
    texts = [m for m in messages if m.get("type") == "transcript" and m["utterance_id"] == utterance_id]
    final = next(m for m in texts if m["final"])
    return float(texts[0]["end"]) - float(final["start"])  # type: ignore[arg-type]


def test_first_partial_comes_after_half_a_second_of_speech(stack: Stack) -> None:
    """The first utterance of jfk (2.4 s) shows text made from pre-roll plus
    ``S2T_FIRST_PARTIAL_S`` of speech (0.8 s of audio), not the cadence's full second."""
    item = manifest()["jfk"]
    with connect(stack.ws_url, max_size=None) as ws:
        result = stream_live(ws, chunk_stream(fixture_webm("jfk"), item["duration_s"]))
    done = finals(result.messages)
    assert wer(item["reference"], " ".join(m["transcript"] for m in done)) <= 0.15, done
    first = done[0]
    assert float(first["end"]) - float(first["start"]) > 1.5, first  # long enough to have partials
    preroll = 0.3
    span = _first_text_span(result.messages, str(first["utterance_id"]))
    assert not next(m for m in result.messages if m.get("type") == "transcript")["final"]
    assert span <= preroll + Settings().first_partial_s + 0.15, (span, result.messages[:6])


@pytest.fixture(scope="module")
def pausing_stack() -> Iterator[Stack]:
    """A pause bound of zero: a partial that waited at all pauses the stream's partials,
    and a second of calm resumes them; so one stream sees both notices."""
    env = {"S2T_PARTIAL_PAUSE_WAIT_S": "0", "S2T_PARTIAL_RESUME_S": "1.0"}
    with private_redis() as url:
        running = start_stack(url, workers=1, extra_env=env, quiet=True)
        yield running
        stop_stack(running)


def test_partials_pause_and_resume_with_notices_and_every_final_arrives(pausing_stack: Stack) -> None:
    item = manifest()["jfk"]
    with connect(pausing_stack.ws_url, max_size=None) as ws:
        result = stream_live(ws, chunk_stream(fixture_webm("jfk"), item["duration_s"]))
    statuses = [m for m in result.messages if m.get("type") == "status" and "partials" in m]
    notices = [m["message"] for m in statuses]
    assert notices[:2] == ["partials_paused", "partials_resumed"], result.messages
    assert all(a != b for a, b in itertools.pairwise(notices))  # strictly alternating
    assert [m["partials"] for m in statuses] == [n == "partials_resumed" for n in notices]
    done = finals(result.messages)
    assert len({m["utterance_id"] for m in done}) == len(done) >= 4
    assert not [m for m in result.messages if m.get("type") == "error"]
    assert wer(item["reference"], " ".join(m["transcript"] for m in done)) <= 0.15, done
    assert result.messages[-1]["recording"] is False


def test_a_short_encoder_window_encodes_less_and_reads_the_same_words() -> None:
    """In-process tiny.en: a 3 s partial on a 15 s window runs the encoder on 1500 frames,
    not 3000, and reads the words the 30 s window reads; anything it cannot do (no language
    given to a multilingual model, word timings) takes faster-whisper's own pipeline."""
    model = FasterWhisperTranscriber("tiny.en", device="cpu", compute_type="default", cpu_threads=1)
    frames: list[int] = []
    encode = model.model.encode

    def counting(features: Any) -> Any:
        frames.append(features.shape[-1])
        return encode(features)

    model.model.encode = counting  # type: ignore[method-assign]
    audio = fixture_pcm("jfk")[: 3 * 16000].astype(np.float32) / 32768
    partial = DecodeOptions(language="en", beam_size=1, without_timestamps=True, temperature_fallback=False)
    full = model.transcribe(audio, partial).text
    short = model.transcribe(audio, replace(partial, encoder_window_s=15)).text
    [batched] = model.transcribe_batch([(audio, replace(partial, encoder_window_s=15))])
    assert frames == [3000, 1500, 1500]
    spoken = "and so my fellow americans"
    assert "fellow americans" in full.lower() and wer(spoken, short) <= 0.2, (full, short)
    assert not isinstance(batched, Exception) and batched.text == short
    frames.clear()
    model.transcribe(audio, replace(partial, encoder_window_s=15, word_timestamps=True))
    model.transcribe(audio, replace(partial, encoder_window_s=2))  # the audio does not fit
    assert all(n == 3000 for n in frames) and frames
